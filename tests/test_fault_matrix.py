"""The fault matrix, end to end: the server over stdio, the simulator on a loopback socket behind a proxy.

For each way the provider can fail, a call gets a tool error with the right
stable code within the configured bound (retries included), the next call
succeeds, and no create, restore or delete is ever sent twice.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import CallToolResult

from vps_snapshots_mcp.simulator import Fault, ProviderState

from .support.faultproxy import FaultProxy
from .support.mcp_client import text_of
from .support.world import TOKEN

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REQUEST_TIMEOUT_S = 1.0
# One timeout, plus the retries' waits (at most 2 x 1 s here), plus process and scheduling slack.
BOUND_S = REQUEST_TIMEOUT_S + 2 * 1.0 + 4.0


class Harness:
    def __init__(self, client: Client, proxy: FaultProxy, provider: ProviderState, workdir: Path) -> None:
        self.client, self.proxy, self.provider, self.workdir = client, proxy, provider, workdir

    async def call(self, tool: str, **arguments: Any) -> tuple[CallToolResult, float]:
        started = time.monotonic()
        result = await self.client.call_tool(tool, arguments)
        return result, time.monotonic() - started


@pytest.fixture
def proxy(served_provider: str) -> Iterator[FaultProxy]:
    upstream = urlsplit(served_provider)
    assert upstream.hostname and upstream.port
    fault_proxy = FaultProxy((upstream.hostname, upstream.port))
    yield fault_proxy
    fault_proxy.close()


@asynccontextmanager
async def stdio_server(proxy: FaultProxy, provider: ProviderState, workdir: Path) -> AsyncIterator[Harness]:
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m", "vps_snapshots_mcp",
            "--timeout", str(REQUEST_TIMEOUT_S), "--connect-timeout", str(REQUEST_TIMEOUT_S),
            "--log-level", "DEBUG", "--audit-log", str(workdir / "audit.jsonl"),
        ],
        env={"VPS_API_URL": f"{proxy.url}/api/v1", "VPS_API_TOKEN": TOKEN},
    )  # fmt: skip
    with (workdir / "stderr.log").open("w") as stderr:
        async with Client(stdio_client(params, errlog=stderr)) as client:
            yield Harness(client, proxy, provider, workdir)


@pytest.fixture
async def harness(proxy: FaultProxy, provider: ProviderState, tmp_path: Path) -> AsyncIterator[Harness]:
    async with stdio_server(proxy, provider, tmp_path) as h:
        yield h
    logged = (tmp_path / "stderr.log").read_text() + (tmp_path / "audit.jsonl").read_text()
    assert TOKEN not in logged and "authorization" not in logged.lower()


def http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


Setup = Callable[[Harness], object]

FAULTS: dict[str, tuple[Setup, str]] = {
    "500": (lambda h: h.provider.inject(Fault.error(500, times=3)), "upstream_error"),
    "502 with an HTML page": (lambda h: h.provider.inject(Fault.html_page(502, times=3)), "upstream_error"),
    "503": (lambda h: h.provider.inject(Fault.error(503, times=3)), "upstream_error"),
    "429, Retry-After in seconds": (lambda h: h.provider.inject(Fault.rate_limit("1", times=3)), "rate_limited"),
    "429, Retry-After as an HTTP date": (
        lambda h: h.provider.inject(Fault.rate_limit(http_date(1), times=3)),
        "rate_limited",
    ),
    "malformed JSON": (lambda h: h.provider.inject(Fault.malformed_json(times=3)), "upstream_error"),
    "JSON of the wrong shape": (lambda h: h.provider.inject(Fault.wrong_shape(times=3)), "upstream_error"),
    "connection reset": (lambda h: h.proxy.set_mode("reset"), "connection_error"),
    "connection refused": (lambda h: h.proxy.set_mode("refuse"), "connection_error"),
    "slower than the timeout": (lambda h: h.provider.inject(Fault.latency(3 * REQUEST_TIMEOUT_S, times=3)), "timeout"),
}


def heal(h: Harness) -> None:
    h.provider.faults.clear()
    h.proxy.set_mode("pass")


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_each_fault_is_a_clean_tool_error_and_the_next_call_works(harness: Harness, fault: str) -> None:
    setup, code = FAULTS[fault]
    setup(harness)
    result, took = await harness.call("list_snapshots", server_id=12345)
    assert result.is_error, result.structured_content
    text = text_of(result)
    assert text.startswith(f"{code}: "), text
    assert "<" not in text and "Traceback" not in text and len(text) < 500
    assert took < BOUND_S, f"{fault}: {took:.1f} s"

    heal(harness)
    again, _ = await harness.call("list_snapshots", server_id=12345)
    assert not again.is_error, text_of(again)
    assert again.structured_content is not None and again.structured_content["count"] == 2


MUTATION_FAULTS: dict[str, Callable[[str], Fault]] = {
    "500": lambda method: Fault.error(500, method=method, times=3),
    "502 with an HTML page": lambda method: Fault.html_page(502, method=method, times=3),
    "503": lambda method: Fault.error(503, method=method, times=3),
    "429": lambda method: Fault.rate_limit("1", method=method, times=3),
    "malformed JSON": lambda method: Fault.malformed_json(method=method, times=3),
    "answer lost after the work was done": lambda method: Fault.lost_answer(502, method=method, times=3),
    "slower than the timeout": lambda method: Fault.latency(3 * REQUEST_TIMEOUT_S, method=method, times=3),
}


@pytest.mark.parametrize("fault", list(MUTATION_FAULTS))
@pytest.mark.parametrize("tool", ["create_snapshot", "restore_snapshot", "delete_snapshot"])
async def test_no_change_is_ever_sent_twice(harness: Harness, tool: str, fault: str) -> None:
    method = "DELETE" if tool == "delete_snapshot" else "POST"
    if tool == "create_snapshot":
        arguments: dict[str, Any] = {"server_id": 12345, "name": "under-fault"}
    else:
        preview, _ = await harness.call(tool, snapshot_id=798)
        assert preview.structured_content is not None, text_of(preview)
        token = preview.structured_content["confirmation_token"]
        arguments = {"snapshot_id": 798, "confirm": True, "confirmation_token": token}
    harness.provider.inject(MUTATION_FAULTS[fault](method))

    result, took = await harness.call(tool, **arguments)
    if tool != "create_snapshot" and fault == "malformed JSON":
        # The provider said 200: the restore started / the snapshot is gone, whatever the body says.
        assert result.structured_content is not None, text_of(result)
        assert result.structured_content["status"] in ("restore_started", "deleted")
        assert len(harness.provider.requests_to(method)) == 1
        return
    assert result.is_error, result.structured_content
    assert took < BOUND_S
    assert len(harness.provider.requests_to(method)) == 1, "sent more than once"
    text = text_of(result)
    if fault == "429":
        assert text.startswith("rate_limited: ") and "Nothing was changed" in text
    elif fault == "malformed JSON":
        assert "could not be read" in text or "may or may not" in text, text
    else:
        assert "may or may not" in text, text


async def test_connection_faults_during_a_change_send_nothing_twice(harness: Harness) -> None:
    preview, _ = await harness.call("delete_snapshot", snapshot_id=798)
    assert preview.structured_content is not None
    token = preview.structured_content["confirmation_token"]
    harness.proxy.set_mode("reset")
    result, _ = await harness.call("delete_snapshot", snapshot_id=798, confirm=True, confirmation_token=token)
    assert result.is_error and text_of(result).startswith("connection_error: ")
    assert harness.provider.requests_to("DELETE") == []  # the look-up failed first; nothing was sent
    heal(harness)
    assert 798 in harness.provider.snapshots


async def test_the_audit_log_records_each_attempt_as_json_lines(harness: Harness) -> None:
    harness.provider.inject(Fault.error(503, method="POST"))
    await harness.call("create_snapshot", server_id=12345, name="audited")
    preview, _ = await harness.call("delete_snapshot", snapshot_id=798)
    assert preview.structured_content is not None
    token = preview.structured_content["confirmation_token"]
    await harness.call("delete_snapshot", snapshot_id=798, confirm=True, confirmation_token=token)
    await harness.client.__aexit__(None, None, None)  # let the server exit and flush
    lines = [json.loads(line) for line in (harness.workdir / "audit.jsonl").read_text().splitlines()]
    assert [(r["tool"], r["outcome"], r["error_code"]) for r in lines] == [
        ("create_snapshot", "failed", "upstream_error"),
        ("delete_snapshot", "previewed", None),
        ("delete_snapshot", "executed", None),
    ]
    assert lines[2]["consent"] == "token" and lines[2]["snapshot_name"] == "weekly-snapshot-2025-01-08"
