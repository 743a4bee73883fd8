"""Ledgers that never forget a consent that can still verify, whatever the clocks of the processes sharing them.

One clock prunes and judges: the SQLite file's shared high-water mark, Redis's own
`TIME`; a consent whose expiry is past on that clock is refused, so nothing the
ledger pruned can be redeemed again. A Redis that lost its data refuses what was
issued before the loss; one that may evict consents refuses to record them; one
that answers too late never lets its caller think nothing happened.

Real parts: SQLite files, a second Python process, a redis-server each test starts
(restarted, flushed, frozen with SIGSTOP), the real SDK client and server.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest
import redis
from mcp.server import request_state

from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.state import ConsentRefused
from vps_snapshots_mcp.state.memory import MemoryLedger
from vps_snapshots_mcp.state.redis import RedisLedger
from vps_snapshots_mcp.state.sqlite import SqliteLedger
from vps_snapshots_mcp.timing import Timing

from .support.mcp_client import accepted_round, connected, preview_token, says_yes, text_of
from .support.redis_server import RedisServer, next_whole_second
from .support.world import ServerFactory

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()
FAST_REDEMPTION = """
import anyio, sys
from vps_snapshots_mcp.state.sqlite import SqliteLedger

async def main() -> None:
    ledger = SqliteLedger(sys.argv[1], wall=lambda: float(sys.argv[2]))
    print(await ledger.redeem("token:fast", expires_at=float(sys.argv[2]) + 600))
    await ledger.aclose()

anyio.run(main)
"""


async def redeemed_again(ledger: SqliteLedger | MemoryLedger | RedisLedger, key: str, expires_at: float) -> object:
    """What a second redemption of `key` answers: True (executes again), False (used), or the refusal."""
    try:
        return await ledger.redeem(key, expires_at=expires_at)
    except ConsentRefused as refused:
        return refused


# --- SQLite: a process whose clock runs ahead --------------------------------------------------------


async def test_a_process_two_hours_ahead_cannot_make_the_sqlite_ledger_forget(tmp_path: Path) -> None:
    path = str(tmp_path / "consent.db")
    correct = SqliteLedger(path, wall=lambda: T0)
    try:
        assert await correct.redeem("token:spent", expires_at=T0 + 600, issued_at=T0) is True
        # Another process, its clock two hours ahead, redeems once and exits.
        with anyio.fail_after(60):
            fast = await anyio.run_process([sys.executable, "-c", FAST_REDEMPTION, path, str(T0 + 7200)], check=False)
        assert fast.returncode == 0 and fast.stdout.decode().strip() == "True", fast.stderr.decode()
        # On the correct clock the spent token still verifies for nine minutes: the ledger must not forget it.
        later = SqliteLedger(path, wall=lambda: T0 + 60)
        try:
            again = await redeemed_again(later, "token:spent", T0 + 600)
        finally:
            await later.aclose()
    finally:
        await correct.aclose()
    assert again is not True
    assert isinstance(again, ConsentRefused) and "ledger's clock" in str(again)


# --- Redis: replicas whose clocks differ by more than the margin --------------------------------------


async def test_replicas_ten_minutes_apart_on_one_redis_never_both_redeem(redis_server: RedisServer) -> None:
    now = time.time()
    expires = now + 5  # the token verifies on the slow replica for ten more minutes
    fast = RedisLedger(redis_server.url, wall=lambda: time.time() + 304)
    slow = RedisLedger(redis_server.url, wall=lambda: time.time() - 600)
    try:
        assert await fast.redeem("token:skewed", expires_at=expires) is True
        # Measured on the fast clock, the key used to live 1 s; Redis's clock cannot be injected, so wait that long.
        await anyio.sleep(1.5)
        again = await redeemed_again(slow, "token:skewed", expires)
    finally:
        await fast.aclose()
        await slow.aclose()
    assert again is False


# --- Redis that lost its data ------------------------------------------------------------------------


def flushall(server: RedisServer) -> None:
    with redis.Redis.from_url(server.url) as raw:
        raw.flushall()


@pytest.mark.parametrize("loss", ["restart without persistence", "flushall"])
async def test_a_redis_that_lost_its_data_refuses_tokens_issued_before(
    loss: str, make_server: ServerFactory, provider: ProviderState, redis_server: RedisServer
) -> None:
    async with connected(make_server(timing=Timing(), state_url=redis_server.url)) as client:
        token = await preview_token(client, "restore_snapshot", 801)
        confirmed = {"snapshot_id": 801, "confirm": True, "confirmation_token": token}
        first = await client.call_tool("restore_snapshot", confirmed)
        assert not first.is_error, text_of(first)
        provider.servers[12345].status = "running"  # the restore finished; only the ledger stands in the way
        if loss == "flushall":
            flushall(redis_server)
        else:
            redis_server.restart()
        replayed = await client.call_tool("restore_snapshot", confirmed)
        await next_whole_second()  # a token issued in the second the ledger was reborn is refused too
        fresh = await preview_token(client, "restore_snapshot", 801)
        provider.servers[12345].status = "running"
        done = await client.call_tool(
            "restore_snapshot", {"snapshot_id": 801, "confirm": True, "confirmation_token": fresh}
        )
    text = text_of(replayed)
    assert text.startswith("confirmation_invalid: ") and "lost its data" in text and "fresh preview" in text
    assert done.structured_content is not None and done.structured_content["status"] == "restore_started", text_of(done)
    assert [r.path for r in provider.mutations] == ["/api/v1/snapshots/801/restore/"] * 2


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
async def test_a_redis_that_may_evict_consents_is_named_at_start_and_records_none(
    policy: str,
    make_server: ServerFactory,
    provider: ProviderState,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with redis.Redis.from_url(redis_server.url) as raw:
        raw.config_set("maxmemory-policy", policy)
    with caplog.at_level(logging.WARNING):
        async with connected(make_server(timing=Timing(), state_url=redis_server.url)) as client:
            at_start = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            token = await preview_token(client, "delete_snapshot", 798)
            refused = await client.call_tool(
                "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": token}
            )
    assert any(f"maxmemory-policy {policy}" in line and "noeviction" in line for line in at_start), at_start
    text = text_of(refused)
    assert text.startswith("state_unavailable: ") and "noeviction" in text and "Nothing was changed" in text
    assert provider.mutations == []


# --- Redis that answers too late ------------------------------------------------------------------------


async def test_a_hung_redis_says_the_consent_may_be_used_up_not_try_again(
    make_server: ServerFactory, provider: ProviderState, redis_server: RedisServer
) -> None:
    async with connected(make_server(timing=Timing(), state_url=redis_server.url)) as client:
        token = await preview_token(client, "restore_snapshot", 801)
        confirmed = {"snapshot_id": 801, "confirm": True, "confirmation_token": token}
        redis_server.pause()
        try:
            hung = await client.call_tool("restore_snapshot", confirmed)
        finally:
            redis_server.resume()
        with redis.Redis.from_url(redis_server.url) as raw:  # the redemption sent before the timeout lands now
            deadline = time.monotonic() + 10
            while not raw.keys("vps-snapshots-mcp:consent:*"):
                assert time.monotonic() < deadline, "the queued redemption never landed"
                await anyio.sleep(0.02)
        again = await client.call_tool("restore_snapshot", confirmed)
    text = text_of(hung)
    assert text.startswith("state_unavailable: ") and "used up" in text and "Nothing was changed" in text, text
    assert "try again" not in text.lower()
    assert text_of(again).startswith("confirmation_invalid: this consent was already used")
    assert provider.mutations == []


# --- 2026-07-28 rounds, judged on the same never-back clock -------------------------------------------


class SystemClock:
    """The machine's clock, as both the server and the SDK read it: a test moves it forward and back."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_a_round_pruned_from_the_ledger_stays_spent_when_the_clock_steps_back(
    make_server: ServerFactory, provider: ProviderState, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SystemClock()
    timing = Timing(now=clock)
    # The SDK checks a round's expiry with time.time(): give it the same machine clock the server reads.
    monkeypatch.setattr(request_state, "time", SimpleNamespace(time=lambda: clock.now.timestamp()))
    ledger = MemoryLedger(wall=timing.wall)
    arguments = {"snapshot_id": 798, "confirm": True}
    original = replace(provider.snapshots[798])
    async with connected(make_server(timing=timing, ledger=ledger), elicit=says_yes) as client:
        responses, state = await accepted_round(client, "delete_snapshot", arguments)
        done = await client.call_tool("delete_snapshot", arguments, input_responses=responses, request_state=state)
        assert done.structured_content is not None and done.structured_content["status"] == "deleted"
        provider.snapshots[798] = original  # the same snapshot back again: only the ledger can refuse now
        clock.now += timedelta(hours=2)  # long past the round's expiry: the next redemption prunes its key
        assert await ledger.redeem("token:unrelated", expires_at=clock.now.timestamp() + 600)
        clock.now -= timedelta(hours=2) - timedelta(seconds=100)  # set back: the SDK sees the round alive again
        again = await client.call_tool("delete_snapshot", arguments, input_responses=responses, request_state=state)
    assert again.is_error and text_of(again).startswith("confirmation_invalid: ")
    assert [(r.method, r.path) for r in provider.mutations] == [("DELETE", "/api/v1/snapshots/798/")]
