"""Shared state: the consent ledger, and the event log that lets a dropped HTTP stream resume.

The consent ledger is where every consent that authorises a change is spent, once.

A confirmation token and an accepted elicitation round are each a key with an
expiry. `redeem` records the key atomically and answers whether this was its
first use; a second use, in this process or any other that shares the ledger,
answers False, and the change is refused before the provider is called.

    unset                 MemoryLedger   one process
    sqlite:///ABS/PATH    SqliteLedger   processes on one machine (a stdio server a host restarts)
    redis://HOST:PORT/DB  RedisLedger    replicas (rediss:// for TLS)

A ledger that cannot record (Redis down, the SQLite file unwritable) raises
`StateUnavailableError`: no consent can be spent, so no change runs.

One clock prunes and judges, the ledger's own, whatever the clocks of the
processes sharing it: this process's never-back clock (memory), the high-water
mark of every clock that used the file (SQLite), Redis's `TIME` (Redis). Entries
outlive their consent's expiry by `MARGIN_S` on it, and a consent whose expiry
is already past on it is refused (`ConsentRefused`): so nothing pruned can ever
be redeemed again, and neither a clock stepped back nor one running ahead can
make a spent consent usable. A Redis that lost its data (a restart without
persistence, a flush, an eviction) refuses what was issued before the loss; one
that may evict refuses to record; one that answered too late may still have
recorded (`RedemptionUncertain`): the consent may be used up.

The event log keeps the events of each HTTP response stream, so a client that
lost the connection can ask for what it missed (`Last-Event-ID`). It lives where
the ledger lives, over the same connection (`open_state`): in memory, in the SQLite file, or in Redis.
Its payloads are opaque strings: this package knows nothing of MCP.

Every event belongs to one session (an opaque key naming the MCP session and its
caller) and is found only through it: `after` looks an id up in its own session
and nowhere else. Event ids are chosen by the caller (random, never a counter).
Events are bounded in bytes, per session (`MAX_SESSION_BYTES`: its oldest go
first) and in total (`MAX_BYTES`; in Redis `REDIS_MAX_BYTES`: the oldest, or the
least recently active sessions, go first), and forgotten `ttl_s` after they were
kept or when their session ends (`forget`). An event larger than a session may
hold is not kept: its stream goes on, only its resumption is lost. In Redis,
events are written behind the stream, batched (`behind.WriteBehindEventLog`):
a call never waits on Redis for them, and a replay waits for what came before it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol
from urllib.parse import urlsplit

MARGIN_S = 300.0
"""How long past its consent's expiry an entry is kept."""


class ConsentRefused(Exception):
    """The ledger refuses a consent it cannot prove unspent; the message says why, in words for a person.

    Raised when the consent expired by the ledger's own clock (so a key pruned on
    that clock can never be redeemed again), or was issued before the ledger lost
    its data (a Redis restarted without persistence, flushed or evicting).
    """


class RedemptionUncertain(Exception):
    """The ledger did not answer in time after the redemption was sent: it may have recorded it after all."""


def expired_by_the_ledger(expires_at: float, now: float, where: str) -> str:
    """Why a consent past its expiry on the ledger's own clock is refused, whatever the caller's clock says."""
    return (
        f"this consent expired at {iso_time(expires_at)} by the clock of the consent ledger ({where}), which reads "
        f"{iso_time(now)}: the ledger's clock is the one every process sharing it goes by, so a process whose clock "
        "differs cannot use it. If this keeps happening, check the system clocks of the servers."
    )


def iso_time(epoch: float) -> str:
    """An epoch time for messages, to the second, in UTC."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


class ConsentLedger(Protocol):
    """Records each consent once. Implementations must be safe for concurrent callers."""

    @property
    def description(self) -> str:
        """Where the ledger lives, for logs (never a password)."""
        ...

    async def redeem(self, key: str, *, expires_at: float, issued_at: float | None = None) -> bool:
        """Record `key` until `expires_at` (epoch seconds); False when it was already recorded.

        Raises `ConsentRefused` when `expires_at` is past by the ledger's clock, or `issued_at`
        is before the ledger lost its data; `RedemptionUncertain` when the record may have landed
        though the ledger did not say so; `StateUnavailableError` when nothing could be recorded.
        """
        ...

    # Pending approvals: a change proposed now, approved (or declined) by a person elsewhere, executed once.

    async def propose(
        self, plan_digest: str, *, expires_at: float, plan: str = "", requester: str = "", protected: bool = False
    ) -> str:
        """Hold a pending approval of the plan `plan_digest` until `expires_at`; its opaque, unguessable id.

        `plan`: what to show a person who decides (JSON, the approval service's); `requester`: the principal
        key of who asked; `protected`: its server needs a second person.
        """
        ...

    async def approval(self, approval_id: str) -> PendingApproval | None:
        """What is held for `approval_id` (read only; decided or not), or None: unknown, or forgotten."""
        ...

    async def pending_approvals(self) -> list[PendingApproval]:
        """Every approval still pending and unexpired (by the ledger's clock), soonest to expire first."""
        ...

    async def approve(self, approval_id: str, *, by: str) -> None:
        """Approve a pending approval, `by` whom; `ApprovalRefused` unless it is pending and unexpired."""
        ...

    async def decline(self, approval_id: str, *, by: str) -> None:
        """Decline a pending approval, `by` whom; `ApprovalRefused` unless it is pending and unexpired."""
        ...

    async def redeem_approval(self, approval_id: str, *, plan_digest: str) -> str:
        """Spend an approved approval of exactly `plan_digest`, once; who approved it.

        `ApprovalRefused` when it is unknown, expired (by the ledger's clock), not approved (pending or
        declined), already redeemed, or approved for another plan (which leaves it unspent).
        """
        ...

    # Sign-in sessions of the approval page: an opaque record under a digest of the cookie, on the ledger's clock,
    # so a person signed in on one replica is signed in on every replica that shares the ledger.

    async def open_session(self, key: str, record: str, *, idle_s: float, lifetime_s: float) -> None:
        """Hold `record` under `key` (a digest, never the cookie itself) for `lifetime_s` at most, and no longer
        than `idle_s` after its last use. `StateUnavailableError` when it could not be recorded."""
        ...

    async def session(self, key: str) -> str | None:
        """The record held under `key`, its idle expiry moved on; None when unknown, idle too long or past its
        lifetime (then it is forgotten). `StateUnavailableError` when the store cannot be read."""
        ...

    async def end_session(self, key: str) -> bool:
        """Forget `key` (a sign-out, or a one-time record taken); True when it was held, for exactly one caller."""
        ...

    # The change budget: restores + deletes per principal per hour, counted here so every replica shares it.

    async def spend_change(
        self, principal: str, server_id: int, *, per_hour: int | None, per_server_per_hour: int | None
    ) -> float | None:
        """Count one change by `principal` on the server, judged on the ledger's clock over the last hour.

        None when it was counted; otherwise nothing is counted, and the answer is when (epoch seconds, the
        ledger's clock) the next change is possible. `StateUnavailableError` when nothing could be counted.
        """
        ...

    async def prepare(self) -> None:
        """At start, best effort: meet the store, say loudly what is wrong with it; never raises."""
        ...

    async def unavailable(self) -> str | None:
        """Readiness: why the store cannot be reached now (in words, naming it, never a password), or None.

        Cheap and bounded (a Redis PING within the ledger's timeout; the SQLite file opened and read; memory is
        always there); spends, records and counts nothing. Never raises.
        """
        ...

    async def aclose(self) -> None: ...


ApprovalStatus = Literal["pending", "approved", "declined", "redeemed"]
Refusal = Literal["unknown", "expired", "decided", "pending", "declined", "used", "another_plan"]


class ApprovalRefused(Exception):
    """A pending approval that cannot do what was asked; `reason` says which case, the message in words."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason: Refusal = reason


@dataclass(frozen=True)
class PendingApproval:
    """What the ledger holds for one approval (the memory and SQLite ledgers judge with `judge_approval`)."""

    plan_digest: str
    expires_at: float
    status: ApprovalStatus = "pending"
    by: str | None = None
    """Who approved or declined it."""
    approval_id: str = ""
    """Its id: the link a person opens names it (kept so a list of pending approvals can link to each)."""
    plan: str = ""
    """What a person deciding is shown (JSON, written and read by the approval service)."""
    requester: str = ""
    """The principal key of who asked."""
    protected: bool = False
    """Its server is protected: a second person holding the approve permission must decide."""


def new_approval_id() -> str:
    """An opaque, unguessable approval id (256 random bits)."""
    return secrets.token_urlsafe(32)


def approval_key(approval_id: str) -> str:
    """What a shared store keeps for an id: its digest, so reading the store yields no usable id."""
    return hashlib.sha256(approval_id.encode()).hexdigest()


_NOT_APPROVED: dict[ApprovalStatus, Refusal] = {"pending": "pending", "declined": "declined", "redeemed": "used"}


def judge_approval(
    held: PendingApproval | None, op: Literal["approve", "decline", "redeem"], now: float, plan_digest: str = ""
) -> Refusal | None:
    """Why `op` is refused on `held` at `now` (the ledger's clock), or None when it may proceed."""
    if held is None:
        return "unknown"
    if held.expires_at < now:
        return "expired"
    if op != "redeem":
        return None if held.status == "pending" else "decided"
    if held.status != "approved":
        return _NOT_APPROVED[held.status]
    return None if hmac.compare_digest(held.plan_digest, plan_digest) else "another_plan"


def approval_refused(
    reason: Refusal, *, where: str, expires_at: float = 0.0, now: float = 0.0, status: str = ""
) -> ApprovalRefused:
    """The refusal for `reason`, in words for a person."""
    words = {
        "unknown": "no approval with this id is held (it was never proposed, or was forgotten after it expired)",
        "expired": f"this approval expired at {iso_time(expires_at)} by the clock of the consent ledger ({where}), "
        f"which reads {iso_time(now)}",
        "decided": f"this approval was already {status or 'decided'}: it can be approved or declined once",
        "pending": "this approval has not been given yet: nothing runs before a person approves it",
        "declined": "this approval was declined: nothing it describes may run",
        "used": "this approval was already used: it authorises one change",
        "another_plan": "this approval is for another plan: what would run now is not what was approved",
    }
    return ApprovalRefused(reason, words[reason])


@dataclass(frozen=True)
class HeldSession:
    """A sign-in session as the memory and SQLite ledgers hold it (judged by `session_alive`)."""

    record: str
    idle_s: float
    until: float
    seen: float


def session_alive(held: HeldSession, now: float) -> bool:
    """Whether a session is still good at `now` (the ledger's clock): inside its lifetime and not idle too long."""
    return now <= held.until and now <= held.seen + held.idle_s


BUDGET_WINDOW_S = 3600.0
"""The change budget counts the changes of the last hour."""


def budget_key(principal: str, server_id: int | None = None) -> str:
    """What a store keeps a principal's changes under (all servers, or one): a digest, no principal in clear."""
    scope = "" if server_id is None else str(server_id)
    return hashlib.sha256(f"{principal}\x00{scope}".encode()).hexdigest()


def next_change_at(
    changes: list[float], server_changes: list[float], *, per_hour: int | None, per_server_per_hour: int | None
) -> float | None:
    """When the next change is possible, given the times of the last hour's changes (all, on this server); None:
    now. The window is an hour, so a change is possible again an hour after the oldest change that fills it."""
    later = None
    for times, cap in ((changes, per_hour), (server_changes, per_server_per_hour)):
        if cap is not None and len(times) >= cap:
            ordered = sorted(times)
            freed = (ordered[len(times) - cap] if cap > 0 else float("inf")) + BUDGET_WINDOW_S
            later = freed if later is None else max(later, freed)
    return later


MAX_SESSION_BYTES = 4 * 1024 * 1024
"""The most event bytes one session keeps: its oldest events go first."""
MAX_BYTES = 64 * 1024 * 1024
"""The most event bytes kept in memory or in the SQLite file, all sessions together."""
REDIS_MAX_BYTES = 16 * 1024 * 1024
"""The most event bytes kept in Redis, all replicas together: a small share of the memory the ledger needs."""
EVENT_OVERHEAD_BYTES = 256
"""Counted for every event on top of its payload, so a flood of tiny events is bounded too."""


def event_bytes(event_id: str, stream_id: str, payload: str | None) -> int:
    """The bytes an event is counted for against the bounds."""
    body = len(payload.encode()) if payload is not None else 0
    return EVENT_OVERHEAD_BYTES + len(event_id) + len(stream_id.encode()) + body


class EventLog(Protocol):
    """Events of response streams, each kept in one session, bounded in bytes, read back after a given one."""

    async def append(self, session: str, event_id: str, stream_id: str, payload: str | None) -> bool:
        """Keep one event (None: a priming event with no message) under `event_id`, after the session's others.

        False when it is not kept (larger than a session may hold).
        """
        ...

    async def after(self, session: str, event_id: str) -> tuple[str, list[tuple[str, str | None]]] | None:
        """The stream of `event_id` in `session` and its later events, oldest first; None when it is not there."""
        ...

    async def forget(self, session: str) -> None:
        """Drop every event of `session` (it ended: nobody can resume its streams any more)."""
        ...

    async def aclose(self) -> None: ...


def sqlite_path(url: str) -> str:
    """The file a `sqlite:///ABSOLUTE/PATH` URL names: `sqlite:////var/x.db` is `/var/x.db`, not `//var/x.db`."""
    return "/" + urlsplit(url).path.lstrip("/")


def open_event_log(url: str | None, *, ttl_s: float) -> EventLog:
    """The event log for the state store at `url` (the same setting as the ledger)."""
    if url is None:
        from .memory import MemoryEventLog

        return MemoryEventLog(ttl_s=ttl_s)
    if urlsplit(url).scheme == "sqlite":
        from .sqlite import SqliteEventLog

        return SqliteEventLog(sqlite_path(url), ttl_s=ttl_s)
    from .behind import WriteBehindEventLog
    from .redis_events import RedisEventLog

    return WriteBehindEventLog(RedisEventLog(url, ttl_s=ttl_s))


@dataclass(frozen=True)
class State:
    """The consent ledger and the event log of one state store, over one connection (one Redis client, one
    SQLite connection; in memory, two structures)."""

    ledger: ConsentLedger
    events: EventLog

    async def aclose(self) -> None:
        """Close the connection (both users share it: closing it twice is harmless); the events first, so those
        still being written behind the stream go over the connection before it closes."""
        try:
            await self.events.aclose()
        finally:
            await self.ledger.aclose()


def open_state(url: str | None, *, wall: Callable[[], float], event_ttl_s: float) -> State:
    """The state store `url` names (checked by `Settings` already): its ledger and event log over one connection.

    `wall` is the ledger's clock that never steps back; events are kept `event_ttl_s` at most. Nothing is
    connected yet: SQLite and Redis connect at their first use.
    """
    if url is None:
        from .memory import MemoryEventLog, MemoryLedger

        return State(MemoryLedger(wall=wall), MemoryEventLog(ttl_s=event_ttl_s))
    if urlsplit(url).scheme == "sqlite":
        from .sqlite import SqliteEventLog, SqliteLedger
        from .sqlite_file import StateFile

        file = StateFile(sqlite_path(url))
        return State(SqliteLedger(file, wall=wall), SqliteEventLog(file, ttl_s=event_ttl_s))
    from .behind import WriteBehindEventLog
    from .redis import RedisLedger, connect  # the optional `redis` extra: imported only when asked for
    from .redis_events import RedisEventLog

    client = connect(url)
    events = WriteBehindEventLog(RedisEventLog(url, ttl_s=event_ttl_s, client=client))  # off the call's path
    return State(RedisLedger(url, wall=wall, client=client), events)


def open_ledger(url: str | None, *, wall: Callable[[], float]) -> ConsentLedger:
    """The ledger for `url`, checked by `Settings` already; `wall` is a clock that never steps back."""
    if url is None:
        from .memory import MemoryLedger

        return MemoryLedger(wall=wall)
    if urlsplit(url).scheme == "sqlite":
        from .sqlite import SqliteLedger

        return SqliteLedger(sqlite_path(url), wall=wall)
    from .redis import RedisLedger  # the optional `redis` extra: imported only when asked for

    return RedisLedger(url, wall=wall)


__all__ = [
    "BUDGET_WINDOW_S",
    "MARGIN_S",
    "ApprovalRefused",
    "ConsentLedger",
    "ConsentRefused",
    "EventLog",
    "PendingApproval",
    "RedemptionUncertain",
    "State",
    "open_event_log",
    "open_ledger",
    "open_state",
    "sqlite_path",
]
