"""The server as a real stdio subprocess, driven by the SDK's client, against the simulator on a socket.

Nothing in process: the server reads its settings from the environment like a
host would start it, talks HTTP over loopback to the served simulator, and
speaks MCP over its stdin/stdout. Its stderr is kept to check what it logged.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from vps_snapshots_mcp.simulator import ProviderState

from .support.world import TOKEN

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def server_params(api_url: str, *extra_args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "vps_snapshots_mcp", "--log-level", "DEBUG", *extra_args],
        env={"VPS_API_URL": api_url, "VPS_API_TOKEN": TOKEN},
    )


async def test_a_runbook_over_stdio_against_the_served_simulator(
    served_provider: str, provider: ProviderState, tmp_path: Path
) -> None:
    stderr_path = tmp_path / "server.stderr"
    with stderr_path.open("w") as stderr:
        async with Client(stdio_client(server_params(served_provider), errlog=stderr)) as client:
            listing = await client.call_tool("list_snapshots", {"server_id": 12345})
            assert listing.structured_content is not None and listing.structured_content["count"] == 2

            created = await client.call_tool("create_snapshot", {"server_id": 12345, "name": "over-stdio"})
            assert not created.is_error

            preview = await client.call_tool("delete_snapshot", {"snapshot_id": 798})
            assert preview.structured_content is not None
            token = preview.structured_content["confirmation_token"]
            refused = await client.call_tool(
                "restore_snapshot", {"snapshot_id": 801, "confirm": True, "confirmation_token": token}
            )
            assert refused.is_error
            deleted = await client.call_tool(
                "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": token}
            )
            assert deleted.structured_content == {
                "status": "deleted",
                "snapshot_id": 798,
                "message": 'Snapshot 798 of server 12345 "web-server-01" was deleted permanently.',
            }
            missing = await client.call_tool("get_snapshot", {"snapshot_id": 798})
            assert missing.is_error and getattr(missing.content[0], "text", "").startswith("not_found: ")

    assert [(r.method, r.path) for r in provider.mutations] == [
        ("POST", "/api/v1/snapshots/"),
        ("DELETE", "/api/v1/snapshots/798/"),
    ]
    logged = stderr_path.read_text()
    assert "vps-snapshots-mcp" in logged and "GET /api/v1/snapshots/ -> 200" in logged  # DEBUG reached stderr
    assert TOKEN not in logged and "authorization" not in logged.lower()


def test_stdout_carries_only_protocol() -> None:
    """Every line the server writes to stdout is a JSON-RPC message, even with DEBUG logging on."""
    import json

    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"},
        },
    }
    with tempfile.TemporaryFile("w+") as stderr:
        done = subprocess.run(
            [sys.executable, "-m", "vps_snapshots_mcp", "--sandbox", "--log-level", "DEBUG"],
            input=json.dumps(request) + "\n",
            capture_output=False,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=60,
            check=False,
        )
        stderr.seek(0)
        logged = stderr.read()
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, logged
    for line in lines:
        message = json.loads(line)
        assert message["jsonrpc"] == "2.0"
    assert json.loads(lines[0])["result"]["serverInfo"]["name"] == "vps-snapshots"
    assert "vps-snapshots-mcp" in logged


def test_the_demo_runs_clean() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vps_snapshots_mcp", "demo", "--sandbox-seconds", "0.3"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in (
        "list_snapshots(server_id=12345)",
        "create_snapshot(server_id=12345, name='before-update'",
        "… snapshot 802: in_progress, 0s elapsed",
        "… snapshot 802: completed",
        "already_exists=True",
        "RESTORE WARNING",
        "restore_started",
        "DELETE WARNING",
        "deleted: Snapshot 798",
    ):
        assert expected in out
    assert out.index("RESTORE WARNING") < out.index("restore_started") < out.index("deleted: Snapshot 798")
