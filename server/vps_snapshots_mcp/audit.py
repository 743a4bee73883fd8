"""The audit trail: one JSON line per create/restore/delete attempt.

Enabled with `--audit-log PATH` (or `VPS_MCP_AUDIT_LOG`). Each line is a JSON
object:

    time           ISO 8601 UTC, when the attempt ended
    tool           create_snapshot | restore_snapshot | delete_snapshot
    outcome        previewed | executed | refused | cancelled | failed
    server_id      the server touched, when known
    snapshot_id    the snapshot touched (for create: the new or existing one), when known
    snapshot_name  its name, when known
    error_code     the stable error code when refused or failed, else null
    consent        for an executed restore/delete: "token" or "elicitation"; else null
    details        extra facts: already_exists, safety_snapshot_id, cancelled_by

"refused" means this server or the provider said no before anything changed
(bad arguments, forbidden server, invalid token, quota, state); "failed" means
the provider failed or could not be reached, and the outcome may be unknown;
"cancelled" means the user declined, or the client cancelled the call.

Lines are written with O_APPEND, then fsync, one write each: a crash loses at
most the line being written, and concurrent writers never interleave. No line
ever holds a token: only ids, names, codes and outcomes are recorded.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio.to_thread

AUDITED_TOOLS = frozenset({"create_snapshot", "restore_snapshot", "delete_snapshot"})
Outcome = Literal["previewed", "executed", "refused", "cancelled", "failed"]
REFUSAL_CODES = frozenset(
    {"invalid_argument", "forbidden", "confirmation_invalid", "quota_exceeded", "invalid_state", "not_found",
     "invalid_request", "unauthorized"}
)  # fmt: skip


@dataclass
class Attempt:
    """What one audited call learned about its target, filled in by the tools as they go."""

    tool: str
    server_id: int | None = None
    snapshot_id: int | None = None
    snapshot_name: str | None = None
    consent: Literal["token", "elicitation"] | None = None
    details: dict[str, Any] = field(default_factory=dict)


_current: ContextVar[Attempt | None] = ContextVar("vps_snapshots_mcp_audit_attempt", default=None)


def begin(attempt: Attempt) -> object:
    return _current.set(attempt)


def end(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


def note(
    *,
    server_id: int | None = None,
    snapshot_id: int | None = None,
    snapshot_name: str | None = None,
    consent: Literal["token", "elicitation"] | None = None,
    **details: Any,
) -> None:
    """Record facts about the current attempt; a no-op outside an audited call."""
    attempt = _current.get()
    if attempt is None:
        return
    if server_id is not None:
        attempt.server_id = server_id
    if snapshot_id is not None:
        attempt.snapshot_id = snapshot_id
    if snapshot_name is not None:
        attempt.snapshot_name = snapshot_name
    if consent is not None:
        attempt.consent = consent
    attempt.details.update(details)


def outcome_for_error(code: str) -> Outcome:
    return "refused" if code in REFUSAL_CODES else "failed"


class AuditLog:
    """An append-only JSON Lines file, synced after every line."""

    def __init__(self, path: str, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        # 0o600: the trail names servers and snapshots; it is for the operator.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()
        self._now = now
        self.path = path

    async def write(self, attempt: Attempt, outcome: Outcome, *, error_code: str | None = None) -> None:
        record = {
            "time": self._now().isoformat().replace("+00:00", "Z"),
            "tool": attempt.tool,
            "outcome": outcome,
            "server_id": attempt.server_id,
            "snapshot_id": attempt.snapshot_id,
            "snapshot_name": attempt.snapshot_name,
            "error_code": error_code,
            "consent": attempt.consent if outcome == "executed" else None,
            "details": attempt.details,
        }
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        await anyio.to_thread.run_sync(self._append, line)

    def _append(self, line: bytes) -> None:
        with self._lock:
            os.write(self._fd, line)
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)
