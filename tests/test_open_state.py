"""`open_state(url)`: the consent ledger and the stream event log of one store, over ONE connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import asyncio as aioredis

from vps_snapshots_mcp.state import State, open_state
from vps_snapshots_mcp.state.behind import WriteBehindEventLog
from vps_snapshots_mcp.state.memory import MemoryEventLog, MemoryLedger
from vps_snapshots_mcp.state.redis import RedisLedger
from vps_snapshots_mcp.state.redis_events import RedisEventLog
from vps_snapshots_mcp.state.sqlite import SqliteEventLog, SqliteLedger
from vps_snapshots_mcp.timing import Timing

from .support.redis_server import RedisServer

pytestmark = pytest.mark.anyio


def opened(url: str | None) -> State:
    return open_state(url, wall=Timing().wall, event_ttl_s=60.0)


async def use_both(state: State) -> None:
    now = Timing().wall()
    assert await state.ledger.redeem("consent-1", expires_at=now + 60) is True
    assert await state.ledger.redeem("consent-1", expires_at=now + 60) is False
    assert await state.events.append("session", "event-1", "stream", None) is True
    assert await state.events.append("session", "event-2", "stream", '{"n": 2}') is True
    assert await state.events.after("session", "event-1") == ("stream", [("event-2", '{"n": 2}')])


async def test_in_memory_the_ledger_and_the_event_log_are_this_process_s() -> None:
    state = opened(None)
    assert isinstance(state.ledger, MemoryLedger) and isinstance(state.events, MemoryEventLog)
    await use_both(state)
    await state.aclose()


async def test_a_state_file_is_one_connection_for_the_ledger_and_the_event_log(tmp_path: Path) -> None:
    state = opened(f"sqlite:///{tmp_path / 'state.db'}")
    assert isinstance(state.ledger, SqliteLedger) and isinstance(state.events, SqliteEventLog)
    assert state.ledger._file is state.events._file  # one connection, one lock
    await use_both(state)
    connection = state.ledger._file.connection()
    assert state.events._file.connection() is connection
    await state.aclose()
    # Closed for both; a later use opens it again, and what was recorded is still there.
    assert await state.ledger.redeem("consent-1", expires_at=Timing().wall() + 60) is False
    assert state.events._file.connection() is state.ledger._file.connection()
    await state.aclose()


async def test_a_redis_store_is_one_client_for_the_ledger_and_the_event_log(redis_server: RedisServer) -> None:
    state = opened(redis_server.url)
    assert isinstance(state.ledger, RedisLedger) and isinstance(state.events, WriteBehindEventLog)
    events = state.events._inner  # written behind the stream (test_event_behind.py), over the ledger's client
    assert isinstance(events, RedisEventLog) and isinstance(state.ledger._redis, aioredis.Redis)
    assert state.ledger._redis is events._redis
    await use_both(state)
    await state.aclose()
    # A server run again (a second lifespan) uses the same client: it connects again.
    assert await state.ledger.redeem("consent-1", expires_at=Timing().wall() + 60) is False
    await state.aclose()
