"""Consent that holds everywhere: each token and each accepted question authorises one change, on every backend.

Real components only: SQLite files, a redis-server each test starts, server
processes over stdio and HTTP. Every test asserts what reached the provider.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult
from pydantic import SecretStr

from vps_snapshots_mcp.errors import StateUnavailableError
from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.state import ConsentLedger, open_ledger
from vps_snapshots_mcp.state.sqlite import SqliteLedger
from vps_snapshots_mcp.timing import Timing

from .support.clocks import SteppableClock
from .support.mcp_client import accepted_round, connected, preview_token, says_yes, text_of
from .support.processes import http_server, replica
from .support.redis_server import RedisServer, next_whole_second
from .support.world import TOKEN, ServerFactory

pytestmark = pytest.mark.anyio

SECRET = "replicas-share-this-secret-0123"


@asynccontextmanager
async def ledger_for(kind: str, tmp_path: Path, redis_url: str | None, wall: Callable[[], float]) -> AsyncIterator[Any]:
    url = {"memory": None, "sqlite": f"sqlite:///{tmp_path}/consent.db", "redis": redis_url}[kind]
    ledger = open_ledger(url, wall=wall)
    try:
        yield ledger
    finally:
        await ledger.aclose()


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def any_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ConsentLedger]:
    redis_url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    async with ledger_for(request.param, tmp_path, redis_url, Timing().wall) as ledger:
        yield ledger


# --- the ledger itself -----------------------------------------------------------------------------


async def test_a_key_is_redeemed_once_and_only_once_under_concurrency(any_ledger: ConsentLedger) -> None:
    expires = time.time() + 600
    wins: list[bool] = []

    async def redeem() -> None:
        wins.append(await any_ledger.redeem("token:abc", expires_at=expires))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(redeem)
    assert wins.count(True) == 1 and len(wins) == 50
    assert await any_ledger.redeem("token:other", expires_at=expires) is True


async def test_two_sqlite_ledgers_on_one_file_share_what_was_spent(tmp_path: Path) -> None:
    wall = Timing().wall
    first, second = SqliteLedger(str(tmp_path / "c.db"), wall=wall), SqliteLedger(str(tmp_path / "c.db"), wall=wall)
    try:
        assert await first.redeem("round:x", expires_at=time.time() + 600) is True
        assert await second.redeem("round:x", expires_at=time.time() + 600) is False
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_clock_stepped_back_after_pruning_revives_nothing(kind: str, tmp_path: Path) -> None:
    clock = SteppableClock()
    timing = Timing(now=clock)
    async with ledger_for(kind, tmp_path, None, timing.wall) as ledger:
        expires = clock.now.timestamp() + 600
        assert await ledger.redeem("token:old", expires_at=expires)
        clock.now += timedelta(hours=2)  # long past expiry: the entry is pruned at the next redemption
        assert await ledger.redeem("token:unrelated", expires_at=clock.now.timestamp() + 600)
        clock.now -= timedelta(hours=2)  # the system clock is set back to before the old token expired
        # The ledger judges on the high-water mark, so it still treats the old token as long expired ...
        assert timing.wall() >= expires + 3600
        # ... and the token itself fails its expiry check on the same clock (tests/test_confirm.py), so
        # forgetting it revives nothing.


async def test_an_unreachable_redis_refuses_with_state_unavailable_and_recovers(redis_server: RedisServer) -> None:
    async with ledger_for("redis", Path(), redis_server.url, Timing().wall) as ledger:
        assert await ledger.redeem("token:a", expires_at=time.time() + 600)
        redis_server.stop()
        with pytest.raises(StateUnavailableError, match="cannot be reached") as caught:
            await ledger.redeem("token:b", expires_at=time.time() + 600)
        assert "Nothing was changed" in str(caught.value)
        redis_server.start()  # empty again: no persistence
        assert await ledger.redeem("token:b", expires_at=time.time() + 600)


# --- through the MCP server, in process ------------------------------------------------------------


async def test_a_replayed_accepted_round_executes_once(make_server: ServerFactory, provider: ProviderState) -> None:
    arguments = {"snapshot_id": 798, "confirm": True}
    original = replace(provider.snapshots[798])
    async with connected(make_server(), elicit=says_yes) as client:
        responses, state = await accepted_round(client, "delete_snapshot", arguments)
        done = await client.call_tool("delete_snapshot", arguments, input_responses=responses, request_state=state)
        assert done.structured_content is not None and done.structured_content["status"] == "deleted"
        provider.snapshots[798] = original  # the same snapshot back again: only the ledger can refuse now
        again = await client.call_tool("delete_snapshot", arguments, input_responses=responses, request_state=state)
    assert again.is_error and text_of(again).startswith("confirmation_invalid: this consent was already used")
    assert [(r.method, r.path) for r in provider.mutations] == [("DELETE", "/api/v1/snapshots/798/")]


async def test_a_reused_token_is_refused_by_a_second_server_sharing_the_ledger(
    make_server: ServerFactory, provider: ProviderState, tmp_path: Path
) -> None:
    state = f"sqlite:///{tmp_path}/consent.db"
    first, second = (
        make_server(confirm_secret=SecretStr(SECRET), state_url=state),
        make_server(confirm_secret=SecretStr(SECRET), state_url=state),
    )
    async with connected(first) as a, connected(second) as b:
        token = await preview_token(a, "restore_snapshot", 801)
        confirmed = {"snapshot_id": 801, "confirm": True, "confirmation_token": token}
        assert not (await b.call_tool("restore_snapshot", confirmed)).is_error
        provider.servers[12345].status = "running"  # the restore finished; only the ledger stands in the way
        again = await a.call_tool("restore_snapshot", confirmed)
    assert text_of(again).startswith("confirmation_invalid: this consent was already used")
    assert [r.path for r in provider.mutations] == ["/api/v1/snapshots/801/restore/"]


async def test_with_redis_down_restore_is_refused_and_reads_still_work(
    make_server: ServerFactory, provider: ProviderState, redis_server: RedisServer
) -> None:
    # Redis judges expiry on its own clock, the real one: so does this server.
    async with connected(make_server(state_url=redis_server.url, timing=Timing())) as client:
        token = await preview_token(client, "restore_snapshot", 801)
        confirmed = {"snapshot_id": 801, "confirm": True, "confirmation_token": token}
        redis_server.stop()
        refused = await client.call_tool("restore_snapshot", confirmed)
        assert refused.is_error and text_of(refused).startswith("state_unavailable: ")
        assert not (await client.call_tool("list_snapshots", {"server_id": 12345})).is_error
        assert provider.mutations == []
        redis_server.start()  # empty, with no persistence: it cannot tell whether the token was spent meanwhile
        lost = await client.call_tool("restore_snapshot", confirmed)
        assert text_of(lost).startswith("confirmation_invalid: ") and "lost its data" in text_of(lost)
        await next_whole_second()  # a token issued in the second the ledger was reborn is refused too
        fresh = {**confirmed, "confirmation_token": await preview_token(client, "restore_snapshot", 801)}
        done = await client.call_tool("restore_snapshot", fresh)
    assert done.structured_content is not None and done.structured_content["status"] == "restore_started"
    assert [r.path for r in provider.mutations] == ["/api/v1/snapshots/801/restore/"]


async def test_elicitation_mode_refuses_a_client_that_cannot_ask(
    make_server: ServerFactory, provider: ProviderState
) -> None:
    async with connected(make_server(consent="elicitation")) as client:
        token = await preview_token(client, "delete_snapshot", 798)
        refused = await client.call_tool(
            "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": token}
        )
    assert text_of(refused).startswith("confirmation_invalid: this server asks the user directly")
    assert provider.mutations == []


# --- real processes --------------------------------------------------------------------------------


def _env(api_url: str, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VPS_API_URL": api_url, "VPS_API_TOKEN": TOKEN, **extra}


AUTH_TOKEN = "client-auth-token-0123456789abcdef"


@asynccontextmanager
async def over_http(url: str, *, elicit: bool = True) -> AsyncIterator[Client]:
    """A client (that can ask its user, unless `elicit` is False) presenting the client token the servers share."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {AUTH_TOKEN}"}) as http,
        Client(
            streamable_http_client(url, http_client=http), elicitation_callback=says_yes if elicit else None
        ) as client,
    ):
        yield client


@pytest.mark.slow
async def test_two_replicas_sharing_redis_execute_each_consent_once(
    served_provider: str, provider: ProviderState, redis_server: RedisServer
) -> None:
    with (
        replica(served_provider, SECRET, redis_server.url, auth_token=AUTH_TOKEN) as a_url,
        replica(served_provider, SECRET, redis_server.url, auth_token=AUTH_TOKEN) as b_url,
    ):
        async with over_http(f"{a_url}/mcp") as a, over_http(f"{b_url}/mcp") as b:
            # A token minted on A executes on B once, and is refused on A after.
            token = await preview_token(a, "delete_snapshot", 798)
            confirmed = {"snapshot_id": 798, "confirm": True, "confirmation_token": token}
            done = await b.call_tool("delete_snapshot", confirmed)
            assert done.structured_content is not None and done.structured_content["status"] == "deleted"
            assert text_of(await a.call_tool("delete_snapshot", confirmed)).startswith(
                ("confirmation_invalid", "not_found")
            )
            # An elicitation round accepted on A, replayed on A and on B, restores once.
            arguments = {"snapshot_id": 801, "confirm": True}
            responses, state = await accepted_round(a, "restore_snapshot", arguments)
            results: list[CallToolResult] = []
            for client in (a, a, b):
                results.append(
                    await client.call_tool(
                        "restore_snapshot", arguments, input_responses=responses, request_state=state
                    )
                )
                provider.servers[12345].status = "running"  # as if each restore finished at once
    assert results[0].structured_content is not None and results[0].structured_content["status"] == "restore_started"
    assert all(text_of(r).startswith("confirmation_invalid: this consent was already used") for r in results[1:])
    assert [(r.method, r.path) for r in provider.mutations] == [
        ("DELETE", "/api/v1/snapshots/798/"),
        ("POST", "/api/v1/snapshots/801/restore/"),
    ]


@pytest.mark.slow
async def test_a_stdio_server_restarted_refuses_a_token_from_before_the_restart(
    served_provider: str, provider: ProviderState, tmp_path: Path
) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "vps_snapshots_mcp", "--log-level", "WARNING"],
        env=_env(served_provider, VPS_MCP_CONFIRM_SECRET=SECRET, VPS_MCP_STATE_URL=f"sqlite:///{tmp_path}/c.db"),
    )
    async with Client(params) as first:
        token = await preview_token(first, "restore_snapshot", 801)
        confirmed = {"snapshot_id": 801, "confirm": True, "confirmation_token": token}
        assert not (await first.call_tool("restore_snapshot", confirmed)).is_error
    provider.servers[12345].status = "running"
    async with Client(params) as restarted:  # the host restarted the server within the token's 10 minutes
        replayed = await restarted.call_tool("restore_snapshot", confirmed)
    # Over stdio the caller is the server process: a restarted server is another caller.
    assert text_of(replayed).startswith("confirmation_invalid: this confirmation token was previewed by another")
    assert [r.path for r in provider.mutations] == ["/api/v1/snapshots/801/restore/"]


@pytest.mark.slow
async def test_an_http_server_restarted_with_sqlite_refuses_a_replayed_token(
    served_provider: str, provider: ProviderState, tmp_path: Path
) -> None:
    environment = {
        "VPS_API_URL": served_provider,
        "VPS_API_TOKEN": TOKEN,
        "VPS_MCP_CONFIRM_SECRET": SECRET,
        "VPS_MCP_STATE_URL": f"sqlite:///{tmp_path}/c.db",
        "VPS_MCP_AUTH_TOKEN": AUTH_TOKEN,  # the same caller before and after the restart
    }
    with http_server([], environment) as url:
        async with over_http(f"{url}/mcp", elicit=False) as first:
            token = await preview_token(first, "restore_snapshot", 801)
            confirmed = {"snapshot_id": 801, "confirm": True, "confirmation_token": token}
            assert not (await first.call_tool("restore_snapshot", confirmed)).is_error
    provider.servers[12345].status = "running"
    with http_server([], environment) as url:  # restarted within the token's 10 minutes
        async with over_http(f"{url}/mcp", elicit=False) as restarted:
            replayed = await restarted.call_tool("restore_snapshot", confirmed)
    assert text_of(replayed).startswith("confirmation_invalid: this consent was already used")
    assert [r.path for r in provider.mutations] == ["/api/v1/snapshots/801/restore/"]


def test_http_with_a_shared_secret_and_no_shared_ledger_refuses_to_start() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vps_snapshots_mcp", "--transport", "http", "--stateless"],
        env=_env("https://admin.vps.org/api/v1", VPS_MCP_CONFIRM_SECRET=SECRET),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "--state-url" in lines[0]
