"""A deployment with the approval page's sign-in: the real OpenID provider, and the server (in this process, or as
replicas in their own processes) registered with it as a client. The sign-in over plain HTTP: `signin_http.py`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from pydantic import SecretStr

from vps_snapshots_mcp.compose import Composition, compose
from vps_snapshots_mcp.provider.client import asgi_transport
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import ProviderState, create_app
from vps_snapshots_mcp.simulator.serve import bind_socket, serving_in_thread

from .oidc import Client, Issuer, oidc_provider
from .redis_server import free_port
from .world import BASE_URL, TOKEN

APPROVAL_CLIENT = "approval-page"


@dataclass
class Deployment:
    url: str
    """The server's base URL (its MCP endpoint is `{url}/mcp`, its approval pages `{url}/approve/`)."""
    idp: Issuer
    composition: Composition | None = None

    @property
    def client(self) -> Client:
        return self.idp.clients[APPROVAL_CLIENT]


@contextmanager
def signin_deployment(provider: ProviderState, workdir: Path, **overrides: Any) -> Iterator[Deployment]:
    """The server in a background thread with sign-in, its IdP started first for its callback URL."""
    sock = bind_socket("127.0.0.1", 0)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with oidc_provider(f"{base}/mcp", redirect_uris=(f"{base}/approve/callback",), workdir=workdir) as idp:
        client = idp.clients[APPROVAL_CLIENT]
        fields: dict[str, Any] = {
            "api_token": SecretStr(TOKEN),
            "api_url": BASE_URL,
            "transport": "http",
            "public_url": f"{base}/mcp",
            "oauth_jwks_url": idp.jwks_url,
            "oauth_issuer": idp.issuer,
            "approval_client_id": client.client_id,
            "approval_client_secret": SecretStr(client.client_secret),
            "log_level": "DEBUG",
        }
        ledger = overrides.pop("ledger", None)
        timing = overrides.pop("timing", None)
        settings = Settings(**(fields | overrides))
        composed = compose(
            settings, transport=asgi_transport(create_app(provider, token=TOKEN)), ledger=ledger, timing=timing
        )
        with serving_in_thread(composed.http_app(), sock=sock, lifespan="on") as url:
            yield Deployment(url, idp, composed)


@contextmanager
def replica_process(port: int, environment: dict[str, str], log: Path) -> Iterator[str]:
    """`vps-snapshots-mcp --transport http --port PORT` as its own process (DEBUG logs to `log`); its base URL."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "vps_snapshots_mcp", "--stateless", "--transport", "http", "--port", str(port)],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VPS_MCP_LOG_LEVEL": "DEBUG", **environment},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:  # a process start has no event to wait on: poll its health, briefly, with a deadline
                try:
                    if httpx2.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the replica did not become healthy"
                time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


@contextmanager
def replicas(
    api_url: str, state_url: str, workdir: Path, count: int = 2, environment: dict[str, str] | None = None
) -> Iterator[tuple[Issuer, list[str]]]:
    """`count` replicas sharing `state_url`, each registered at one IdP with its own callback (and `environment`
    added to each one's); their URLs."""
    ports = [free_port() for _ in range(count)]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    callbacks = tuple(f"{base}/approve/callback" for base in bases)
    with oidc_provider(f"{bases[0]}/mcp", redirect_uris=callbacks, workdir=workdir) as idp:
        client = idp.clients[APPROVAL_CLIENT]
        with contextmanager_stack(
            [
                replica_process(
                    port,
                    {
                        "VPS_API_URL": api_url,
                        "VPS_API_TOKEN": TOKEN,
                        "VPS_MCP_STATE_URL": state_url,
                        "VPS_MCP_PUBLIC_URL": f"{base}/mcp",
                        "VPS_MCP_OAUTH_ISSUER": idp.issuer,
                        "VPS_MCP_OAUTH_JWKS_URL": idp.jwks_url,
                        "VPS_MCP_APPROVAL_CLIENT_ID": client.client_id,
                        "VPS_MCP_APPROVAL_CLIENT_SECRET": client.client_secret,
                        **(environment or {}),
                    },
                    workdir / f"replica-{port}.log",
                )
                for port, base in zip(ports, bases, strict=True)
            ]
        ) as urls:
            yield idp, urls


@contextmanager
def contextmanager_stack(managers: list[Any]) -> Iterator[list[Any]]:
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield [stack.enter_context(m) for m in managers]
