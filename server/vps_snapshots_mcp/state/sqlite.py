"""SQLite, for processes on one machine: the ledger (WAL, one transaction per redemption) and the event log."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable

import anyio.to_thread

from ..errors import StateUnavailableError
from . import MARGIN_S, ConsentRefused, expired_by_the_ledger

_SCHEMA = """
CREATE TABLE IF NOT EXISTS consent (key TEXT PRIMARY KEY, forget_after REAL NOT NULL);
CREATE TABLE IF NOT EXISTS high_water (id INTEGER PRIMARY KEY CHECK (id = 1), seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, payload TEXT, forget_after REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_stream ON events (stream, id);
CREATE INDEX IF NOT EXISTS events_by_age ON events (forget_after);
"""


_LEDGER_TABLES = {
    "consent": "CREATE TABLE consent (key TEXT PRIMARY KEY, forget_after REAL NOT NULL)",
    "high_water": "CREATE TABLE high_water (id INTEGER PRIMARY KEY CHECK (id = 1), seen REAL NOT NULL)",
}
"""The ledger's tables as SQLite records them: a file holding them in another shape was not made by this server."""


def connect(path: str) -> sqlite3.Connection:
    """One connection to the state file, its tables created; callers serialise their use of it.

    The file is this user's alone: made 0600 (SQLite gives its -wal and -shm the
    file's own mode), never reached through a symbolic link, refused when another
    user owns it or others may write it, and refused when it holds what this server
    never makes (a trigger, a view, a ledger table of another shape): a planted
    trigger could make one consent count for many. `StateUnavailableError` says which.
    """
    own = _open_private(path, create=True)
    assert own is not None, "made if absent"
    try:
        for companion in (path + "-wal", path + "-shm"):
            fd = _open_private(companion, create=False)
            if fd is not None:
                os.close(fd)
        db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA trusted_schema=OFF")
            _check_schema(db, path)
            if not os.path.samestat(os.fstat(own), os.lstat(path)):  # swapped since it was checked
                raise _refused(path, "it was replaced while being opened")
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
    finally:
        os.close(own)
    return db


def _open_private(path: str, *, create: bool) -> int | None:
    """Open `path` without following a link and check it is ours alone (tightening 0644 to 0600); None if absent."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        if create:
            raise _refused(path, "its directory does not exist") from None
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refused(path, "it is a symbolic link") from None
        raise _refused(path, f"it cannot be opened ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refused(path, "it is not a regular file")
        if info.st_uid != os.geteuid():
            raise _refused(path, f"it is owned by another user (uid {info.st_uid}, this server runs as {os.geteuid()})")
        if info.st_mode & 0o022:
            raise _refused(path, f"it is writable by other users (mode {stat.S_IMODE(info.st_mode):04o})")
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)  # made readable by others by an earlier version: this user's alone from now on
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_schema(db: sqlite3.Connection, path: str) -> None:
    for kind, name, sql in db.execute("SELECT type, name, sql FROM sqlite_master"):
        if kind in ("trigger", "view"):
            raise _refused(path, f"it holds a {kind} named {name!r} that was not made by this server")
        if kind == "table" and name in _LEDGER_TABLES and sql != _LEDGER_TABLES[name]:
            raise _refused(path, f"its table {name!r} has a shape that was not made by this server")


def _refused(path: str, why: str) -> StateUnavailableError:
    return StateUnavailableError(
        f"the state file {path} is refused: {why}. Nothing was changed. Point --state-url at a regular file "
        "this user owns and only this user may read and write (mode 0600), or at a path where it can be made."
    )


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

    async def prepare(self) -> None:
        return None  # the file is opened, and checked, at its first use

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
