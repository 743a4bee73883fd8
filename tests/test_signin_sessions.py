"""Sign-in sessions in every store (memory, SQLite, Redis): held under a digest, judged on the ledger's own clock,
ended for every process sharing the store, an idle and an absolute expiry, taken once."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from vps_snapshots_mcp.state import ConsentLedger, open_ledger

from .support.clocks import WallClock

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_server").url)
    return {"memory": None, "sqlite": f"sqlite:///{tmp_path}/state.db"}[request.param]


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
async def ledger(store_url: str | None, wall: WallClock) -> AsyncIterator[ConsentLedger]:
    opened = open_ledger(store_url, wall=wall)
    try:
        yield opened
    finally:
        await opened.aclose()


def key() -> str:
    return secrets.token_hex(32)  # a digest stands for the cookie; the Redis server is shared between tests


async def later(store_url: str | None, wall: WallClock, seconds: float) -> None:
    """Let `seconds` pass on the ledger's clock: the settable wall clock; Redis keeps its own (`TIME`)."""
    if store_url is not None and store_url.startswith("redis"):
        await anyio.sleep(seconds)
    else:
        wall.now += seconds


async def test_a_session_is_read_back_until_it_ends_for_everyone(store_url: str | None, wall: WallClock) -> None:
    k = key()
    first, second = open_ledger(store_url, wall=wall), open_ledger(store_url, wall=wall)
    try:
        await first.open_session(k, '{"sub": "alice"}', idle_s=60, lifetime_s=600)
        assert await first.session(k) == '{"sub": "alice"}'
        assert await first.session(key()) is None  # forged: unknown
        if store_url is not None:  # a second process on the same store reads it, and its end is everyone's
            assert await second.session(k) == '{"sub": "alice"}'
            assert await second.end_session(k) is True
            assert await first.session(k) is None
        else:
            assert await first.end_session(k) is True
        assert await first.end_session(k) is False  # taken once
    finally:
        await first.aclose()
        await second.aclose()


async def test_an_idle_session_expires_and_use_keeps_it(
    ledger: ConsentLedger, store_url: str | None, wall: WallClock
) -> None:
    k = key()
    await ledger.open_session(k, "r", idle_s=0.6, lifetime_s=600)
    for _ in range(3):
        await later(store_url, wall, 0.35)
        assert await ledger.session(k) == "r"  # each use moves the idle expiry on
    await later(store_url, wall, 0.9)
    assert await ledger.session(k) is None
    assert await ledger.session(k) is None


async def test_a_used_session_still_ends_at_its_lifetime(
    ledger: ConsentLedger, store_url: str | None, wall: WallClock
) -> None:
    k = key()
    await ledger.open_session(k, "r", idle_s=0.6, lifetime_s=1.0)
    await later(store_url, wall, 0.5)
    assert await ledger.session(k) == "r"
    await later(store_url, wall, 0.7)
    assert await ledger.session(k) is None  # 1.2 s after it was opened, used 0.7 s ago
