"""SQLite, for processes on one machine: the ledger (WAL, one transaction per redemption) and the event log."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Literal, TypeVar

import anyio.to_thread

from ..errors import StateUnavailableError
from . import (
    BUDGET_WINDOW_S,
    MARGIN_S,
    MAX_BYTES,
    MAX_SESSION_BYTES,
    ApprovalStatus,
    ConsentRefused,
    HeldSession,
    PendingApproval,
    approval_key,
    approval_refused,
    budget_key,
    event_bytes,
    expired_by_the_ledger,
    judge_approval,
    new_approval_id,
    next_change_at,
    session_alive,
)
from .sqlite_file import StateFile

_T = TypeVar("_T")


_Where = Literal["a.key = ?", "a.status = 'pending' AND a.expires_at >= ?"]
_SELECT_HELD = (
    "SELECT a.plan, a.expires_at, a.status, a.by, p.id, p.plan, p.requester, p.protected "
    "FROM approval a JOIN approval_plan p ON p.key = a.key"
)
_NOW = object()
"""In a query's parameters: the ledger's clock, read inside the transaction."""


class _OnStateFile:
    """A user of the state file: its own, or one shared with the other user of the same file."""

    def __init__(self, file: str | StateFile) -> None:
        self._file = file if isinstance(file, StateFile) else StateFile(file)
        self._path = self._file.path
        self._lock = self._file.lock

    def _connection(self) -> sqlite3.Connection:
        return self._file.connection()

    async def aclose(self) -> None:
        await self._file.aclose()


class SqliteLedger(_OnStateFile):
    def __init__(self, file: str | StateFile, *, wall: Callable[[], float]) -> None:
        super().__init__(file)
        self._wall = wall

    @property
    def description(self) -> str:
        return f"sqlite {self._path}"

    async def prepare(self) -> None:
        return None  # the file is opened, and checked, at its first use

    async def unavailable(self) -> str | None:
        try:
            await anyio.to_thread.run_sync(self._file.check, abandon_on_cancel=True)  # the caller's deadline holds
        except StateUnavailableError as exc:
            return str(exc)
        except sqlite3.Error as exc:
            return f"the consent ledger ({self.description}) cannot be read ({type(exc).__name__})"
        return None

    def _redeem(self, key: str, expires_at: float) -> bool:
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                # The ledger's clock is the high-water mark of every clock that has used the file: pruning
                # and judging expiry go by it alone, so an entry pruned on it can never be redeemed again,
                # whatever the clock of the process asking (one running ahead only moves it forward).
                row = db.execute("SELECT seen FROM high_water WHERE id = 1").fetchone()
                now = max(self._wall(), row[0] if row else 0.0)
                db.execute("INSERT OR REPLACE INTO high_water (id, seen) VALUES (1, ?)", (now,))
                db.execute("DELETE FROM consent WHERE forget_after < ?", (now,))
                used = db.execute("SELECT 1 FROM consent WHERE key = ?", (key,)).fetchone() is not None
                if not used and expires_at >= now:
                    db.execute("INSERT INTO consent (key, forget_after) VALUES (?, ?)", (key, expires_at + MARGIN_S))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if not used and expires_at < now:
            raise ConsentRefused(expired_by_the_ledger(expires_at, now, self.description))
        return not used

    async def redeem(self, key: str, *, expires_at: float, issued_at: float | None = None) -> bool:
        try:
            return await anyio.to_thread.run_sync(self._redeem, key, expires_at)
        except sqlite3.Error as exc:
            raise StateUnavailableError(
                f"the consent ledger ({self.description}) cannot record this consent ({type(exc).__name__}), so no "
                "change may run. Nothing was changed. Check that the file is writable, then try again."
            ) from None

    # --- pending approvals: one transaction each, judged on the file's high-water clock ----------------

    def _approval_transaction(self, work: Callable[[sqlite3.Connection, float], _T]) -> _T:
        """Run `work(db, now)` in one transaction; `now` is the ledger's clock, as for redemptions."""
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT seen FROM high_water WHERE id = 1").fetchone()
                now = max(self._wall(), row[0] if row else 0.0)
                db.execute("INSERT OR REPLACE INTO high_water (id, seen) VALUES (1, ?)", (now,))
                db.execute("DELETE FROM approval WHERE expires_at < ?", (now - MARGIN_S,))
                db.execute("DELETE FROM approval_plan WHERE key NOT IN (SELECT key FROM approval)")
                result = work(db, now)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return result

    def _judged(
        self, db: sqlite3.Connection, key: str, op: Literal["approve", "redeem"], now: float, plan: str = ""
    ) -> PendingApproval:
        row = db.execute("SELECT plan, expires_at, status, by FROM approval WHERE key = ?", (key,)).fetchone()
        held = PendingApproval(row[0], row[1], row[2], row[3]) if row else None
        reason = judge_approval(held, op, now, plan)
        if reason is not None or held is None:
            expires_at, status = (held.expires_at, held.status) if held else (0.0, "")
            raise approval_refused(
                reason or "unknown", where=self.description, expires_at=expires_at, now=now, status=status
            )
        return held

    def _propose(self, plan_digest: str, expires_at: float, plan: str, requester: str, protected: bool) -> str:
        approval_id = new_approval_id()

        def work(db: sqlite3.Connection, now: float) -> None:
            if expires_at < now:
                raise approval_refused("expired", where=self.description, expires_at=expires_at, now=now)
            key = approval_key(approval_id)
            db.execute(
                "INSERT INTO approval (key, plan, expires_at, status) VALUES (?, ?, ?, 'pending')",
                (key, plan_digest, expires_at),
            )
            db.execute(
                "INSERT INTO approval_plan (key, id, plan, requester, protected) VALUES (?, ?, ?, ?, ?)",
                (key, approval_id, plan, requester, int(protected)),
            )

        self._approval_transaction(work)
        return approval_id

    def _decide(self, approval_id: str, status: ApprovalStatus, by: str) -> None:
        def work(db: sqlite3.Connection, now: float) -> None:
            key = approval_key(approval_id)
            self._judged(db, key, "approve", now)
            db.execute("UPDATE approval SET status = ?, by = ? WHERE key = ?", (status, by, key))

        self._approval_transaction(work)

    def _redeem_approval(self, approval_id: str, plan_digest: str) -> str:
        def work(db: sqlite3.Connection, now: float) -> str:
            key = approval_key(approval_id)
            held = self._judged(db, key, "redeem", now, plan_digest)
            db.execute("UPDATE approval SET status = 'redeemed' WHERE key = ?", (key,))
            return str(held.by)

        return self._approval_transaction(work)

    async def _off_thread(self, work: Callable[[], _T]) -> _T:
        try:
            return await anyio.to_thread.run_sync(work)
        except sqlite3.Error as exc:
            raise StateUnavailableError(
                f"the consent ledger ({self.description}) cannot record this approval ({type(exc).__name__}), so "
                "no change may run. Nothing was changed. Check that the file is writable, then try again."
            ) from None

    async def propose(
        self, plan_digest: str, *, expires_at: float, plan: str = "", requester: str = "", protected: bool = False
    ) -> str:
        return await self._off_thread(lambda: self._propose(plan_digest, expires_at, plan, requester, protected))

    def _held(self, where: _Where, parameters: tuple[object, ...]) -> list[PendingApproval]:
        def work(db: sqlite3.Connection, now: float) -> list[PendingApproval]:
            query = f"{_SELECT_HELD} WHERE {where} ORDER BY a.expires_at"  # `where`: one of two fixed conditions
            rows = db.execute(
                query,
                tuple(now if p is _NOW else p for p in parameters),
            ).fetchall()
            return [PendingApproval(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7])) for r in rows]

        return self._approval_transaction(work)

    async def approval(self, approval_id: str) -> PendingApproval | None:
        found = await self._off_thread(lambda: self._held("a.key = ?", (approval_key(approval_id),)))
        return found[0] if found else None

    async def pending_approvals(self) -> list[PendingApproval]:
        return await self._off_thread(lambda: self._held("a.status = 'pending' AND a.expires_at >= ?", (_NOW,)))

    async def approve(self, approval_id: str, *, by: str) -> None:
        await self._off_thread(lambda: self._decide(approval_id, "approved", by))

    async def decline(self, approval_id: str, *, by: str) -> None:
        await self._off_thread(lambda: self._decide(approval_id, "declined", by))

    async def redeem_approval(self, approval_id: str, *, plan_digest: str) -> str:
        return await self._off_thread(lambda: self._redeem_approval(approval_id, plan_digest))

    # --- sign-in sessions: one transaction each, on the file's high-water clock -------------------------

    async def open_session(self, key: str, record: str, *, idle_s: float, lifetime_s: float) -> None:
        def work(db: sqlite3.Connection, now: float) -> None:
            db.execute("DELETE FROM signin_session WHERE until < ? OR seen + idle < ?", (now, now))
            db.execute(
                "INSERT OR REPLACE INTO signin_session (key, record, idle, until, seen) VALUES (?, ?, ?, ?, ?)",
                (key, record, idle_s, now + lifetime_s, now),
            )

        await self._session_step(work)

    async def session(self, key: str) -> str | None:
        def work(db: sqlite3.Connection, now: float) -> str | None:
            row = db.execute("SELECT record, idle, until, seen FROM signin_session WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            if not session_alive(HeldSession(*row), now):
                db.execute("DELETE FROM signin_session WHERE key = ?", (key,))
                return None
            db.execute("UPDATE signin_session SET seen = ? WHERE key = ?", (now, key))
            return str(row[0])

        return await self._session_step(work)

    async def end_session(self, key: str) -> bool:
        def work(db: sqlite3.Connection, now: float) -> bool:
            return db.execute("DELETE FROM signin_session WHERE key = ?", (key,)).rowcount > 0

        return await self._session_step(work)

    async def _session_step(self, work: Callable[[sqlite3.Connection, float], _T]) -> _T:
        try:
            return await anyio.to_thread.run_sync(lambda: self._approval_transaction(work))
        except sqlite3.Error as exc:
            raise StateUnavailableError(
                f"the consent ledger ({self.description}) cannot keep sign-in sessions ({type(exc).__name__}); "
                "check that the file is writable"
            ) from None

    # --- the change budget: one transaction, on the file's high-water clock ------------------------------

    async def spend_change(
        self, principal: str, server_id: int, *, per_hour: int | None, per_server_per_hour: int | None
    ) -> float | None:
        keys = (budget_key(principal), budget_key(principal, server_id))

        def work(db: sqlite3.Connection, now: float) -> float | None:
            db.execute("DELETE FROM change_budget WHERE at <= ?", (now - BUDGET_WINDOW_S,))
            times = [
                [row[0] for row in db.execute("SELECT at FROM change_budget WHERE key = ?", (key,))] for key in keys
            ]
            later = next_change_at(times[0], times[1], per_hour=per_hour, per_server_per_hour=per_server_per_hour)
            if later is None:
                db.executemany("INSERT INTO change_budget (key, at) VALUES (?, ?)", [(key, now) for key in keys])
            return later

        try:
            return await anyio.to_thread.run_sync(lambda: self._approval_transaction(work))
        except sqlite3.Error as exc:
            raise StateUnavailableError(
                f"the consent ledger ({self.description}) cannot count this change against the change budget "
                f"({type(exc).__name__}), so it may not run. Nothing was changed. Check that the file is writable."
            ) from None


class SqliteEventLog(_OnStateFile):
    """Events in the state file per session, kept `ttl_s` on the wall clock (processes on one machine share it).

    Bounded in bytes per session and in total (`session_events_bytes` keeps the total, updated in the same
    transaction as the rows): past a bound, the oldest events go first.
    """

    def __init__(
        self,
        file: str | StateFile,
        *,
        ttl_s: float,
        max_bytes: int = MAX_BYTES,
        max_session_bytes: int = MAX_SESSION_BYTES,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(file)
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._max_session_bytes = max_session_bytes
        self._wall = wall

    def _append(self, session: str, event_id: str, stream_id: str, payload: str | None) -> bool:
        size = event_bytes(event_id, stream_id, payload)
        if size > self._max_session_bytes:
            return False
        now = self._wall()
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                total = self._total(db) - self._delete(db, "forget_after < ?", (now,))
                db.execute(
                    "INSERT INTO session_events (session, event_id, stream, payload, size, forget_after)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (session, event_id, stream_id, payload, size, now + self._ttl_s),
                )
                total += size
                (mine,) = db.execute("SELECT SUM(size) FROM session_events WHERE session = ?", (session,)).fetchone()
                if mine > self._max_session_bytes:
                    total -= self._delete_oldest(db, mine - self._max_session_bytes, session)
                if total > self._max_bytes:
                    total -= self._delete_oldest(db, total - self._max_bytes, None)
                db.execute("INSERT OR REPLACE INTO session_events_bytes (id, total) VALUES (1, ?)", (total,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return True

    @staticmethod
    def _total(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT total FROM session_events_bytes WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _delete(db: sqlite3.Connection, where: str, parameters: tuple[object, ...]) -> int:
        """Delete the rows matching `where`; the bytes they held."""
        (freed,) = db.execute(f"SELECT COALESCE(SUM(size), 0) FROM session_events WHERE {where}", parameters).fetchone()  # noqa: S608 - fixed clauses
        db.execute(f"DELETE FROM session_events WHERE {where}", parameters)  # noqa: S608 - fixed clauses
        return int(freed)

    @classmethod
    def _delete_oldest(cls, db: sqlite3.Connection, at_least: int, session: str | None) -> int:
        """Delete the oldest events (of `session`, or of all) until `at_least` bytes are freed; the bytes freed."""
        where, parameters = ("session = ?", (session,)) if session is not None else ("1", ())
        rows = db.execute(f"SELECT seq, size FROM session_events WHERE {where} ORDER BY seq", parameters)  # noqa: S608 - fixed clauses
        freed, last = 0, None
        for seq, size in rows:
            freed, last = freed + size, seq
            if freed >= at_least:
                break
        rows.close()
        return 0 if last is None else cls._delete(db, f"{where} AND seq <= ?", (*parameters, last))

    def _after(self, session: str, event_id: str) -> tuple[str, list[tuple[str, str | None]]] | None:
        with self._lock:
            db = self._connection()
            row = db.execute(
                "SELECT seq, stream FROM session_events WHERE session = ? AND event_id = ? AND forget_after >= ?",
                (session, event_id, self._wall()),
            ).fetchone()
            if row is None:
                return None
            seq, stream_id = row
            later = db.execute(
                "SELECT event_id, payload FROM session_events WHERE session = ? AND stream = ? AND seq > ?"
                " ORDER BY seq",
                (session, stream_id, seq),
            ).fetchall()
        return str(stream_id), [(str(i), payload) for i, payload in later]

    def _forget(self, session: str) -> None:
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                total = self._total(db) - self._delete(db, "session = ?", (session,))
                db.execute("INSERT OR REPLACE INTO session_events_bytes (id, total) VALUES (1, ?)", (total,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    async def append(self, session: str, event_id: str, stream_id: str, payload: str | None) -> bool:
        return await anyio.to_thread.run_sync(self._append, session, event_id, stream_id, payload)

    async def after(self, session: str, event_id: str) -> tuple[str, list[tuple[str, str | None]]] | None:
        return await anyio.to_thread.run_sync(self._after, session, event_id)

    async def forget(self, session: str) -> None:
        await anyio.to_thread.run_sync(self._forget, session)
