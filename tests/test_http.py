"""The streamable HTTP transport on a real loopback port: both revisions, auth, Origin, replicas.

The MCP server runs under uvicorn in a background thread (or as subprocesses, for
replicas) and is driven by the SDK's own HTTP client, against the simulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from vps_snapshots_mcp import __version__
from vps_snapshots_mcp.settings import Settings, SettingsError
from vps_snapshots_mcp.simulator import ProviderState

from .support.http_serving import ServeFn, mint
from .support.processes import replica
from .support.world import TOKEN

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

AUTH_TOKEN = "client-auth-token-0123456789abcdef"


def http_client(token: str | None = None) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.AsyncClient(headers=headers, timeout=30)


@asynccontextmanager
async def connect(url: str, token: str | None = None, mode: str = "auto") -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP, presenting `token` when given."""
    async with (
        http_client(token) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as c,
    ):
        yield c


async def confirmed_delete(client: Client, snapshot_id: int) -> dict[str, Any]:
    preview = await client.call_tool("delete_snapshot", {"snapshot_id": snapshot_id})
    assert preview.structured_content is not None, preview.content
    token = preview.structured_content["confirmation_token"]
    done = await client.call_tool(
        "delete_snapshot", {"snapshot_id": snapshot_id, "confirm": True, "confirmation_token": token}
    )
    assert done.structured_content is not None, done.content
    return dict(done.structured_content)


# --- the transport -----------------------------------------------------------------------------------


async def test_healthz_answers_with_the_version(serve: ServeFn) -> None:
    with serve() as url:
        async with http_client() as http:
            response = await http.get(f"{url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


@pytest.mark.parametrize(("mode", "revision"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
@pytest.mark.parametrize("stateless", [False, True])
async def test_list_and_a_confirmed_delete_over_http(
    serve: ServeFn, provider: ProviderState, mode: str, revision: str, stateless: bool
) -> None:
    # Stateless on 2025-11-25 nobody can be asked, so only token mode takes a token alone there
    # (tests/test_consent_binding.py shows the default refusing it).
    consent = "token" if stateless and mode == "legacy" else "auto"
    with serve(stateless=stateless, consent=consent) as url:
        async with (
            http_client() as http,
            Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client,
        ):
            assert client.protocol_version == revision
            listing = await client.call_tool("list_snapshots", {"server_id": 12345})
            assert listing.structured_content is not None and listing.structured_content["count"] == 2
            assert (await confirmed_delete(client, 798))["status"] == "deleted"
    assert [(r.method, r.path) for r in provider.mutations] == [("DELETE", "/api/v1/snapshots/798/")]
    assert all(r.authorized for r in provider.requests)


# --- static bearer token --------------------------------------------------------------------------------


async def test_a_static_token_is_required(serve: ServeFn, provider: ProviderState) -> None:
    with serve(auth_token=SecretStr(AUTH_TOKEN)) as url:
        async with http_client() as anonymous, http_client("wrong-token-0123456789") as wrong:
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            for http in (anonymous, wrong):
                response = await http.post(f"{url}/mcp", json=body)
                assert response.status_code == 401
                assert response.headers["www-authenticate"].startswith("Bearer")
            assert (await anonymous.get(f"{url}/healthz")).status_code == 200
        async with connect(url, AUTH_TOKEN) as c:
            assert (await confirmed_delete(c, 798))["status"] == "deleted"
    # The client's token authenticates it to us; only the provider token goes to the provider.
    assert all(r.bearer == TOKEN for r in provider.requests)
    assert len(provider.requests) > 0


# --- OAuth 2.1 resource server ---------------------------------------------------------------------------


async def tools_list_status(url: str, token: str) -> int:
    async with http_client(token) as http:
        response = await http.post(
            f"{url}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"},
        )
    return response.status_code


async def test_a_valid_access_token_is_accepted(oauth_server: str, issuer: str, signing_key: rsa.RSAPrivateKey) -> None:
    token = mint(signing_key, iss=issuer, aud=f"{oauth_server}/mcp", scope="openid vps-snapshots")
    async with connect(oauth_server, token) as c:
        listing = await c.call_tool("list_snapshots", {})
    assert listing.structured_content is not None and listing.structured_content["count"] == 9


@pytest.mark.parametrize(
    ("case", "status"),
    [("expired", 401), ("wrong_audience", 401), ("wrong_issuer", 401), ("missing_scope", 403), ("bad_signature", 401)],
)
async def test_bad_access_tokens_are_refused(
    oauth_server: str, issuer: str, signing_key: rsa.RSAPrivateKey, case: str, status: int
) -> None:
    claims: dict[str, Any] = {"iss": issuer, "aud": f"{oauth_server}/mcp", "scope": "vps-snapshots"}
    key = signing_key
    if case == "expired":
        claims["exp"] = int(time.time()) - 3600
    elif case == "wrong_audience":
        claims["aud"] = "https://another-server.example/mcp"
    elif case == "wrong_issuer":
        claims["iss"] = "https://impostor.example"
    elif case == "missing_scope":
        claims["scope"] = "openid profile"
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert await tools_list_status(oauth_server, mint(key, **claims)) == status


async def test_protected_resource_metadata_is_published(oauth_server: str, issuer: str) -> None:
    async with http_client() as http:
        refused = await http.post(f"{oauth_server}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        metadata = await http.get(f"{oauth_server}/.well-known/oauth-protected-resource/mcp")
    assert refused.status_code == 401
    assert "resource_metadata=" in refused.headers["www-authenticate"]
    assert metadata.status_code == 200
    body = metadata.json()
    assert body["resource"] == f"{oauth_server}/mcp"
    assert [s.rstrip("/") for s in body["authorization_servers"]] == [issuer]
    assert body["scopes_supported"] == [
        "vps-snapshots",
        "snapshots:read",
        "snapshots:create",
        "snapshots:restore",
        "snapshots:delete",
    ]


# --- transport security -----------------------------------------------------------------------------------


async def test_a_foreign_origin_is_forbidden_and_a_local_one_is_not(serve: ServeFn, provider: ProviderState) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    headers = {"Accept": "application/json, text/event-stream"}
    with serve() as url:
        async with http_client() as http:
            evil = await http.post(f"{url}/mcp", json=body, headers=headers | {"Origin": "https://evil.example"})
            rebound = await http.post(f"{url}/mcp", json=body, headers=headers | {"Host": "evil.example"})
            local = await http.post(f"{url}/mcp", json=body, headers=headers | {"Origin": url})
    assert evil.status_code == 403
    assert rebound.status_code == 421
    assert local.status_code == 200
    assert provider.requests == []


async def test_a_configured_origin_is_allowed(serve: ServeFn) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    with serve(allowed_origins=("https://console.example",)) as url:
        async with http_client() as http:
            response = await http.post(f"{url}/mcp", json=body, headers={"Origin": "https://console.example"})
    assert response.status_code != 403


async def test_the_request_body_is_bounded(serve: ServeFn, provider: ProviderState) -> None:
    with serve(max_body_bytes=4096) as url:
        async with http_client() as http:
            response = await http.post(
                f"{url}/mcp",
                content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "pad": "x" * 10_000}),
                headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
            )
    assert response.status_code == 413
    assert provider.requests == []


def test_serving_off_loopback_without_client_auth_is_refused() -> None:
    with pytest.raises(SettingsError, match="without client authentication"):
        Settings(api_token=SecretStr(TOKEN), transport="http", host="0.0.0.0")  # noqa: S104
    Settings(api_token=SecretStr(TOKEN), transport="http", host="0.0.0.0", auth_token=SecretStr(AUTH_TOKEN))  # noqa: S104


def test_the_cli_refuses_a_public_bind_without_auth() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vps_snapshots_mcp", "--transport", "http", "--host", "0.0.0.0", "--sandbox"],  # noqa: S104
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 2
    assert "VPS_MCP_AUTH_TOKEN" in done.stderr and len(done.stderr.strip().splitlines()) == 1


# --- replicas ---------------------------------------------------------------------------------------------


async def test_a_token_minted_by_one_replica_executes_on_another(
    served_provider: str, provider: ProviderState, tmp_path: Path
) -> None:
    secret, state = "replicas-share-this-secret-0123", f"sqlite:///{tmp_path}/consent.db"
    # One caller on both replicas (the same client token): a confirmation token is its previewer's alone.
    with (
        replica(served_provider, secret, state, auth_token=AUTH_TOKEN) as first,
        replica(served_provider, secret, state, auth_token=AUTH_TOKEN) as second,
    ):
        async with connect(first, AUTH_TOKEN) as a:
            preview = await a.call_tool("delete_snapshot", {"snapshot_id": 798})
        assert preview.structured_content is not None
        token = preview.structured_content["confirmation_token"]
        async with (
            http_client(AUTH_TOKEN) as http,
            Client(streamable_http_client(f"{second}/mcp", http_client=http)) as b,
        ):
            done = await b.call_tool(
                "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": token}
            )
    assert done.structured_content is not None and done.structured_content["status"] == "deleted"
    assert [(r.method, r.path) for r in provider.mutations] == [("DELETE", "/api/v1/snapshots/798/")]
