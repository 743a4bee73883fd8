"""The SQLite ledger: single use across processes on one machine (WAL, one transaction per redemption)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

import anyio.to_thread

from ..errors import StateUnavailableError
from . import MARGIN_S

_SCHEMA = """
CREATE TABLE IF NOT EXISTS consent (key TEXT PRIMARY KEY, forget_after REAL NOT NULL);
CREATE TABLE IF NOT EXISTS high_water (id INTEGER PRIMARY KEY CHECK (id = 1), seen REAL NOT NULL);
"""


class SqliteLedger:
    def __init__(self, path: str, *, wall: Callable[[], float]) -> None:
        self._path = path
        self._wall = wall
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @property
    def shared(self) -> bool:
        return True

    @property
    def description(self) -> str:
        return f"sqlite {self._path}"

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self._path, timeout=5.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

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

    async def aclose(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
