"""The audit trail: one JSON line per create/restore/delete attempt.

Enabled with `--audit-log PATH` (or `VPS_MCP_AUDIT_LOG`). Each line is a JSON
object:

    time           ISO 8601 UTC, when the attempt ended
    tool           create_snapshot | restore_snapshot | delete_snapshot
    outcome        previewed | executed | refused | cancelled | failed | unknown
    server_id      the server touched, when known
    snapshot_id    the snapshot touched (for create: the new or existing one), when known
    snapshot_name  its name, when known
    error_code     the stable error code when the call ended in an error (refused, failed, or unknown), else null
    consent        for an executed restore/delete: "token" or "elicitation"; else null
    details        extra facts: already_exists, safety_snapshot_id, safety_snapshot_request_sent,
                   cancelled_by, request_sent

"refused" means this server or the provider said no before anything changed
(bad arguments, forbidden server, invalid token, quota, state); "failed" means
the provider failed or could not be reached, and the outcome may be unknown;
"cancelled" means the user declined, or the client cancelled the call before
its change was sent; "unknown" means the change was sent and what became of it
is not known: the client cancelled before its answer came, or the provider
accepted it (2xx) with an answer that could not be read.

`executed`, `unknown` and `details.request_sent` (true once the tool's own
change request has left this server, whatever came back) are about the audited
tool's OWN change: the create's POST, the restore's POST, the delete's DELETE.
A side request never counts as it: a restore's safety snapshot is named in
`details.safety_snapshot_id` (or `details.safety_snapshot_request_sent` while
its answer has not come), and `snapshot_id` is always the restore's target.
What the look-up learnt (server, name) is kept from the moment it is known, so
a call cancelled in flight is recorded with it.

The record is one `Attempt` per call: the protocol adapter opens it, the tool
and its operation (`operations.py`) say what was asked, sent and answered and
how it ended, and an error or a cancellation says the rest
(`Attempt.from_error`, `Attempt.cancelled_by_client`); nothing is parsed back
from text or read off a result. Which calls are audited is the access policy's
answer (`access.py`).

Lines are ASCII-escaped JSON (no raw U+2028 to split a line for a reader),
written with O_APPEND, then fsync, one write each: a crash loses at most the
line being written, and concurrent writers never interleave. The file is kept
at mode 0600, also when it existed before. A line that cannot be written is
reported on stderr, and the tool's result still tells the truth. No line ever
holds a token: only ids, names, codes and outcomes are recorded.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread

from .errors import SnapshotsError

if TYPE_CHECKING:
    from .models import ConsentKind, Snapshot
    from .provider.client import ChangeEvent

logger = logging.getLogger(__name__)

Outcome = Literal["previewed", "executed", "refused", "cancelled", "failed", "unknown"]


@dataclass
class Attempt:
    """The audit event of one call: what was asked, by whom, what was sent, what came back.

    The protocol adapter opens one per tools/call and writes it when the call ends;
    the tool and its operation (`operations.py`) fill it in as they learn things,
    so a call cancelled half-way is recorded with what it had done.
    """

    tool: str
    server_id: int | None = None
    snapshot_id: int | None = None
    snapshot_name: str | None = None
    consent: ConsentKind | None = None
    details: dict[str, Any] = field(default_factory=dict)
    outcome: Outcome = "failed"
    error_code: str | None = None
    principal: str | None = None
    """Who asked (`Principal.key`): kept on the event, not written to the trail (whose format is fixed)."""
    change_sent: bool = False
    """The tool's own change (the create's POST, the restore's POST, the delete's DELETE) left this server."""
    change_answered: bool = False
    """... and the provider answered it 2xx."""

    # --- what was asked, and by whom ---------------------------------------------------------------

    def asked(
        self,
        principal: str,
        *,
        server_id: int | None = None,
        snapshot_id: int | None = None,
        snapshot_name: str | None = None,
    ) -> None:
        self.principal = principal
        self.about(server_id, snapshot_id, snapshot_name)

    def about(self, server_id: int | None, snapshot_id: int | None, snapshot_name: str | None) -> None:
        """What the call concerns, as soon as it is known (its arguments, its look-up): kept, so a call
        cancelled later still names it."""
        self.server_id = server_id if server_id is not None else self.server_id
        self.snapshot_id = snapshot_id if snapshot_id is not None else self.snapshot_id
        self.snapshot_name = snapshot_name if snapshot_name is not None else self.snapshot_name

    def concerns(self, snapshot: Snapshot) -> None:
        self.about(snapshot.server_id, snapshot.id, snapshot.name)

    # --- what was sent, and what came back ---------------------------------------------------------

    def own_change(self, event: ChangeEvent) -> None:
        """Observer of the call's own change, as the provider client sees it cross the wire."""
        self.change_sent = True
        if event.stage == "answered":
            self.change_answered = True
            if event.snapshot_id is not None:
                self.snapshot_id = event.snapshot_id  # the create's new snapshot; the target for the others

    def safety_change(self, event: ChangeEvent) -> None:
        """Observer of a restore's safety snapshot: a side request, never the call's own change."""
        if event.stage == "answered" and event.snapshot_id is not None:
            self.details.pop("safety_snapshot_request_sent", None)
            self.details["safety_snapshot_id"] = event.snapshot_id
        elif "safety_snapshot_id" not in self.details:
            self.details["safety_snapshot_request_sent"] = True

    # --- how it ended ------------------------------------------------------------------------------

    def previewed(self, snapshot: Snapshot) -> None:
        self.concerns(snapshot)
        self.outcome = "previewed"

    def declined(self, snapshot: Snapshot) -> None:
        """The user declined or cancelled when asked: nothing was sent."""
        self.concerns(snapshot)
        self.outcome = "cancelled"

    def executed(self, snapshot: Snapshot | None = None) -> None:
        if snapshot is not None:
            self.concerns(snapshot)
        self.outcome = "executed"

    def cancelled_by_client(self) -> Attempt:
        """The client cancelled: what happened depends on whether the change had left, and come back."""
        self.details["cancelled_by"] = "client"
        if self.change_sent:
            self.details["request_sent"] = True
        self.outcome = "executed" if self.change_answered else "unknown" if self.change_sent else "cancelled"
        return self

    def from_error(self, error: SnapshotsError) -> Attempt:
        self.outcome, self.error_code = error.outcome, error.code
        if error.target is not None:
            self.about(error.target.server_id, error.target.snapshot_id, error.target.snapshot_name)
            self.details.update(error.target.details)
        if self.change_sent:
            self.details["request_sent"] = True
        if self.change_answered:
            # The provider took the change (2xx) and only its answer was wrong: not "nothing happened".
            self.outcome = "unknown"
        return self

    def record(self, now: datetime) -> dict[str, Any]:
        return {
            "time": now.isoformat().replace("+00:00", "Z"),
            "tool": self.tool,
            "outcome": self.outcome,
            "server_id": self.server_id,
            "snapshot_id": self.snapshot_id,
            "snapshot_name": self.snapshot_name,
            "error_code": self.error_code,
            "consent": self.consent if self.outcome == "executed" else None,
            "details": self.details,
        }


def open_audit_file(path: str) -> int:
    """Open (creating) the audit file for appending, mode 0600 even when it existed before. Raises OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the trail names servers and snapshots; it is for the operator alone
    except OSError:
        os.close(fd)
        raise
    return fd


class AuditLog:
    """An append-only JSON Lines file, synced after every line."""

    def __init__(self, path: str, *, now: Callable[[], datetime]) -> None:
        self._fd = open_audit_file(path)
        self._lock = threading.Lock()
        self._now = now
        self.path = path

    async def write(self, attempt: Attempt) -> None:
        """Append the record; a failure is logged, never raised into the tool's result."""
        try:
            line = (json.dumps(attempt.record(self._now()), ensure_ascii=True, separators=(",", ":")) + "\n").encode()
            await anyio.to_thread.run_sync(self._append, line)
        except (OSError, ValueError, TypeError) as exc:
            logger.error(
                "could not write an audit record for %s (%s: %s)", attempt.tool, attempt.outcome, type(exc).__name__
            )

    def _append(self, line: bytes) -> None:
        with self._lock:
            os.write(self._fd, line)
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)
