"""The server as its own process over HTTP, started and stopped by the test that needs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2

from .redis_server import free_port
from .world import TOKEN


@contextmanager
def replica(api_url: str, secret: str, state_url: str, *, auth_token: str | None = None) -> Iterator[str]:
    """The server as its own process, stateless, on its own port; yields its base URL once healthy.

    Replicas that should honour each other's confirmation tokens need one caller on all of them: a shared
    `auth_token` (or OAuth). Without client authentication each process is its own caller.
    """
    environment = {
        "VPS_API_URL": api_url,
        "VPS_API_TOKEN": TOKEN,
        "VPS_MCP_CONFIRM_SECRET": secret,
        "VPS_MCP_STATE_URL": state_url,
    }
    if auth_token is not None:
        environment["VPS_MCP_AUTH_TOKEN"] = auth_token
    with http_server(["--stateless"], environment) as url:
        yield url


@contextmanager
def http_server(arguments: list[str], environment: dict[str, str]) -> Iterator[str]:
    """`vps-snapshots-mcp ARGUMENTS --transport http` as its own process on a free port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "vps_snapshots_mcp", *arguments, "--transport", "http", "--port", str(port)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environment},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # a process start has no event to wait on; poll its health, briefly, with a deadline
            try:
                if httpx2.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the server did not become healthy"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
