"""The test world: the simulator's token, URL and instant, time that advances it, and clients and servers on it.

Everything runs in process: the simulator is an ASGI app reached through an in-process transport, and a
server's sleeps advance the simulator's clock, so a wait for a snapshot costs no real time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

import anyio.lowlevel
from pydantic import SecretStr

from vps_snapshots_mcp.compose import build_server
from vps_snapshots_mcp.protocol.server import SnapshotsServer
from vps_snapshots_mcp.provider.client import RetryPolicy, SnapshotsClient, asgi_transport
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import ManualClock, ProviderState, create_app
from vps_snapshots_mcp.state import ConsentLedger
from vps_snapshots_mcp.timing import Timing

TOKEN = "test-token-Zq8rV2pLx7"
BASE_URL = "https://provider.test/api/v1"
NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


class SleepRecorder:
    """Stands in for anyio.sleep: records each requested delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


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


def server_factory(provider: ProviderState, sim_time: SimTime) -> ServerFactory:
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
