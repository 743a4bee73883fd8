"""SQLite, for processes on one machine: the ledger (WAL, one transaction per redemption) and the event log."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable

import anyio.to_thread

from ..errors import StateUnavailableError
from . import MARGIN_S

_SCHEMA = """
CREATE TABLE IF NOT EXISTS consent (key TEXT PRIMARY KEY, forget_after REAL NOT NULL);
CREATE TABLE IF NOT EXISTS high_water (id INTEGER PRIMARY KEY CHECK (id = 1), seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, payload TEXT, forget_after REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_stream ON events (stream, id);
CREATE INDEX IF NOT EXISTS events_by_age ON events (forget_after);
"""


def connect(path: str) -> sqlite3.Connection:
    """One connection to the state file, its tables created; callers serialise their use of it."""
    db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(_SCHEMA)
    return db


class _StateFile:
    """One connection to the state file, opened at its first use; `_lock` serialises every use of it."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = connect(self._path)
        return self._db

    async def aclose(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class SqliteLedger(_StateFile):
    def __init__(self, path: str, *, wall: Callable[[], float]) -> None:
        super().__init__(path)
        self._wall = wall

    @property
    def shared(self) -> bool:
        return True

    @property
    def description(self) -> str:
        return f"sqlite {self._path}"

    def _redeem(self, key: str, forget_after: float) -> bool:
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                # The high-water mark is shared too: one process's clock stepping back cannot
                # prune what another, later clock has seen as still alive.
                row = db.execute("SELECT seen FROM high_water WHERE id = 1").fetchone()
                now = max(self._wall(), row[0] if row else 0.0)
                db.execute("INSERT OR REPLACE INTO high_water (id, seen) VALUES (1, ?)", (now,))
                db.execute("DELETE FROM consent WHERE forget_after < ?", (now,))
                inserted = db.execute(
                    "INSERT OR IGNORE INTO consent (key, forget_after) VALUES (?, ?)", (key, forget_after)
                ).rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return inserted == 1

    async def redeem(self, key: str, *, expires_at: float) -> bool:
        try:
            return await anyio.to_thread.run_sync(self._redeem, key, expires_at + MARGIN_S)
        except sqlite3.Error as exc:
            raise StateUnavailableError(
                f"the consent ledger ({self.description}) cannot record this consent ({type(exc).__name__}), so no "
                "change may run. Nothing was changed. Check that the file is writable, then try again."
            ) from None


class SqliteEventLog(_StateFile):
    """Events in the state file, kept `ttl_s` on the wall clock (processes on one machine share it)."""

    def __init__(self, path: str, *, ttl_s: float, wall: Callable[[], float] = time.time) -> None:
        super().__init__(path)
        self._ttl_s = ttl_s
        self._wall = wall

    def _append(self, stream_id: str, payload: str | None) -> str:
        now = self._wall()
        with self._lock:
            db = self._connection()
            db.execute("DELETE FROM events WHERE forget_after < ?", (now,))
            cursor = db.execute(
                "INSERT INTO events (stream, payload, forget_after) VALUES (?, ?, ?)",
                (stream_id, payload, now + self._ttl_s),
            )
            return str(cursor.lastrowid)

    def _after(self, event_id: str) -> tuple[str, list[tuple[str, str | None]]] | None:
        if not event_id.isdigit():
            return None
        with self._lock:
            db = self._connection()
            row = db.execute(
                "SELECT stream FROM events WHERE id = ? AND forget_after >= ?", (int(event_id), self._wall())
            ).fetchone()
            if row is None:
                return None
            later = db.execute(
                "SELECT id, payload FROM events WHERE stream = ? AND id > ? ORDER BY id", (row[0], int(event_id))
            ).fetchall()
        return str(row[0]), [(str(i), payload) for i, payload in later]

    async def append(self, stream_id: str, payload: str | None) -> str:
        return await anyio.to_thread.run_sync(self._append, stream_id, payload)

    async def after(self, event_id: str) -> tuple[str, list[tuple[str, str | None]]] | None:
        return await anyio.to_thread.run_sync(self._after, event_id)
