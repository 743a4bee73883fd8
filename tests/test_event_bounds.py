"""The event log is bounded in bytes, per session and in total, in every store, and leaves Redis to the ledger.

Floods of large answers (the size a red team used: 231 KB) go into each real store; what is kept is measured
where it lives: the memory store's own count and the process's allocations, the SQLite table's payload
lengths, the Redis keys' lengths and memory. In Redis, events never make a consent write fail or evict one.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tracemalloc
from pathlib import Path

import httpx2
import pytest
import yaml
from mcp.server.streamable_http import EventMessage
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import JSONRPCNotification
from redis import Redis
from redis.exceptions import ResponseError

from vps_snapshots_mcp.protocol import sdk as sdk_seam
from vps_snapshots_mcp.protocol.principal import current_principal
from vps_snapshots_mcp.protocol.streams import EVENT_TTL_S, SessionStreams
from vps_snapshots_mcp.state import MAX_BYTES, MAX_SESSION_BYTES, REDIS_MAX_BYTES
from vps_snapshots_mcp.state.memory import MemoryEventLog
from vps_snapshots_mcp.state.redis_events import EVENTS_PREFIX, RedisEventLog
from vps_snapshots_mcp.state.sqlite import SqliteEventLog

from .support.processes import http_server
from .support.raw_http import open_session
from .support.redis_server import RedisServer

pytestmark = pytest.mark.anyio

ANSWER_BYTES = 231_000
SMALL_TOTAL = 2 * 1024 * 1024
SMALL_SESSION = 512 * 1024


def answer(n: int, size: int = ANSWER_BYTES) -> str:
    """A distinct JSON-RPC answer of about `size` bytes."""
    return '{"jsonrpc":"2.0","id":%d,"result":"%s"}' % (n, "x" * size)  # noqa: UP031 - a fixed shape


async def test_memory_keeps_at_most_its_bytes_whatever_the_flood() -> None:
    log = MemoryEventLog(ttl_s=EVENT_TTL_S)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(600):  # 139 MB offered: one greedy session, then many
            await log.append("greedy" if n < 100 else f"s{n % 50}", f"e{n}", "2", answer(n))
            assert log.accounted_bytes <= MAX_BYTES
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown <= MAX_BYTES * 1.1  # what the process really holds, not only what the store counts
    assert await log.after("s49", "e599") == ("2", [])  # the latest answer is still there to resume
    assert await log.after("greedy", "e0") is None  # the oldest went first


async def test_memory_keeps_at_most_a_session_s_bytes_and_forgets_an_ended_session() -> None:
    log = MemoryEventLog(ttl_s=EVENT_TTL_S)
    for n in range(100):
        await log.append("greedy", f"e{n}", "2", answer(n))
    kept = await log.after("greedy", "e90")
    assert kept is not None and len(kept[1]) == 9
    assert log.accounted_bytes <= MAX_SESSION_BYTES  # one session alone: its own bound
    assert not await log.append("greedy", "huge", "2", "x" * (MAX_SESSION_BYTES + 1))  # never kept
    await log.forget("greedy")
    assert log.accounted_bytes == 0


async def test_sqlite_keeps_at_most_its_bytes_in_total_and_per_session(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    log = SqliteEventLog(str(path), ttl_s=EVENT_TTL_S, max_bytes=SMALL_TOTAL, max_session_bytes=SMALL_SESSION)
    for n in range(80):  # 18 MB offered
        await log.append("greedy" if n < 30 else f"s{n % 7}", f"e{n}", "2", answer(n, 100_000))
    with sqlite3.connect(path) as db:
        (total,) = db.execute("SELECT SUM(LENGTH(CAST(payload AS BLOB))) FROM session_events").fetchone()
        per_session = db.execute(
            "SELECT session, SUM(LENGTH(CAST(payload AS BLOB))) FROM session_events GROUP BY session"
        ).fetchall()
        (counted,) = db.execute("SELECT total FROM session_events_bytes").fetchone()
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
    assert total <= SMALL_TOTAL and all(size <= SMALL_SESSION for _, size in per_session)
    assert total <= counted <= SMALL_TOTAL  # the running count covers what is there
    assert pages * page_size <= 3 * SMALL_TOTAL  # the file reuses its pages: it does not grow with the flood
    assert await log.after("s2", "e79") == ("2", [])  # the latest is still there
    await log.forget("s2")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM session_events WHERE session = 's2'").fetchone() == (0,)
    await log.aclose()


def event_keys(redis: Redis) -> list[bytes]:
    return list(redis.scan_iter(match=EVENTS_PREFIX + "*"))


async def test_redis_keeps_at_most_its_bytes_in_total_and_per_session(redis_server: RedisServer) -> None:
    log = RedisEventLog(redis_server.url, ttl_s=EVENT_TTL_S, max_bytes=SMALL_TOTAL, max_session_bytes=SMALL_SESSION)
    for n in range(80):
        assert await log.append("greedy" if n < 30 else f"s{n % 7}", f"e{n}", "2", answer(n, 100_000))
    redis = Redis.from_url(redis_server.url)
    lists = [k for k in event_keys(redis) if k.startswith((EVENTS_PREFIX + "session:").encode())]
    per_session = [sum(len(entry) for entry in redis.lrange(k, 0, -1)) for k in lists]
    assert sum(per_session) <= SMALL_TOTAL and all(size <= SMALL_SESSION for size in per_session)
    memory = sum(int(redis.memory_usage(k) or 0) for k in event_keys(redis))
    assert memory <= SMALL_TOTAL * 1.2
    assert all(int(redis.pttl(k)) <= EVENT_TTL_S * 1000 for k in event_keys(redis))
    assert await log.after("s2", "e79") == ("2", [])
    await log.forget("s2")
    assert await log.after("s2", "e79") is None
    await log.aclose()
    redis.close()


@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru"])
async def test_redis_events_never_crowd_out_consents(redis_server: RedisServer, policy: str) -> None:
    """Redis with less memory than the events' own cap: events stop at half of it; every consent stays."""
    redis = Redis.from_url(redis_server.url)
    redis.config_set("maxmemory", 8 * 1024 * 1024)
    redis.config_set("maxmemory-policy", policy)
    spent = [f"vps-snapshots-mcp:consent:{hashlib.sha256(str(n).encode()).hexdigest()}" for n in range(200)]
    for key in spent[:100]:
        assert redis.set(key, b"1", nx=True, px=3_600_000)
    log = RedisEventLog(redis_server.url, ttl_s=EVENT_TTL_S)  # its total cap (16 MiB) is above this maxmemory
    kept = [await log.append(f"s{n % 10}", f"e{n}", "2", answer(n)) for n in range(200)]  # 46 MB offered
    assert any(kept) and not all(kept)
    used = int(redis.info("memory")["used_memory"])
    assert used <= 8 * 1024 * 1024 * 0.6
    try:
        for key in spent[100:]:  # later consents are still written
            assert redis.set(key, b"1", nx=True, px=3_600_000)
    except ResponseError as exc:  # an OOM refusal would be a consent the server could not spend
        pytest.fail(f"a consent write failed: {exc}")
    assert all(redis.exists(key) for key in spent)  # and none was evicted
    await log.aclose()
    redis.close()


def test_the_redis_cap_is_a_small_share_of_the_shipped_redis() -> None:
    shipped = Path(__file__).parents[1] / "manifests" / "kubernetes" / "redis.yaml"
    deployment = next(d for d in yaml.safe_load_all(shipped.read_text()) if d["kind"] == "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--maxmemory") + 1] == "64mb" and REDIS_MAX_BYTES <= 64 * 1024 * 1024 // 4


async def test_a_session_s_events_replay_only_to_the_principal_who_opened_it() -> None:
    log = MemoryEventLog(ttl_s=EVENT_TTL_S)
    someone_else = SessionStreams(log, session_id="one", principal="token:static-someone-else")
    mine = SessionStreams(log, session_id="one", principal=current_principal().key)
    message = JSONRPCNotification(jsonrpc="2.0", method="notifications/progress", params={"progress": 1})
    replayed: list[EventMessage] = []

    async def collect(event: EventMessage) -> None:
        replayed.append(event)

    for store in (someone_else, mine):
        first = await store.store_event("2", None)
        await store.store_event("2", message)
        replayed.clear()
        found = await store.replay_events_after(first, collect)
        if store is someone_else:  # this request's principal (this process) is not the session's
            assert found is None and replayed == []
        else:
            assert found == "2" and [e.message for e in replayed] == [message]
    assert log.accounted_bytes > 0 and await mine.replay_events_after("x" * 65, collect) is None


def test_the_sdk_hooks_exist_on_the_installed_sdk() -> None:
    sdk_seam.self_check()


def test_a_missing_sdk_hook_stops_the_server_with_the_sdk_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(StreamableHTTPSessionManager, "_admit_session")
    with pytest.raises(RuntimeError, match=r"mcp \d.*_admit_session"):
        sdk_seam.self_check()


@pytest.mark.slow
def test_a_session_s_events_go_when_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with http_server(["--sandbox"], {"VPS_MCP_STATE_URL": f"sqlite:///{path}"}) as url, httpx2.Client() as http:
        headers = open_session(http, url)
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_snapshots"}}
        assert http.post(f"{url}/mcp", json=body, headers=headers).status_code == 200
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT COUNT(*) FROM session_events").fetchone()[0] >= 2
        assert http.delete(f"{url}/mcp", headers=headers).status_code == 200
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT COUNT(*) FROM session_events").fetchone() == (0,)
