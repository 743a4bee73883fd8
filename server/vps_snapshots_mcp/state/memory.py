"""In this process only: the ledger (single use within one process) and the event log."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from . import (
    BUDGET_WINDOW_S,
    MARGIN_S,
    MAX_BYTES,
    MAX_SESSION_BYTES,
    ApprovalStatus,
    ConsentRefused,
    HeldSession,
    PendingApproval,
    approval_refused,
    budget_key,
    event_bytes,
    expired_by_the_ledger,
    judge_approval,
    new_approval_id,
    next_change_at,
    session_alive,
)


class MemoryLedger:
    def __init__(self, *, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._entries: dict[str, float] = {}  # key -> when it may be forgotten
        self._approvals: dict[str, PendingApproval] = {}  # approval id -> what it holds
        self._changes: dict[str, list[float]] = {}  # budget key -> when its changes of the last hour were counted
        self._sessions: dict[str, HeldSession] = {}  # sign-in session key (a digest) -> what it holds
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return "memory (this process only)"

    async def prepare(self) -> None:
        return None

    async def unavailable(self) -> str | None:
        return None  # in this process: there while it is

    async def redeem(self, key: str, *, expires_at: float, issued_at: float | None = None) -> bool:
        now = self._wall()  # one clock, never back, for pruning and for judging expiry
        with self._lock:
            self._entries = {k: until for k, until in self._entries.items() if until >= now}
            if key in self._entries:
                return False
            if expires_at < now:
                raise ConsentRefused(expired_by_the_ledger(expires_at, now, self.description))
            self._entries[key] = expires_at + MARGIN_S
            return True

    # --- pending approvals: one lock, the same clock that judges consents --------------------------

    async def propose(
        self, plan_digest: str, *, expires_at: float, plan: str = "", requester: str = "", protected: bool = False
    ) -> str:
        approval_id = new_approval_id()
        now = self._wall()
        with self._lock:
            self._forget_approvals(now)
            if expires_at < now:
                raise approval_refused("expired", where=self.description, expires_at=expires_at, now=now)
            self._approvals[approval_id] = PendingApproval(
                plan_digest, expires_at, approval_id=approval_id, plan=plan, requester=requester, protected=protected
            )
        return approval_id

    async def approval(self, approval_id: str) -> PendingApproval | None:
        with self._lock:
            self._forget_approvals(self._wall())
            return self._approvals.get(approval_id)

    async def pending_approvals(self) -> list[PendingApproval]:
        now = self._wall()
        with self._lock:
            self._forget_approvals(now)
            held = [a for a in self._approvals.values() if a.status == "pending" and a.expires_at >= now]
        return sorted(held, key=lambda a: a.expires_at)

    async def approve(self, approval_id: str, *, by: str) -> None:
        self._decide(approval_id, "approved", by)

    async def decline(self, approval_id: str, *, by: str) -> None:
        self._decide(approval_id, "declined", by)

    def _decide(self, approval_id: str, status: ApprovalStatus, by: str) -> None:
        now = self._wall()
        with self._lock:
            self._forget_approvals(now)
            held = self._approvals.get(approval_id)
            self._refuse_unless_fit(held, "approve", now)
            assert held is not None
            self._approvals[approval_id] = replace(held, status=status, by=by)

    async def redeem_approval(self, approval_id: str, *, plan_digest: str) -> str:
        now = self._wall()
        with self._lock:
            self._forget_approvals(now)
            held = self._approvals.get(approval_id)
            self._refuse_unless_fit(held, "redeem", now, plan_digest)
            assert held is not None and held.by is not None
            self._approvals[approval_id] = replace(held, status="redeemed")
            return held.by

    def _refuse_unless_fit(
        self, held: PendingApproval | None, op: Literal["approve", "redeem"], now: float, plan_digest: str = ""
    ) -> None:
        reason = judge_approval(held, op, now, plan_digest)
        if reason is not None:
            expires_at, status = (held.expires_at, held.status) if held else (0.0, "")
            raise approval_refused(reason, where=self.description, expires_at=expires_at, now=now, status=status)

    def _forget_approvals(self, now: float) -> None:
        self._approvals = {i: a for i, a in self._approvals.items() if a.expires_at + MARGIN_S >= now}

    # --- sign-in sessions: one lock, the same clock ------------------------------------------------------

    async def open_session(self, key: str, record: str, *, idle_s: float, lifetime_s: float) -> None:
        now = self._wall()
        with self._lock:
            self._sessions = {k: held for k, held in self._sessions.items() if session_alive(held, now)}
            self._sessions[key] = HeldSession(record, idle_s, now + lifetime_s, now)

    async def session(self, key: str) -> str | None:
        now = self._wall()
        with self._lock:
            held = self._sessions.get(key)
            if held is None or not session_alive(held, now):
                self._sessions.pop(key, None)
                return None
            self._sessions[key] = replace(held, seen=now)
            return held.record

    async def end_session(self, key: str) -> bool:
        with self._lock:
            return self._sessions.pop(key, None) is not None

    # --- the change budget: one lock, the same clock ----------------------------------------------------

    async def spend_change(
        self, principal: str, server_id: int, *, per_hour: int | None, per_server_per_hour: int | None
    ) -> float | None:
        now = self._wall()
        keys = (budget_key(principal), budget_key(principal, server_id))
        with self._lock:
            self._changes = {
                key: kept
                for key, times in self._changes.items()
                if (kept := [t for t in times if t > now - BUDGET_WINDOW_S])
            }
            later = next_change_at(
                self._changes.get(keys[0], []),
                self._changes.get(keys[1], []),
                per_hour=per_hour,
                per_server_per_hour=per_server_per_hour,
            )
            if later is None:
                for key in keys:
                    self._changes.setdefault(key, []).append(now)
            return later

    async def aclose(self) -> None:
        return None


MAX_EVENTS = 20_000
"""The most events kept at once, whatever their size: the per-event bookkeeping stays bounded too."""


@dataclass(frozen=True)
class _Event:
    stream_id: str
    payload: str | None
    kept_at: float
    size: int


class MemoryEventLog:
    """Events per session, oldest first; the oldest go first past `ttl_s`, a session's bytes or all bytes."""

    def __init__(
        self,
        *,
        ttl_s: float,
        max_bytes: int = MAX_BYTES,
        max_session_bytes: int = MAX_SESSION_BYTES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._max_session_bytes = max_session_bytes
        self._monotonic = monotonic
        self._sessions: dict[str, OrderedDict[str, _Event]] = {}  # session -> its events by id, oldest first
        self._session_bytes: dict[str, int] = {}
        self._order: OrderedDict[tuple[str, str], None] = OrderedDict()  # (session, event id), oldest first
        self.accounted_bytes = 0
        """The bytes of every event kept, as counted against the bounds."""

    async def append(self, session: str, event_id: str, stream_id: str, payload: str | None) -> bool:
        now = self._monotonic()
        self._forget_old(now)
        size = event_bytes(event_id, stream_id, payload)
        if size > self._max_session_bytes:
            return False
        self._sessions.setdefault(session, OrderedDict())[event_id] = _Event(stream_id, payload, now, size)
        self._session_bytes[session] = self._session_bytes.get(session, 0) + size
        self._order[(session, event_id)] = None
        self.accounted_bytes += size
        while self._session_bytes[session] > self._max_session_bytes:
            self._drop(session, next(iter(self._sessions[session])))
        while self.accounted_bytes > self._max_bytes or len(self._order) > MAX_EVENTS:
            self._drop(*next(iter(self._order)))
        return True

    async def after(self, session: str, event_id: str) -> tuple[str, list[tuple[str, str | None]]] | None:
        self._forget_old(self._monotonic())
        events = self._sessions.get(session)
        found = events.get(event_id) if events is not None else None
        if events is None or found is None:
            return None
        ids = list(events)
        later = [(i, events[i]) for i in ids[ids.index(event_id) + 1 :]]
        return found.stream_id, [(i, e.payload) for i, e in later if e.stream_id == found.stream_id]

    async def forget(self, session: str) -> None:
        for event_id in list(self._sessions.get(session, ())):
            self._drop(session, event_id)

    def _forget_old(self, now: float) -> None:
        while self._order:
            session, event_id = next(iter(self._order))
            if self._sessions[session][event_id].kept_at >= now - self._ttl_s:
                return
            self._drop(session, event_id)

    def _drop(self, session: str, event_id: str) -> None:
        event = self._sessions[session].pop(event_id)
        del self._order[(session, event_id)]
        self.accounted_bytes -= event.size
        self._session_bytes[session] -= event.size
        if not self._sessions[session]:
            del self._sessions[session]
            del self._session_bytes[session]

    async def aclose(self) -> None:
        return None
