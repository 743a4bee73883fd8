"""A real Prometheus scrapes the server while a scripted session runs; its HTTP API shows each series counted right.

Real parts: Debian's `prometheus` on a free loopback port (scrape interval 1 s, the bearer token in its
generated scrape configuration), the server as its own process with a static token, the simulator on a
loopback socket with an injected 503, and the SDK's client over streamable HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.simulator.faults import Fault

from .support.mcp_client import text_of
from .support.processes import http_server
from .support.prometheus import Prometheus, running_prometheus
from .support.world import TOKEN

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(180)]

AUTH_TOKEN = "scrape-and-call-token-0123456789abcdef"


@asynccontextmanager
async def session(url: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {AUTH_TOKEN}"}, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode="legacy") as client,
    ):
        yield client


async def scripted_session(url: str, provider: ProviderState) -> None:
    """List, create, preview, restore, replay the restore (refused), and meet a provider 503 three times."""
    async with session(url) as client:
        assert not (await client.call_tool("list_snapshots", {})).is_error
        created = await client.call_tool("create_snapshot", {"server_id": 12345, "name": "scraped-1"})
        assert not created.is_error, text_of(created)
        preview = await client.call_tool("restore_snapshot", {"snapshot_id": 801})
        assert preview.structured_content is not None, text_of(preview)
        token = preview.structured_content["confirmation_token"]
        confirm = {"snapshot_id": 801, "confirm": True, "confirmation_token": token}
        restored = await client.call_tool("restore_snapshot", confirm)
        assert not restored.is_error, text_of(restored)
        replayed = await client.call_tool("restore_snapshot", confirm)
        assert text_of(replayed).startswith("confirmation_invalid:"), text_of(replayed)
        provider.inject(Fault.error(503, "Service unavailable.", times=3, method="GET"))
        failed = await client.call_tool("list_snapshots", {"server_id": 23456})
        assert text_of(failed).startswith("upstream_error:"), text_of(failed)


def calls(prometheus: Prometheus, tool: str, error_type: str = "") -> float | None:
    selector = f'mcp_method_name="tools/call",gen_ai_tool_name="{tool}",error_type="{error_type}"'
    return prometheus.value(f"sum(mcp_server_operation_duration_seconds_count{{{selector}}})")


async def test_prometheus_scrapes_each_expected_series_with_the_right_counts(
    served_provider: str, provider: ProviderState, tmp_path: Path
) -> None:
    environment = {"VPS_API_URL": served_provider, "VPS_API_TOKEN": TOKEN, "VPS_MCP_AUTH_TOKEN": AUTH_TOKEN}
    with (
        http_server([], environment) as url,
        running_prometheus(tmp_path, url.removeprefix("http://"), AUTH_TOKEN) as p,
    ):
        assert p.until('up{job="vps-snapshots-mcp"}', 1.0) == 1.0  # scraped with the token
        await scripted_session(url, provider)
        # The last thing the session did is the third 503: once it is scraped, everything before it is too.
        replays = 'vps_snapshots_consent_total{action="restore",channel="token",stage="refused_replayed"}'
        assert p.until(replays, 1.0) == 1.0
        assert p.until('sum(http_client_request_duration_seconds_count{status_class="5xx"})', 3.0) == 3.0

        assert calls(p, "list_snapshots") == 1.0
        assert calls(p, "list_snapshots", "upstream_error") == 1.0
        assert calls(p, "create_snapshot") == 1.0
        assert calls(p, "restore_snapshot") == 2.0  # the preview and the restore
        assert calls(p, "restore_snapshot", "confirmation_invalid") == 1.0
        assert p.value('sum(mcp_server_operation_duration_seconds_count{mcp_method_name="initialize"})') == 1.0

        funnel = {row["metric"]["stage"]: float(row["value"][1]) for row in p.query("vps_snapshots_consent_total")}
        assert funnel == {"previewed": 1.0, "approved": 2.0, "redeemed": 1.0, "refused_replayed": 1.0}, funnel

        def provider_requests(method: str, template: str, status_class: str) -> float | None:
            selector = f'http_request_method="{method}",url_template="{template}",status_class="{status_class}"'
            return p.value(f"sum(http_client_request_duration_seconds_count{{{selector}}})")

        assert provider_requests("POST", "/snapshots/", "2xx") == 1.0
        assert provider_requests("POST", "/snapshots/{id}/restore/", "2xx") == 1.0
        assert provider_requests("GET", "/snapshots/", "5xx") == 3.0
        retried = 'sum(vps_snapshots_provider_retries_total{url_template="/snapshots/",reason="503"})'
        assert p.value(retried) == 2.0  # three attempts: two retries, then the error
        assert (p.value("sum(vps_snapshots_provider_response_bytes_total)") or 0) > 0
        assert p.value("max_over_time(mcp_server_sessions_open[1m])") == 1.0
        assert p.value("vps_snapshots_ledger_up") == 1.0
        labels = {key for row in p.query('{job="vps-snapshots-mcp"}') for key in row["metric"]}
        assert not labels & {"snapshot_id", "server_id", "principal", "token"}, labels
