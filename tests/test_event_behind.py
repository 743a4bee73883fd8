"""SSE events kept in Redis are written behind the stream, against a real Redis.

The call does not wait on Redis (a frozen Redis holds no append), events arriving together cost one round trip,
the store's order is the order they were handed in, a replay and a session's end wait for what came before
them, a full queue waits for room, and a Redis that is gone costs a warning, never the stream.
"""

from __future__ import annotations

import logging
import secrets

import anyio
import anyio.lowlevel
import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from vps_snapshots_mcp.state import open_event_log, open_state
from vps_snapshots_mcp.state.behind import MAX_BATCH, WriteBehindEventLog
from vps_snapshots_mcp.state.redis_events import EVENTS_PREFIX, RedisEventLog

from .support.redis_server import RedisServer

pytestmark = pytest.mark.anyio

TTL_S = 600.0
DEADLINE_S = 10.0


def evalsha_calls(redis: Redis) -> int:
    stats = redis.info("commandstats").get("cmdstat_evalsha") or {}
    return int(stats.get("calls", 0))


async def warmed(log: WriteBehindEventLog, redis: Redis) -> None:
    """The script loaded (its first use costs a NOSCRIPT and a load), and Redis's counts reset."""
    warm = f"warm-{secrets.token_hex(4)}"
    await log.append(warm, "w", "0", None)
    assert await log.after(warm, "w") == ("0", [])
    redis.config_resetstat()


def behind(url: str, **kwargs: object) -> WriteBehindEventLog:
    return WriteBehindEventLog(RedisEventLog(url, ttl_s=TTL_S), **kwargs)  # type: ignore[arg-type]


async def test_redis_event_logs_are_written_behind() -> None:
    assert isinstance(open_event_log("redis://127.0.0.1:1/0", ttl_s=TTL_S), WriteBehindEventLog)
    state = open_state("redis://127.0.0.1:1/0", wall=lambda: 0.0, event_ttl_s=TTL_S)
    assert isinstance(state.events, WriteBehindEventLog)


async def test_events_handed_in_together_cost_one_round_trip_a_batch_and_keep_their_order(
    redis_server: RedisServer,
) -> None:
    log = behind(redis_server.url)
    redis = Redis.from_url(redis_server.url)
    await warmed(log, redis)
    for n in range(100):  # two sessions, interleaved, handed in without a pause
        assert await log.append(f"s{n % 2}", f"e{n}", str(n % 3), f'{{"n": {n}}}')
    assert log.pending == 100  # nothing has waited for Redis yet
    found = await log.after("s0", "e0")
    assert evalsha_calls(redis) == -(-100 // MAX_BATCH)  # 2 round trips for 100 events, not 100
    assert found == ("0", [(f"e{n}", f'{{"n": {n}}}') for n in range(6, 100, 6)])  # s0's stream "0", in order
    assert log.pending == 0
    await log.aclose()
    redis.close()


async def test_events_of_many_calls_share_one_round_trip_unless_someone_waits_for_them(
    redis_server: RedisServer,
) -> None:
    log = behind(redis_server.url, linger_s=3600)  # the writer waits as long as nobody needs the events
    redis = Redis.from_url(redis_server.url)
    await warmed(log, redis)
    for n in range(10):  # ten calls' events, the loop turning between them as it does between calls
        await log.append("a", f"e{n}", "s", f'"{n}"')
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
    assert evalsha_calls(redis) == 0 and log.pending == 10  # nothing written yet: it lingers
    with anyio.fail_after(DEADLINE_S):  # a replay cuts the linger short: one round trip for all ten
        found = await log.after("a", "e0")
    assert found == ("s", [(f"e{n}", f'"{n}"') for n in range(1, 10)]) and evalsha_calls(redis) == 1
    for n in range(MAX_BATCH):  # a full batch does not wait either
        await log.append("b", f"f{n}", "s", None)
    with anyio.fail_after(DEADLINE_S):
        while evalsha_calls(redis) < 2:  # noqa: ASYNC110 - Redis's own count: nothing in this process to wait on
            await anyio.sleep(0.01)
    assert log.pending == 0
    await log.aclose()
    redis.close()


async def test_a_frozen_redis_holds_no_append_and_the_replay_waits_for_it(redis_server: RedisServer) -> None:
    log = behind(redis_server.url)
    await log.append("a", "first", "s", None)
    assert await log.after("a", "first") == ("s", [])
    redis_server.pause()
    try:
        with anyio.fail_after(1):  # Redis answers nothing now; the stream's events still go straight out
            for n in range(20):
                assert await log.append("a", f"e{n}", "s", f'"{n}"')
        assert log.pending >= 19
        with anyio.move_on_after(0.3) as waited:  # a replay waits for the events before it
            await log.after("a", "first")
        assert waited.cancelled_caught
    finally:
        redis_server.resume()
    with anyio.fail_after(DEADLINE_S):
        found = await log.after("a", "first")
    assert found == ("s", [(f"e{n}", f'"{n}"') for n in range(20)])
    await log.aclose()


async def test_a_full_queue_waits_for_room(redis_server: RedisServer) -> None:
    log = behind(redis_server.url, max_pending=4)
    await log.append("a", "first", "s", None)
    await log.after("a", "first")
    redis_server.pause()
    try:
        with anyio.fail_after(1):
            for n in range(4):
                await log.append("a", f"e{n}", "s", None)
        with anyio.move_on_after(0.3) as waited:
            await log.append("a", "one-too-many", "s", None)
        assert waited.cancelled_caught and log.pending == 4  # it waited; it was not queued, nor dropped silently
    finally:
        redis_server.resume()
    with anyio.fail_after(DEADLINE_S):
        assert await log.append("a", "now", "s", None)
        found = await log.after("a", "first")
    assert found is not None and [i for i, _ in found[1]] == ["e0", "e1", "e2", "e3", "now"]
    await log.aclose()


async def test_the_bytes_waiting_for_a_frozen_redis_are_bounded_and_so_is_a_batch(redis_server: RedisServer) -> None:
    log = behind(redis_server.url, max_pending_bytes=5_000)
    redis = Redis.from_url(redis_server.url)
    await warmed(log, redis)
    payload = '"' + "x" * 1_000 + '"'  # about 1,300 bytes as counted
    redis_server.pause()
    try:
        with anyio.fail_after(1):
            for n in range(3):
                await log.append("a", f"e{n}", "s", payload)
        with anyio.move_on_after(0.3) as waited:  # a fourth would pass the bytes allowed to wait
            await log.append("a", "e3", "s", payload)
        assert waited.cancelled_caught and log.pending == 3
    finally:
        redis_server.resume()
    with anyio.fail_after(DEADLINE_S):
        found = await log.after("a", "e0")
    assert found is not None and [i for i, _ in found[1]] == ["e1", "e2"]
    await log.aclose()
    roomy = behind(redis_server.url)  # the default bound on waiting bytes
    await warmed(roomy, redis)
    big = '"' + "y" * 400_000 + '"'
    for n in range(6):  # 2.4 MB handed in at once: written in batches of at most 1 MiB, in order
        await roomy.append("b", f"b{n}", "s", big)
    with anyio.fail_after(DEADLINE_S):
        found = await roomy.after("b", "b0")
    assert found is not None and [i for i, _ in found[1]] == ["b1", "b2", "b3", "b4", "b5"]
    assert evalsha_calls(redis) == 3  # two events a round trip
    await roomy.aclose()
    redis.close()


async def test_a_session_s_end_waits_for_its_events_and_leaves_nothing_behind(redis_server: RedisServer) -> None:
    log = behind(redis_server.url)
    for n in range(10):
        await log.append("ending", f"e{n}", "s", '"x"')
    await log.forget("ending")  # handed in before the end: written, then dropped with the session
    redis = Redis.from_url(redis_server.url)
    assert not redis.exists(EVENTS_PREFIX + "session:ending")
    assert redis.zscore(EVENTS_PREFIX + "bytes", "ending") is None
    assert await log.after("ending", "e9") is None
    await log.aclose()
    redis.close()


async def test_a_shutdown_writes_what_was_handed_in(redis_server: RedisServer) -> None:
    log = behind(redis_server.url)
    for n in range(10):
        await log.append("a", f"e{n}", "s", None)
    await log.aclose()
    again = RedisEventLog(redis_server.url, ttl_s=TTL_S)
    assert await again.after("a", "e0") == ("s", [(f"e{n}", None) for n in range(1, 10)])
    await again.aclose()


async def test_a_redis_that_is_gone_costs_a_warning_not_the_stream(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    log = behind(redis_server.url, settle_s=2)
    redis_server.stop()
    with caplog.at_level(logging.WARNING), anyio.fail_after(DEADLINE_S):
        assert await log.append("a", "e0", "s", '"secret-looking payload"')
        await log._settled(1)  # the writer tried, and said so
        with pytest.raises(RedisConnectionError):
            await log.after("a", "e0")  # the stream's own code logs this and resumes nothing
    [warning] = [r for r in caplog.records if r.name == "vps_snapshots_mcp.state.behind"]
    assert "could not keep 1 SSE event(s)" in warning.getMessage()
    assert "secret-looking" not in caplog.text
    await log.aclose()


async def test_an_event_no_session_may_hold_is_refused_at_once(redis_server: RedisServer) -> None:
    log = behind(redis_server.url, max_session_bytes=1000)
    assert not await log.append("a", "big", "s", "x" * 1000)
    assert log.pending == 0
    await log.aclose()


async def test_a_store_closing_writes_its_events_before_the_shared_connection_goes(redis_server: RedisServer) -> None:
    state = open_state(redis_server.url, wall=lambda: 0.0, event_ttl_s=TTL_S)
    for n in range(5):
        await state.events.append("a", f"e{n}", "s", None)
    await state.aclose()  # the ledger and the event log share one client
    again = RedisEventLog(redis_server.url, ttl_s=TTL_S)
    assert await again.after("a", "e0") == ("s", [(f"e{n}", None) for n in range(1, 5)])
    await again.aclose()
