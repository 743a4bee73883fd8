"""The SQLite state file is this user's alone: made 0600 (its WAL and SHM too), never a symlink, never planted.

Real files on disk; the other owner is `nobody`, which needs root to arrange.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vps_snapshots_mcp.errors import StateUnavailableError
from vps_snapshots_mcp.state.sqlite import SqliteLedger
from vps_snapshots_mcp.timing import Timing

pytestmark = pytest.mark.anyio

EXPIRES = time.time() + 600


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most systems start with (022): files are world-readable unless made otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def refusal(path: Path) -> str:
    ledger = SqliteLedger(str(path), wall=Timing().wall)
    try:
        with pytest.raises(StateUnavailableError) as caught:
            await ledger.redeem("token:a", expires_at=EXPIRES)
    finally:
        await ledger.aclose()
    message = str(caught.value)
    assert "\n" not in message and "Nothing was changed" in message
    return message


async def test_the_state_file_its_wal_and_shm_are_made_for_this_user_alone(tmp_path: Path, usual_umask: None) -> None:
    path = tmp_path / "state.db"
    ledger = SqliteLedger(str(path), wall=Timing().wall)
    try:
        assert await ledger.redeem("token:a", expires_at=EXPIRES)
        modes = {name: mode(tmp_path / name) for name in ("state.db", "state.db-wal", "state.db-shm")}
    finally:
        await ledger.aclose()
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}


async def test_a_state_file_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)  # made by an earlier version
    ledger = SqliteLedger(str(path), wall=Timing().wall)
    try:
        assert await ledger.redeem("token:a", expires_at=EXPIRES)
    finally:
        await ledger.aclose()
    assert mode(path) == 0o600


async def test_a_symlinked_state_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.db"
    sqlite3.connect(target).close()
    (tmp_path / "state.db").symlink_to(target)
    assert "symbolic link" in await refusal(tmp_path / "state.db")


async def test_a_state_file_others_may_write_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    sqlite3.connect(path).close()
    path.chmod(0o666)
    assert "writable by other users" in await refusal(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file owned by another user (nobody) needs root")
async def test_a_state_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    sqlite3.connect(path).close()
    path.chmod(0o600)
    os.chown(path, 65534, 65534)  # nobody
    assert "owned by another user" in await refusal(path)


PLANTED = {
    "a trigger": """
        CREATE TABLE consent (key TEXT PRIMARY KEY, forget_after REAL NOT NULL);
        CREATE TRIGGER forget AFTER INSERT ON consent BEGIN DELETE FROM consent; END;
    """,
    "a consent table without its key": "CREATE TABLE consent (key TEXT, forget_after REAL NOT NULL);",
    "a view": "CREATE VIEW anything AS SELECT 1;",
}


@pytest.mark.parametrize("planted", PLANTED, ids=list(PLANTED))
async def test_a_planted_state_file_is_refused(planted: str, tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript(PLANTED[planted])
    db.close()
    path.chmod(0o600)
    assert "was not made by this server" in await refusal(path)
