"""A paced load client keeps its rate whatever the answers take, and counts a late call from when it was due."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from ..support.socket_server import raw_server
from .light_load import run

pytestmark = pytest.mark.anyio


def answered(request: bytes) -> bytes:
    """A tools/call's result, as one SSE event."""
    result = {"content": [], "structuredContent": {"snapshots": []}}
    event = b"data: %b\n\n" % json.dumps({"jsonrpc": "2.0", "id": json.loads(request)["id"], "result": result}).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%b" % (len(event), event)


@asynccontextmanager
async def held_server(hold_s: float) -> AsyncIterator[str]:
    """A socket server answering each tools/call (one at a time per connection) after `hold_s`."""
    async with raw_server(answered, hold_s) as (url, _):
        yield url


def spec(url: str, clients: int, rate_each: float | None) -> dict[str, Any]:
    paced = {"rate_each": rate_each} if rate_each else {}
    return {"urls": [url], "clients": clients, "seconds": 2.0, "warmup_s": 0.0, "mix": "lists", "lean": True} | paced


async def test_paced_clients_send_at_their_rate_not_as_fast_as_they_are_answered() -> None:
    async with held_server(0.0) as url:
        paced = await run(spec(url, 2, 25.0))  # two clients at 25 a second each: about 100 calls in 2 s
        unpaced = await run(spec(url, 2, None))
    assert paced["errors"] == unpaced["errors"] == 0
    assert 60 <= paced["calls"] <= 140, paced["calls"]  # Poisson arrivals: 100, give or take 10
    assert unpaced["calls"] > 3 * paced["calls"], unpaced["calls"]


async def test_a_late_call_counts_from_when_it_was_due_and_every_call_due_in_the_window_counts() -> None:
    async with held_server(0.1) as url:  # answers 10 calls a second to a client that is due to send 20
        paced = await run(spec(url, 1, 20.0))
        unpaced = await run(spec(url, 1, None))
    assert paced["errors"] == unpaced["errors"] == 0
    # Every call due within the 2 s window counts (about 40), though the last of them ends seconds later; a closed
    # loop counts the calls that ended within it (at most 20), each taking what the server holds it.
    assert 25 <= paced["calls"] <= 60 and unpaced["calls"] <= 20, (paced["calls"], unpaced["calls"])
    assert paced["elapsed_s"] > 3.0 > unpaced["elapsed_s"]
    assert max(unpaced["latencies_s"]) < 0.5 and max(paced["latencies_s"]) > 1.0, (unpaced, paced)
    assert sorted(paced["latencies_s"])[len(paced["latencies_s"]) // 2] > 0.4
