"""`--log-format json`: one JSON object a line on stderr (the server's, the SDK's and uvicorn's records, and an
access line per HTTP request), never a secret in any encoding; on stdio, stdout stays pure JSON-RPC.

The real command line is spawned; what it writes is read whole after it stopped.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx2
import pytest

from vps_snapshots_mcp.state import open_ledger
from vps_snapshots_mcp.timing import Timing

from .support.mcp_client import connected, preview_token, text_of
from .support.redis_server import free_port
from .support.world import ServerFactory

pytestmark = pytest.mark.slow

AUTH_TOKEN = "client-bearer-Hq3vX9mW2kLp7rTz"
WRONG_TOKEN = "wrong-bearer-Mn4bV6cX8zLk2jHg"
COOKIE = "cookie-secret-Yt5rE3wQ1aZs9xDc"
IN_QUERY = "query-secret-Uj8iK7oL6pMn5bVc"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
SECRETS = (AUTH_TOKEN, WRONG_TOKEN, COOKIE, IN_QUERY)


def encodings(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        quote(secret, safe=""),
        quote(quote(secret, safe=""), safe=""),
        secret.encode().hex(),
    ]


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object with the fields every line has."""
    records = []
    for line in text.splitlines():
        record = json.loads(line)  # a line that is not JSON fails here
        assert isinstance(record, dict), line
        assert RFC3339_UTC.fullmatch(record["time"]), record
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), record
        assert isinstance(record["logger"], str) and isinstance(record["message"], str), record
        records.append(record)
    return records


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        for shown in encodings(secret):
            assert shown not in text, (secret, shown)
    assert "Bearer " not in text and "bearer " not in text.lower().replace("bearer token", "")
    assert "?" not in "".join(r.get("path", "") for r in json_lines(text))


def test_http_logs_are_json_with_an_access_line_per_request_and_no_secret(tmp_path: Path) -> None:
    port = free_port()
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "vps_snapshots_mcp", "--sandbox", "--transport", "http", "--port", str(port),
             "--stateless", "--log-format", "json"],
            env={"PATH": "/usr/bin:/bin", "VPS_MCP_AUTH_TOKEN": AUTH_TOKEN},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:  # a process start has no event to wait on; poll its health, with a deadline
                try:
                    if httpx2.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, stderr_path.read_text()
                time.sleep(0.05)
            headers = {
                "Authorization": f"Bearer {AUTH_TOKEN}",
                "Cookie": f"session={COOKIE}",
                "Accept": "application/json, text/event-stream",
                "Content-Type": "application/json",
                "traceparent": TRACEPARENT,
            }
            call = {
                "jsonrpc": "2.0",
                "id": 41,
                "method": "tools/call",
                "params": {
                    "name": "get_snapshot",
                    "arguments": {"snapshot_id": 999999},
                    "_meta": {"traceparent": TRACEPARENT},
                },
            }
            answered = httpx2.post(f"{base}/mcp?api_key={IN_QUERY}", json=call, headers=headers, timeout=10)
            assert answered.status_code == 200, answered.text
            request_id = answered.headers["x-request-id"]
            refused = httpx2.post(
                f"{base}/mcp?token={IN_QUERY}", json=call, headers=headers | {"Authorization": f"Bearer {WRONG_TOKEN}"}
            )
            assert refused.status_code == 401
            missing = httpx2.get(f"{base}/no/{IN_QUERY}/here?x={IN_QUERY}", headers=headers)
            assert missing.status_code in (401, 404)
            health = httpx2.get(f"{base}/healthz?probe={IN_QUERY}", headers={"Cookie": f"c={COOKIE}"})
            assert health.status_code == 200
        finally:
            process.terminate()
            process.wait(timeout=10)
    text = stderr_path.read_text()
    records = json_lines(text)
    assert_no_secret(text)
    loggers = {record["logger"] for record in records}
    assert "uvicorn.error" in loggers and "vps_snapshots_mcp" in loggers, loggers
    access = [r for r in records if r["logger"] == "vps_snapshots_mcp.access"]
    shown = [(r["method"], r["path"], r["status"]) for r in access if r["path"] != "/healthz" or "probe" in r]
    assert ("POST", "/mcp", 200) in shown and ("POST", "/mcp", 401) in shown, access
    assert ("GET", "*", missing.status_code) in shown, access
    for line in access:
        assert isinstance(line["duration_ms"], int | float) and re.fullmatch(r"[0-9a-f]{16}", line["http_request_id"])
    mine = next(r for r in access if r["http_request_id"] == request_id)
    assert (mine["method"], mine["path"], mine["status"], mine["trace_id"]) == ("POST", "/mcp", 200, TRACE_ID)
    failed = [r for r in records if "get_snapshot refused or failed" in r["message"]]
    assert failed and failed[0]["request_id"] == 41 and failed[0]["trace_id"] == TRACE_ID, failed
    assert failed[0]["http_request_id"] == request_id  # stateless: the call ran inside its HTTP request


def _reader(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def test_stdio_keeps_stdout_pure_json_rpc_and_logs_json_to_stderr(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "vps_snapshots_mcp", "--sandbox", "--log-format", "json", "--log-level", "debug"],
        env={"PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=(tmp_path / "stderr").open("w"), text=True,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True).start()
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
         "capabilities": {}, "clientInfo": {"name": "log-test", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_snapshot",
         "arguments": {"snapshot_id": 999999}, "_meta": {"traceparent": TRACEPARENT}}},
    ]  # fmt: skip
    stdout: list[str] = []
    try:
        for message in messages:
            process.stdin.write(json.dumps(message) + "\n")
            process.stdin.flush()
        deadline = time.monotonic() + 60
        while not any('"id":2' in line.replace(" ", "") for line in stdout):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "the server stopped before answering"
            stdout.append(line)
    finally:
        process.stdin.close()
        process.wait(timeout=10)
    while (rest := lines.get(timeout=10)) is not None:
        stdout.append(rest)
    for line in stdout:
        assert json.loads(line)["jsonrpc"] == "2.0", line  # nothing but JSON-RPC on stdout
    records = json_lines((tmp_path / "stderr").read_text())
    failed = [r for r in records if "get_snapshot refused or failed" in r["message"]]
    assert failed and failed[0]["request_id"] == 2 and failed[0]["trace_id"] == TRACE_ID, records


def test_text_is_the_default_and_a_choice_is_checked() -> None:
    from vps_snapshots_mcp.cli import serve_parser
    from vps_snapshots_mcp.settings import SettingsError, from_sources

    assert from_sources({}, {"VPS_MCP_SANDBOX": "1"}).log_format == "text"
    assert from_sources({}, {"VPS_MCP_SANDBOX": "1", "VPS_MCP_LOG_FORMAT": "JSON"}).log_format == "json"
    assert serve_parser().parse_args(["--log-format", "Json"]).log_format == "json"
    with pytest.raises(SettingsError, match="VPS_MCP_LOG_FORMAT"):
        from_sources({}, {"VPS_MCP_SANDBOX": "1", "VPS_MCP_LOG_FORMAT": "xml"})


@pytest.mark.anyio
async def test_a_ledger_failure_is_logged_at_warning_with_the_call_it_refused(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = open_ledger(f"redis://127.0.0.1:{free_port()}/0", wall=Timing().wall)  # nothing listens there
    try:
        async with connected(make_server(ledger=ledger, consent="token")) as client:
            token = await preview_token(client, "delete_snapshot", 798)
            with caplog.at_level(logging.INFO, logger="vps_snapshots_mcp"):
                refused = await client.call_tool(
                    "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": token}
                )
    finally:
        await ledger.aclose()
    assert refused.is_error and text_of(refused).startswith("state_unavailable:")
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING and "delete_snapshot" in r.getMessage()]
    assert warning.name == "vps_snapshots_mcp.protocol.server" and "cannot be reached" in warning.getMessage()
