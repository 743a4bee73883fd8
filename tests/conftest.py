"""Shared fixtures and helpers: a seeded simulator on a manual clock, clients and servers wired to it in process.

Every test file takes its servers (`make_server`), MCP clients (`connected`) and
result text (`text_of`) from here, so there is one way to build each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import pytest
from mcp import Client
from mcp.client.session import ElicitationFnT
from mcp_types import CallToolResult
from pydantic import SecretStr

from vps_snapshots_mcp.compose import build_server
from vps_snapshots_mcp.protocol.server import SnapshotsServer
from vps_snapshots_mcp.provider.client import RetryPolicy, SnapshotsClient, asgi_transport
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import ManualClock, ProviderState, create_app, seeded_state
from vps_snapshots_mcp.simulator.serve import serving_in_thread
from vps_snapshots_mcp.state import ConsentLedger
from vps_snapshots_mcp.timing import Timing

from .support.redis_server import RedisServer, running_redis

TOKEN = "test-token-Zq8rV2pLx7"
BASE_URL = "https://provider.test/api/v1"
NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def provider(clock: ManualClock) -> ProviderState:
    return seeded_state(clock=clock, snapshot_seconds=240, restore_seconds=600)


class SleepRecorder:
    """Stands in for anyio.sleep: records each requested delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


class SimTime:
    """Time for the server under test: each sleep advances the simulator's clock instead of waiting.

    So a wait for a snapshot sees it complete exactly when the simulator says, with no real time passing.
    """

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.elapsed = 0.0
        self.delays: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.elapsed += seconds
        self.clock.advance(seconds)
        await anyio.lowlevel.checkpoint()  # still a point where cancellation can land

    def monotonic(self) -> float:
        return self.elapsed

    def timing(self) -> Timing:
        return Timing(sleep=self.sleep, monotonic=self.monotonic, now=self.clock)


@pytest.fixture
def sim_time(clock: ManualClock) -> SimTime:
    return SimTime(clock)


async def cancel_once_started(client: Client, started: anyio.Event, tool: str, arguments: dict[str, Any]) -> None:
    """Call `tool`, and cancel the call from the client's side as soon as `started` is set."""
    scope = anyio.CancelScope()

    async def call() -> None:
        with scope:
            await client.call_tool(tool, arguments)

    async with anyio.create_task_group() as group:
        group.start_soon(call)
        await started.wait()
        scope.cancel()


def make_client(
    provider: ProviderState, sleeps: SleepRecorder, *, retry: RetryPolicy | None = None, token: str = TOKEN
) -> SnapshotsClient:
    """A client on an in-process transport to `provider`, with recorded sleeps and fixed jitter."""
    return SnapshotsClient(
        base_url=BASE_URL,
        token=SecretStr(token),
        transport=asgi_transport(create_app(provider, token=TOKEN)),
        retry=retry,
        timing=Timing(sleep=sleeps, now=lambda: NOW),
        rand=lambda: 0.5,
    )


@pytest.fixture
async def client(provider: ProviderState, sleeps: SleepRecorder) -> AsyncIterator[SnapshotsClient]:
    async with make_client(provider, sleeps, retry=RetryPolicy()) as c:
        yield c


@pytest.fixture
def served_provider(provider: ProviderState) -> Iterator[str]:
    """The simulator on a real loopback socket; yields its API base URL."""
    with serving_in_thread(create_app(provider, token=TOKEN)) as url:
        yield f"{url}/api/v1"


def text_of(result: CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def preview_token(client: Client, tool: str, snapshot_id: int) -> str:
    """The confirmation token of a restore or delete preview."""
    result = await client.call_tool(tool, {"snapshot_id": snapshot_id})
    assert result.structured_content is not None, text_of(result)
    return str(result.structured_content["confirmation_token"])


@asynccontextmanager
async def connected(
    server: SnapshotsServer, *, mode: str = "auto", elicit: ElicitationFnT | None = None
) -> AsyncIterator[Client]:
    """A real MCP client on `server`, in memory; `mode` picks the protocol revision ("legacy" = 2025-11-25)."""
    async with Client(server, mode=mode, elicitation_callback=elicit) as client:
        yield client


class ServerFactory(Protocol):
    def __call__(
        self,
        *,
        token: str = ...,
        api_url: str = ...,
        timing: Timing | None = ...,
        ledger: ConsentLedger | None = ...,
        **settings: Any,
    ) -> SnapshotsServer: ...


@pytest.fixture
def make_server(provider: ProviderState, sim_time: SimTime) -> ServerFactory:
    """Servers on the in-process simulator, whose sleeps advance the simulator's clock."""

    def make(
        *,
        token: str = TOKEN,
        api_url: str = BASE_URL,
        timing: Timing | None = None,
        ledger: ConsentLedger | None = None,
        **settings: Any,
    ) -> SnapshotsServer:
        transport = asgi_transport(create_app(provider, token=TOKEN)) if api_url == BASE_URL else None
        return build_server(
            Settings(api_token=SecretStr(token), api_url=api_url, **settings),
            transport=transport,
            timing=timing or sim_time.timing(),
            ledger=ledger,
        )

    return make


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, for this test alone."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server
