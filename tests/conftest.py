"""Shared fixtures, and only fixtures: a seeded simulator on a manual clock, and clients and servers wired to it.

The helpers they are built from live in `tests/support/` (test files import them from there): `world` (the
token, URL, instant, simulated time, client and server factories), `mcp_client` (`connected`, `text_of`, ...),
`http_serving`, `raw_http`, `processes`, `redis_server`, `faultproxy`, `polling`, `tool_definitions`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from vps_snapshots_mcp.provider.client import RetryPolicy, SnapshotsClient
from vps_snapshots_mcp.simulator import ManualClock, ProviderState, create_app, seeded_state
from vps_snapshots_mcp.simulator.serve import serving_in_thread

from .support.approvals import Serve, in_url_mode
from .support.http_serving import ServeFn, jwks_issuer, serving_composed, serving_over_http
from .support.redis_server import RedisServer, running_redis
from .support.world import NOW, TOKEN, ServerFactory, SimTime, SleepRecorder, make_client, server_factory


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def provider(clock: ManualClock) -> ProviderState:
    return seeded_state(clock=clock, snapshot_seconds=240, restore_seconds=600)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def sim_time(clock: ManualClock) -> SimTime:
    return SimTime(clock)


@pytest.fixture
async def client(provider: ProviderState, sleeps: SleepRecorder) -> AsyncIterator[SnapshotsClient]:
    async with make_client(provider, sleeps, retry=RetryPolicy()) as c:
        yield c


@pytest.fixture
def served_provider(provider: ProviderState) -> Iterator[str]:
    """The simulator on a real loopback socket; yields its API base URL."""
    with serving_in_thread(create_app(provider, token=TOKEN)) as url:
        yield f"{url}/api/v1"


@pytest.fixture
def make_server(provider: ProviderState, sim_time: SimTime) -> ServerFactory:
    """Servers on the in-process simulator, whose sleeps advance the simulator's clock."""
    return server_factory(provider, sim_time)


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, for this test alone."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


# --- the server over HTTP in a thread, and OAuth ---------------------------------------------------------


@pytest.fixture
def serve(provider: ProviderState) -> ServeFn:
    """Start the MCP server over HTTP with these settings; yields its base URL (no /mcp)."""
    return serving_over_http(provider)


@pytest.fixture
def serve_composed(provider: ProviderState) -> Serve:
    """As `serve`, yielding the composition too (its approval service, as the approval page uses it)."""
    return serving_composed(provider)


@pytest.fixture
def url_mode(serve_composed: Serve, issuer: str) -> Serve:
    """`serve_composed` with `--consent url`, OAuth trusting `issuer` and the approval page's sign-in."""
    return in_url_mode(serve_composed, issuer)


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def issuer(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    """A local authorization server that publishes only its JWKS."""
    with jwks_issuer(signing_key) as url:
        yield url


@pytest.fixture
def oauth_server(serve: ServeFn, issuer: str) -> Iterator[str]:
    """The server over HTTP as an OAuth resource server trusting `issuer`."""
    with serve(oauth_jwks_url=f"{issuer}/jwks.json", oauth_issuer=issuer, public_url=lambda base: f"{base}/mcp") as url:
        yield url
