"""`/metrics`: guarded exactly as `/mcp` is, an optional listener of its own on loopback, bounded labels only.

Real parts: the server over HTTP on a loopback port (in a thread, or its own process for `--metrics-port`), a
real MCP client, the simulator, JWTs signed by a local JWKS issuer.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.client.context import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from vps_snapshots_mcp.compose import compose
from vps_snapshots_mcp.consent import TOKEN_TTL_S
from vps_snapshots_mcp.metrics import OTHER, Metrics, bounded
from vps_snapshots_mcp.provider.client import asgi_transport
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import ManualClock, ProviderState, create_app
from vps_snapshots_mcp.simulator.state import SimServer, SimSnapshot, seeded_state
from vps_snapshots_mcp.timing import Timing

from .support.http_serving import ServeFn, mint
from .support.mcp_client import connected, preview_token, says_yes, text_of
from .support.processes import http_server
from .support.redis_server import free_port, running_redis
from .support.world import BASE_URL, TOKEN, SimTime

pytestmark = [pytest.mark.anyio]

AUTH_TOKEN = "metrics-auth-token-0123456789abcdef"


def label_values(exposition: str) -> dict[str, set[str]]:
    """Every label of every sample in a Prometheus text exposition, with every value it takes."""
    seen: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            for label, value in sample.labels.items():
                seen.setdefault(label, set()).add(value)
    return seen


def test_a_label_value_outside_its_closed_set_is_counted_as_other() -> None:
    assert bounded("tools/call", {"tools/call"}) == "tools/call"
    assert bounded("snapshot 4711", {"tools/call"}) == OTHER
    metrics = Metrics(tools=["list_snapshots"], endpoints=["/snapshots/"])
    metrics.operation_done("tools/call", "no_such_tool_4711", "not_found", 0.01)
    metrics.provider_request("GET", "/snapshots/4711/", 200, 0.01, 10)
    metrics.consent("restore", "token", "whatever-4711")
    values = label_values(metrics.exposition()[0].decode())
    assert not any("4711" in value for found in values.values() for value in found), values
    assert OTHER in values["gen_ai_tool_name"] and OTHER in values["url_template"] and OTHER in values["stage"]


def test_each_server_counts_in_a_registry_of_its_own() -> None:
    first, second = Metrics(), Metrics()
    first.consent("delete", "token", "previewed")
    assert "vps_snapshots_consent_total" in first.exposition()[0].decode()
    assert 'stage="previewed"' not in second.exposition()[0].decode()


def test_metrics_are_served_only_on_the_http_transport() -> None:
    http = Settings(api_token=SecretStr(TOKEN), api_url=BASE_URL, transport="http")
    assert compose(http).metrics is not None
    assert compose(Settings(api_token=SecretStr(TOKEN), api_url=BASE_URL)).metrics is None
    assert http.metrics_host == "127.0.0.1" and http.metrics_port is None  # never open by accident


@pytest.mark.slow
async def test_metrics_need_the_bearer_token_as_mcp_does(serve: ServeFn) -> None:
    with serve(auth_token=SecretStr(AUTH_TOKEN)) as url:
        async with httpx2.AsyncClient(timeout=30) as http:
            assert (await http.get(f"{url}/metrics")).status_code == 401
            wrong = await http.get(f"{url}/metrics", headers={"Authorization": "Bearer not-the-token-0123456789"})
            assert wrong.status_code == 401
            answer = await http.get(f"{url}/metrics", headers={"Authorization": f"Bearer {AUTH_TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE mcp_server_operation_duration_seconds histogram" in answer.text
    assert AUTH_TOKEN not in answer.text


@pytest.mark.slow
async def test_metrics_need_an_oauth_access_token_as_mcp_does(
    oauth_server: str, issuer: str, signing_key: rsa.RSAPrivateKey
) -> None:
    token = mint(signing_key, iss=issuer, aud=f"{oauth_server}/mcp", scope="vps-snapshots snapshots:read")
    async with httpx2.AsyncClient(timeout=30) as http:
        refused = await http.get(f"{oauth_server}/metrics")
        answer = await http.get(f"{oauth_server}/metrics", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    assert "resource_metadata=" in refused.headers["www-authenticate"]  # the same challenge as /mcp
    assert answer.status_code == 200, answer.text
    assert "mcp_server_operation_duration_seconds" in answer.text


def listening_addresses(port: int) -> set[str]:
    """The local addresses a socket listens on at `port`, from the kernel's own table (IPv4)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":  # LISTEN
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


@pytest.mark.slow
def test_the_metrics_port_serves_only_metrics_on_loopback_without_a_token() -> None:
    port = free_port()
    environment = {"VPS_API_URL": BASE_URL, "VPS_API_TOKEN": TOKEN, "VPS_MCP_AUTH_TOKEN": AUTH_TOKEN}
    with http_server(["--metrics-port", str(port)], environment) as url:
        assert httpx2.get(f"{url}/metrics", timeout=5).status_code == 401  # the main port wants the token
        answer = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert answer.status_code == 200 and "mcp_server_sessions_open" in answer.text
        assert httpx2.post(f"http://127.0.0.1:{port}/mcp", json={}, timeout=5).status_code == 404
        assert listening_addresses(port) == {"127.0.0.1"}


def only_snapshot(state: ProviderState, n: int) -> tuple[int, int]:
    """The account holds snapshot 50,000 + n of server 700,000 + n, and nothing else: each call meets a snapshot and
    a server no call before it met (and a list of one record, so a thousand calls stay quick)."""
    snapshot_id, server_id = 50_000 + n, 700_000 + n
    state.servers.clear()
    state.snapshots.clear()
    state.servers[server_id] = SimServer(server_id, f"host-{server_id}", disk_mb=1024)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    state.snapshots[snapshot_id] = SimSnapshot(snapshot_id, server_id, f"snap-{n}", created, size_mb=10)
    return snapshot_id, server_id


@pytest.mark.slow
@pytest.mark.timeout(300)  # a thousand calls, on a machine the whole suite keeps busy
async def test_a_thousand_calls_on_a_thousand_snapshots_leave_no_id_in_any_label() -> None:
    provider = ProviderState(clock=ManualClock(datetime(2026, 11, 27, 12, tzinfo=UTC)))
    settings = Settings(api_token=SecretStr(TOKEN), api_url=BASE_URL, transport="http")
    composed = compose(settings, transport=asgi_transport(create_app(provider, token=TOKEN)))
    assert composed.metrics is not None
    async with connected(composed.server, mode="legacy") as client:
        for n in range(1000):
            snapshot_id, server_id = only_snapshot(provider, n)
            tool, arguments = [
                ("get_snapshot", {"snapshot_id": snapshot_id}),
                ("restore_snapshot", {"snapshot_id": snapshot_id}),
                ("delete_snapshot", {"snapshot_id": snapshot_id + 100_000}),  # not found: an error label
                ("list_snapshots", {"server_id": server_id}),
            ][n % 4]
            await client.call_tool(tool, arguments)
    exposition = composed.metrics.exposition()[0].decode()
    values = label_values(exposition)
    every_value = {value for found in values.values() for value in found}
    ids = {str(i) for i in range(50_000, 151_000)} | {str(700_000 + i) for i in range(1000)}
    assert not every_value & ids
    assert not [value for value in every_value if re.search(r"\d{5,}", value)], every_value  # no id at all
    assert TOKEN not in exposition and "process" not in every_value  # no token, no principal
    assert values["gen_ai_tool_name"] <= {"", "get_snapshot", "restore_snapshot", "delete_snapshot", "list_snapshots"}
    assert values["error_type"] <= {"", "not_found"}, values["error_type"]
    assert values["url_template"] == {"/snapshots/"}
    previews = 'vps_snapshots_consent_total{action="restore",channel="",stage="previewed"} 250.0'
    assert previews in exposition


@pytest.mark.slow
async def test_a_call_refused_for_its_scope_is_counted_as_forbidden(
    oauth_server: str, issuer: str, signing_key: rsa.RSAPrivateKey
) -> None:
    viewer = mint(signing_key, iss=issuer, aud=f"{oauth_server}/mcp", scope="vps-snapshots snapshots:read")
    bearer = {"Authorization": f"Bearer {viewer}"}
    headers = bearer | {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "restore_snapshot"}}
    async with httpx2.AsyncClient(timeout=30) as http:
        refused = await http.post(f"{oauth_server}/mcp", json=call, headers=headers)
        exposition = (await http.get(f"{oauth_server}/metrics", headers=bearer)).text
    assert refused.status_code == 403
    counted = [
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "mcp_server_operation_duration_seconds_count"
        and sample.labels
        == {"mcp_method_name": "tools/call", "gen_ai_tool_name": "restore_snapshot", "error_type": "forbidden"}
    ]
    assert counted == [1.0]


def test_every_label_of_every_metric_has_a_closed_set() -> None:
    metrics = Metrics(tools=["list_snapshots"], endpoints=["/snapshots/"])
    labels = {label for metric in metrics.described() for label in metric.labels}
    assert labels == set(metrics.label_sets())


def funnel_of(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    """The consent funnel's counts by (action, channel, stage)."""
    return {
        (s.labels["action"], s.labels["channel"], s.labels["stage"]): s.value
        for family in text_string_to_metric_families(metrics.exposition()[0].decode())
        for s in family.samples
        if s.name == "vps_snapshots_consent_total"
    }


async def says_no(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="decline")


@pytest.mark.slow
async def test_the_consent_funnel_counts_each_stage_once_on_both_revisions(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 11, 27, 12, tzinfo=UTC))
    provider = seeded_state(clock=clock)
    with running_redis(tmp_path) as redis_server:
        settings = Settings(api_token=SecretStr(TOKEN), api_url=BASE_URL, transport="http", state_url=redis_server.url)
        simulator = asgi_transport(create_app(provider, token=TOKEN))
        composed = compose(settings, transport=simulator, timing=Timing(now=clock))
        assert composed.metrics is not None
        async with connected(composed.server, mode="auto", elicit=says_yes) as client:  # rounds: asked once
            assert not (await client.call_tool("restore_snapshot", {"snapshot_id": 801, "confirm": True})).is_error
        async with connected(composed.server, mode="legacy", elicit=says_no) as client:  # a question mid-call
            assert not (await client.call_tool("delete_snapshot", {"snapshot_id": 798, "confirm": True})).is_error
        async with connected(composed.server, mode="legacy") as client:  # no elicitation: tokens
            stale = await preview_token(client, "delete_snapshot", 798)
            clock.advance(TOKEN_TTL_S + 1)
            late = await client.call_tool(
                "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": stale}
            )
            assert text_of(late).startswith("confirmation_invalid:")
            fresh = await preview_token(client, "delete_snapshot", 798)
            redis_server.stop()
            down = await client.call_tool(
                "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": fresh}
            )
            assert text_of(down).startswith("state_unavailable:"), text_of(down)
    assert funnel_of(composed.metrics) == {
        ("restore", "form", "asked"): 1.0,
        ("restore", "form", "approved"): 1.0,
        ("restore", "form", "redeemed"): 1.0,
        ("delete", "form", "asked"): 1.0,
        ("delete", "form", "declined"): 1.0,
        ("delete", "", "previewed"): 2.0,
        ("delete", "token", "expired"): 1.0,
        ("delete", "token", "approved"): 1.0,
        ("delete", "token", "state_unavailable"): 1.0,
    }


@pytest.mark.slow
async def test_reads_shared_in_flight_and_waits_with_their_pollers_are_counted() -> None:
    clock = ManualClock(datetime(2026, 11, 27, 12, tzinfo=UTC))
    provider = seeded_state(clock=clock)
    sim_time = SimTime(clock)
    settings = Settings(api_token=SecretStr(TOKEN), api_url=BASE_URL, transport="http")
    composed = compose(settings, transport=asgi_transport(create_app(provider, token=TOKEN)), timing=sim_time.timing())
    metrics = composed.metrics
    assert metrics is not None
    seen: list[tuple[float | None, float | None]] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(
            (
                metrics.registry.get_sample_value("vps_snapshots_waits"),
                metrics.registry.get_sample_value("vps_snapshots_wait_pollers"),
            )
        )

    async with connected(composed.server, mode="legacy") as client:
        provider.latency_s = 0.3  # real time: the three reads overlap, and two of them share the first one's
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(client.call_tool, "get_snapshot", {"snapshot_id": 801})
        provider.latency_s = 0.0
        arguments = {"server_id": 12345, "name": "waited-for", "wait": True}
        created = await client.call_tool("create_snapshot", arguments, progress_callback=progress)
        assert not created.is_error, text_of(created)
    assert metrics.registry.get_sample_value("vps_snapshots_provider_reads_shared_total") == 2.0
    assert seen[0] == (1.0, 1.0) and set(seen) <= {(1.0, 1.0), (0.0, 0.0)}  # while it waited: one call, one poller
    assert metrics.registry.get_sample_value("vps_snapshots_waits") == 0.0
    assert metrics.registry.get_sample_value("vps_snapshots_wait_pollers") == 0.0


@pytest.mark.slow
def test_stdio_never_loads_the_metrics_library_not_even_at_a_call() -> None:
    script = (
        "import sys, anyio\n"
        "from pydantic import SecretStr\n"
        "from vps_snapshots_mcp.compose import compose\n"
        "from vps_snapshots_mcp.provider.client import asgi_transport\n"
        "from vps_snapshots_mcp.settings import Settings\n"
        "from vps_snapshots_mcp.simulator import create_app, seeded_state\n"
        "from mcp import Client\n"
        f"settings = Settings(api_token=SecretStr({TOKEN!r}), api_url={BASE_URL!r})\n"
        f"server = compose(settings, transport=asgi_transport(create_app(seeded_state(), token={TOKEN!r}))).server\n"
        "async def call():\n"
        "    async with Client(server, mode='legacy') as client:\n"
        "        await client.call_tool('restore_snapshot', {'snapshot_id': 801})\n"
        "anyio.run(call)\n"
        "print('prometheus_client' in sys.modules, 'vps_snapshots_mcp.metrics' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
