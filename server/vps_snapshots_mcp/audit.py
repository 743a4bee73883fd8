"""The audit trail: one JSON line per create/restore/delete attempt.

Enabled with `--audit-log PATH` (or `VPS_MCP_AUDIT_LOG`). Each line is a JSON
object:

    time           ISO 8601 UTC, when the attempt ended
    tool           create_snapshot | restore_snapshot | delete_snapshot
    outcome        previewed | executed | refused | cancelled | failed | unknown; for an approval page's
                   approval (`--consent url`): requested | approved | declined | expired
    server_id      the server touched, when known
    snapshot_id    the snapshot touched (for create: the new or existing one), when known
    snapshot_name  its name, when known
    error_code     the stable error code when the call ended in an error (refused, failed, or unknown), else null
    consent        for an executed restore/delete: "token", "elicitation" or "approval"; else null
    details        extra facts: already_exists, safety_snapshot_id, safety_snapshot_request_sent,
                   cancelled_by, request_sent; for approvals: approval (a digest naming it, never its
                   id), principal (who asked) and approver (who approved or declined; null before)
    actor          who asked: {"kind": "oauth" | "token" | "local", "id": ..., "client_id": ...}; the id is
                   the OAuth issuer and subject (`ISSUER#SUBJECT`), the token's name (the single static token:
                   a digest, never the token) or the OS user running this server
    request_id     the JSON-RPC id of the tools/call (the last round's, for a call retried with input)
    trace_id       the W3C trace id (32 hex) of a valid `traceparent` in the request's `_meta`, else null
    seq            the line's number in the file, from 1
    prev           the hash of the line before it (64 zeros for the first line of a file)
    hash           the SHA-256 (hex) of this line's bytes up to `,"hash"`, closed with `}`: always last

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
answer (`access.py`); a call of any tool refused for permission (`forbidden`)
is audited too, and a call refused before any tool runs (the HTTP layer's
step-up) is recorded with `record_denial`.

The lines form a hash chain, so a line changed, removed or reordered is found
by `vps-snapshots-mcp audit verify FILE` (`verify`), which names the first one.
A line is written under an exclusive lock on the file (flock) that also reads
the file's last line, so the chain continues across restarts and through
several processes appending to one file. A line cut short by a crash is closed
by the next writer, which chains from its bytes as they are. What the chain
cannot show is the newest lines removed from the end: `verify` prints the last
line's number and hash, to be kept somewhere else when that matters.

Lines are ASCII-escaped JSON (no raw U+2028 to split a line for a reader),
written with O_APPEND, then fsync, one write each: a crash loses at most the
line being written, and concurrent writers never interleave. The file is kept
at mode 0600, also when it existed before. A line that cannot be written is
reported on stderr, and the tool's result still tells the truth. No line ever
holds a token: only ids, names, codes and outcomes are recorded.
"""

from __future__ import annotations

import fcntl
import getpass
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio.to_thread

from .audit_chain import chain_head, seal, sealed_hash
from .errors import SnapshotsError

if TYPE_CHECKING:
    from .models import ConsentKind, Snapshot
    from .provider.client import ChangeEvent

logger = logging.getLogger(__name__)

Outcome = Literal["previewed", "executed", "refused", "cancelled", "failed", "unknown"]
ApprovalEvent = Literal["requested", "approved", "declined", "expired"]


class _Principal(Protocol):  # protocol/principal.py's Principal, as far as the trail needs it
    @property
    def kind(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def client_id(self) -> str | None: ...


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no name (a container's random uid)
        return f"uid:{os.getuid()}"


_OS_USER = _os_user()


@dataclass(frozen=True)
class Actor:
    """Who asked, as the trail names them: never a secret."""

    kind: str
    id: str
    client_id: str | None = None

    @classmethod
    def of(cls, principal: _Principal) -> Actor:
        """The trail's name for a principal: the local process is named by the OS user running it."""
        if principal.kind == "local":
            return cls("local", _OS_USER, principal.client_id)
        return cls(principal.kind, principal.id, principal.client_id)

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "client_id": self.client_id}


_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.ASCII | re.DOTALL)


def trace_id_of(meta: Mapping[str, Any] | None) -> str | None:
    """The W3C trace id of a request's `_meta.traceparent`, or None when there is none or it is malformed."""
    value = meta.get("traceparent") if meta else None
    if not isinstance(value, str) or len(value) > 512:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, parent_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None  # ff is invalid; version 00 has exactly four fields
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id


def plain_request_id(request_id: object) -> str | int | None:
    """The JSON-RPC request id as the trail keeps it: an integer, or a string of at most 128 characters."""
    if isinstance(request_id, bool):
        return None
    if isinstance(request_id, int):
        return request_id
    return request_id[:128] if isinstance(request_id, str) else None


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
    outcome: Outcome | ApprovalEvent = "failed"
    error_code: str | None = None
    principal: str | None = None
    """Who asked (`Principal.key`, which consent compares): kept on the event, not written to the trail."""
    actor: Actor | None = None
    """Who asked, as the trail names them (`actor`)."""
    request_id: str | int | None = None
    trace_id: str | None = None
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
            "actor": self.actor.record() if self.actor is not None else None,
            "request_id": self.request_id,
            "trace_id": self.trace_id,
        }


def open_audit_file(path: str) -> int:
    """Open (creating) the audit file for appending, mode 0600 even when it existed before. Raises OSError.

    Opened for reading too: a writer reads the last line to chain from it.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the trail names servers and snapshots; it is for the operator alone
    except OSError:
        os.close(fd)
        raise
    return fd


class AuditLog:
    """An append-only JSON Lines file, each line chained to the one before it and synced."""

    def __init__(self, path: str, *, now: Callable[[], datetime]) -> None:
        self._fd = open_audit_file(path)
        self._lock = threading.Lock()
        self._now = now
        self.path = path
        self._head: tuple[int, int, str] | None = None
        """(the file's size after this process's last line, the next seq, the next prev): while the size is
        unchanged nobody else has appended, and the last line need not be read again."""

    async def write(self, attempt: Attempt) -> None:
        """Append the record; a failure is logged, never raised into the tool's result."""
        try:
            record = attempt.record(self._now())
            await anyio.to_thread.run_sync(self._append, record)
        except (OSError, ValueError, TypeError) as exc:
            logger.error(
                "could not write an audit record for %s (%s: %s)", attempt.tool, attempt.outcome, type(exc).__name__
            )

    def _append(self, record: dict[str, Any]) -> None:
        with self._lock:  # this process's threads; flock: the other processes appending to the file
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                size = os.fstat(self._fd).st_size
                if self._head is not None and self._head[0] == size:
                    seq, prev, torn = self._head[1], self._head[2], False
                else:  # the first line of this process, or another process has written since
                    seq, prev, torn = chain_head(self._fd, size)
                line = seal(record, seq, prev)
                data = (b"\n" if torn else b"") + line
                self._head = None  # until the write is known whole
                written = os.write(self._fd, data)
                if written == len(data):
                    self._head = (size + written, seq + 1, sealed_hash(line))
                os.fsync(self._fd)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


async def record_denial(
    log: AuditLog | None,
    tool: str,
    actor: Actor,
    error_code: str,
    *,
    request_id: object = None,
    trace_id: str | None = None,
    server_id: int | None = None,
    snapshot_id: int | None = None,
) -> None:
    """Record a call refused before any tool ran (the HTTP layer's 403 step-up): outcome `refused`.

    Nothing when there is no trail. Never raises (a failure is logged, like every write).
    """
    if log is None:
        return
    attempt = Attempt(tool=tool, server_id=server_id, snapshot_id=snapshot_id, outcome="refused")
    attempt.error_code, attempt.actor = error_code, actor
    attempt.request_id, attempt.trace_id = plain_request_id(request_id), trace_id
    await log.write(attempt)


async def record_approval(
    log: AuditLog,
    event: ApprovalEvent,
    *,
    tool: str,
    principal: str,
    approver: str | None,
    approval: str,
    server_id: int | None,
    snapshot_id: int | None,
    snapshot_name: str | None,
) -> None:
    """One line of an approval's life (requested, approved, declined, expired), each naming who asked and who
    decided; the actor is who acted (the approver, or who asked). Never raises (a failure is logged)."""
    attempt = Attempt(tool=tool, server_id=server_id, snapshot_id=snapshot_id, snapshot_name=snapshot_name)
    attempt.outcome = event
    attempt.details = {"approval": approval, "principal": principal, "approver": approver}
    kind, _, ident = (approver or principal).partition(":")
    attempt.actor = Actor(kind=kind, id=ident)
    await log.write(attempt)
