"""The SQLite state file: opened as this user's alone, one connection for the ledger and event log, its readiness.

Opened without following a link, refused when others may write it or it holds a schema this server never makes.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import threading

from ..errors import StateUnavailableError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS consent (key TEXT PRIMARY KEY, forget_after REAL NOT NULL);
CREATE TABLE IF NOT EXISTS high_water (id INTEGER PRIMARY KEY CHECK (id = 1), seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS approval (key TEXT PRIMARY KEY, plan TEXT NOT NULL, expires_at REAL NOT NULL,
    status TEXT NOT NULL, by TEXT);
CREATE TABLE IF NOT EXISTS approval_plan (key TEXT PRIMARY KEY, id TEXT NOT NULL, plan TEXT NOT NULL,
    requester TEXT NOT NULL, protected INTEGER NOT NULL);
DROP TABLE IF EXISTS events;
CREATE TABLE IF NOT EXISTS session_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL, event_id TEXT NOT NULL, stream TEXT NOT NULL,
    payload TEXT, size INTEGER NOT NULL, forget_after REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS session_events_by_id ON session_events (session, event_id);
CREATE INDEX IF NOT EXISTS session_events_by_session ON session_events (session, seq, size);
CREATE INDEX IF NOT EXISTS session_events_by_age ON session_events (forget_after);
CREATE TABLE IF NOT EXISTS session_events_bytes (id INTEGER PRIMARY KEY CHECK (id = 1), total INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS change_budget (key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS change_budget_by_key ON change_budget (key, at);
CREATE TABLE IF NOT EXISTS signin_session (key TEXT PRIMARY KEY, record TEXT NOT NULL, idle REAL NOT NULL,
    until REAL NOT NULL, seen REAL NOT NULL);
"""


_LEDGER_TABLES = {
    "consent": "CREATE TABLE consent (key TEXT PRIMARY KEY, forget_after REAL NOT NULL)",
    "high_water": "CREATE TABLE high_water (id INTEGER PRIMARY KEY CHECK (id = 1), seen REAL NOT NULL)",
    "approval": "CREATE TABLE approval (key TEXT PRIMARY KEY, plan TEXT NOT NULL, expires_at REAL NOT NULL,\n"
    "    status TEXT NOT NULL, by TEXT)",
    "signin_session": "CREATE TABLE signin_session (key TEXT PRIMARY KEY, record TEXT NOT NULL, idle REAL NOT NULL,\n"
    "    until REAL NOT NULL, seen REAL NOT NULL)",
    "approval_plan": "CREATE TABLE approval_plan (key TEXT PRIMARY KEY, id TEXT NOT NULL, plan TEXT NOT NULL,\n"
    "    requester TEXT NOT NULL, protected INTEGER NOT NULL)",
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


class StateFile:
    """One connection to the state file, opened at its first use, shared by the ledger and the event log.

    `lock` serialises every use of it; closing it closes it for both (a later use opens it again).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = connect(self.path)
        return self._db

    def check(self) -> None:
        """Readiness: the file is still in its place and this user's alone, and a read through the connection
        answers (`StateUnavailableError`, `sqlite3.Error` when not). Opened if it was not yet, as a first use
        would; nothing is recorded."""
        with self.lock:
            db = self.connection()
            fd = _open_private(self.path, create=False)
            if fd is None:
                raise _refused(self.path, "it is gone (deleted, or its volume is no longer mounted)")
            os.close(fd)
            db.execute("SELECT seen FROM high_water WHERE id = 1").fetchone()

    async def aclose(self) -> None:
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None
