"""The change budget in every store: restores + deletes per principal per hour (and per server), judged on the
ledger's own clock, shared by every process on one store; past it nothing is counted and the answer says when."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vps_snapshots_mcp.state import BUDGET_WINDOW_S, ConsentLedger, open_ledger

from .support.clocks import WallClock

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        return str(server.url)
    return {"memory": None, "sqlite": f"sqlite:///{tmp_path}/state.db"}[request.param]


@pytest.fixture
async def ledger(store_url: str | None) -> AsyncIterator[ConsentLedger]:
    opened = open_ledger(store_url, wall=_wall)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
def bot() -> str:
    import secrets

    return f"token:bot-{secrets.token_hex(4)}"  # a principal of its own: the Redis server is shared


def _wall() -> float:
    import time

    return time.time()


async def test_a_principal_gets_its_hourly_changes_and_no_more(ledger: ConsentLedger, bot: str) -> None:
    for _ in range(3):
        assert await ledger.spend_change(bot, 101, per_hour=3, per_server_per_hour=None) is None
    later = await ledger.spend_change(bot, 102, per_hour=3, per_server_per_hour=None)
    assert later is not None
    import time

    # The next change is possible an hour after the first one: within a minute of an hour from now.
    assert time.time() + BUDGET_WINDOW_S - 60 < later <= time.time() + BUDGET_WINDOW_S + 5
    # Another principal has its own budget.
    assert await ledger.spend_change(f"{bot}-other", 101, per_hour=3, per_server_per_hour=None) is None


async def test_a_refused_change_costs_nothing(ledger: ConsentLedger, bot: str) -> None:
    assert await ledger.spend_change(bot, 101, per_hour=1, per_server_per_hour=None) is None
    for _ in range(3):
        assert await ledger.spend_change(bot, 101, per_hour=1, per_server_per_hour=None) is not None
    # Raising the cap lets exactly the difference through: the refusals were not counted.
    assert await ledger.spend_change(bot, 101, per_hour=2, per_server_per_hour=None) is None
    assert await ledger.spend_change(bot, 101, per_hour=2, per_server_per_hour=None) is not None


async def test_the_per_server_cap_holds_per_server(ledger: ConsentLedger, bot: str) -> None:
    for _ in range(2):
        assert await ledger.spend_change(bot, 101, per_hour=10, per_server_per_hour=2) is None
    assert await ledger.spend_change(bot, 101, per_hour=10, per_server_per_hour=2) is not None
    assert await ledger.spend_change(bot, 102, per_hour=10, per_server_per_hour=2) is None


async def test_a_cap_of_zero_allows_no_change(ledger: ConsentLedger, bot: str) -> None:
    assert await ledger.spend_change(bot, 101, per_hour=0, per_server_per_hour=None) == float("inf")


async def test_changes_leave_the_window_after_an_hour(bot: str) -> None:
    clock = WallClock()
    ledger = open_ledger(None, wall=clock)
    assert await ledger.spend_change(bot, 101, per_hour=1, per_server_per_hour=None) is None
    first = clock()
    clock.now += 10
    assert await ledger.spend_change(bot, 101, per_hour=1, per_server_per_hour=None) == first + BUDGET_WINDOW_S
    clock.now = first + BUDGET_WINDOW_S + 1
    assert await ledger.spend_change(bot, 101, per_hour=1, per_server_per_hour=None) is None


async def test_two_connections_to_one_store_share_the_budget(store_url: str | None, bot: str) -> None:
    if store_url is None:
        pytest.skip("memory is one process's own")
    first, second = open_ledger(store_url, wall=_wall), open_ledger(store_url, wall=_wall)
    try:
        assert await first.spend_change(bot, 101, per_hour=2, per_server_per_hour=None) is None
        assert await second.spend_change(bot, 101, per_hour=2, per_server_per_hour=None) is None
        assert await first.spend_change(bot, 101, per_hour=2, per_server_per_hour=None) is not None
        assert await second.spend_change(bot, 101, per_hour=2, per_server_per_hour=None) is not None
    finally:
        await first.aclose()
        await second.aclose()
