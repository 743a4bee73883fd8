"""Provider economy: requests sent, counted from the simulator's own request log (in process, exact).

- 100 concurrent identical list_snapshots;
- 300 concurrent create_snapshot wait:true on one running snapshot, against the poll intervals it lasted;
- the demo runbook, step by step, against the fewest requests the API allows.
"""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
from mcp import Client
from pydantic import SecretStr

from vps_snapshots_mcp.compose import build_server
from vps_snapshots_mcp.demo import play_runbook
from vps_snapshots_mcp.provider.client import asgi_transport
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import ManualClock, ProviderState, create_app, seeded_state
from vps_snapshots_mcp.timing import Timing

from ..support.polling import polls_within

TOKEN = "bench-token-0123456789"
URL = "https://provider.bench/api/v1"


class _SimulatedTime:
    """Sleeps advance the simulator's clock at once: a 4-minute snapshot completes without waiting 4 minutes."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock, self.elapsed = clock, 0.0

    async def sleep(self, seconds: float) -> None:
        self.elapsed += seconds
        self.clock.advance(seconds)
        await anyio.lowlevel.checkpoint()

    def timing(self) -> Timing:
        return Timing(sleep=self.sleep, monotonic=lambda: self.elapsed, now=self.clock)


def _world(latency_s: float = 0.0) -> tuple[ProviderState, _SimulatedTime, Any]:
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    provider = seeded_state(clock=clock)
    app = create_app(provider, token=TOKEN)

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await anyio.sleep(latency_s)  # real time, so concurrent calls are in flight together
        await app(scope, receive, send)

    time = _SimulatedTime(clock)
    server = build_server(
        Settings(api_token=SecretStr(TOKEN), api_url=URL, log_level="WARNING"),
        transport=asgi_transport(slow),
        timing=time.timing(),
    )
    return provider, time, server


async def _at_once(client: Client, count: int, tool: str, arguments: dict[str, Any]) -> None:
    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(client.call_tool, tool, arguments)


async def identical_lists() -> dict[str, int]:
    provider, _, server = _world(latency_s=0.05)
    async with Client(server) as client:
        await _at_once(client, 100, "list_snapshots", {"server_id": 12345})
    return {"calls": 100, "provider_gets": len(provider.requests_to("GET"))}


async def many_waiters() -> dict[str, float]:
    provider, time, server = _world()
    async with Client(server) as client:
        await client.call_tool("create_snapshot", {"server_id": 12345, "name": "shared"})
        before = len(provider.requests_to("GET"))
        await _at_once(client, 300, "create_snapshot", {"server_id": 12345, "name": "shared", "wait": True})
    gets = len(provider.requests_to("GET")) - before
    return {
        "waiters": 300,
        "provider_gets": gets,
        "poll_intervals": polls_within(time.elapsed),
        "waited_s": time.elapsed,
    }


# What each demo step needs at the least, and why we may send more.
RUNBOOK_FEWEST = [
    ("list server 12345", 1, ""),
    ("create 'before-update', wait", 2, "1 GET to check the name (no duplicate) + polls until completed; the fewest "
     "is the POST and one poll that finds it completed"),
    ("create it again", 1, ""),
    ("restore preview", 1, ""),
    ("restore, confirmed", 1, "1 fresh GET: the snapshot is checked again, so a token for a changed or gone "
     "snapshot executes nothing"),
    ("delete preview", 1, ""),
    ("delete, confirmed", 1, "1 fresh GET, as for the restore"),
    ("final list", 1, ""),
]  # fmt: skip


async def demo_runbook() -> list[dict[str, Any]]:
    provider, _, server = _world()
    marks: list[int] = []

    def step_done() -> None:
        marks.append(len(provider.requests))

    async with Client(server) as client:
        with contextlib.redirect_stdout(io.StringIO()):  # the demo narrates; the benchmark only counts
            await play_runbook(client, after_call=step_done)
    counts = [b - a for a, b in zip([0, *marks], marks, strict=False)]
    return [
        {"step": step, "sent": sent, "fewest": fewest, "why": why}
        for (step, fewest, why), sent in zip(RUNBOOK_FEWEST, counts, strict=True)
    ]


async def economy() -> dict[str, Any]:
    return {
        "identical_lists": await identical_lists(),
        "many_waiters": await many_waiters(),
        "demo_runbook": await demo_runbook(),
    }
