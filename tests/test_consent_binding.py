"""Consent belongs to its caller: a decline voids its token, a promised question cannot be skipped, and a
token works only for the principal who previewed it, on every replica.

Real parts only: the server over HTTP on a loopback port (in a thread, or as its own process), the SDK's own
client, a local OAuth issuer publishing a JWKS, a redis-server, a SQLite file, a stdio server process. Every test
asserts what reached the provider.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client, StdioServerParameters
from mcp.client.context import ClientRequestContext
from mcp.client.session import ElicitationFnT
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, ElicitRequestParams, ElicitResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.simulator.serve import serving_in_thread

from .support.http_serving import ServeFn
from .support.mcp_client import text_of
from .support.processes import http_server
from .support.redis_server import RedisServer
from .support.world import TOKEN

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SECRET = "replicas-share-this-secret-0123"
AUTH_TOKEN = "client-auth-token-0123456789abcdef"
REVISIONS = ["legacy", "auto"]  # 2025-11-25 (a mid-call request) and 2026-07-28 (input_required rounds)
DELETE_798 = [("DELETE", "/api/v1/snapshots/798/")]


class User:
    """The person behind an eliciting client: answers every question the same way and counts them."""

    def __init__(self, action: Literal["accept", "decline", "cancel"]) -> None:
        self.action: Literal["accept", "decline", "cancel"] = action
        self.asked: list[str] = []

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        return ElicitResult(action=self.action, content={"confirm": True} if self.action == "accept" else None)


@asynccontextmanager
async def connect(
    url: str, *, mode: str = "auto", bearer: str | None = None, elicit: ElicitationFnT | None = None
) -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP; it can ask its user only when `elicit` is given."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode, elicitation_callback=elicit) as c,
    ):
        yield c


async def preview(client: Client, tool: str, snapshot_id: int) -> dict[str, Any]:
    result = await client.call_tool(tool, {"snapshot_id": snapshot_id})
    assert result.structured_content is not None, text_of(result)
    return dict(result.structured_content)


async def confirm(client: Client, tool: str, snapshot_id: int, token: str) -> CallToolResult:
    return await client.call_tool(tool, {"snapshot_id": snapshot_id, "confirm": True, "confirmation_token": token})


def status_of(result: CallToolResult) -> str:
    assert result.structured_content is not None, text_of(result)
    return str(result.structured_content["status"])


# --- a decline voids its token; a promised question cannot be skipped ---------------------------------


@pytest.mark.parametrize("mode", REVISIONS)
async def test_a_token_the_user_declined_never_executes_from_another_connection(
    serve: ServeFn, provider: ProviderState, mode: str
) -> None:
    user = User("decline")
    with serve() as url:
        async with connect(url, mode=mode) as plain, connect(url, mode=mode, elicit=user) as asker:
            token = (await preview(plain, "delete_snapshot", 798))["confirmation_token"]
            assert status_of(await confirm(asker, "delete_snapshot", 798, token)) == "cancelled"
            assert len(user.asked) == 1
            # The same token, from a connection that cannot ask: the user's "no" stands.
            again = await confirm(plain, "delete_snapshot", 798, token)
    # Previewed where nobody is asked, so only the decline can have voided it.
    assert again.is_error and text_of(again).startswith("confirmation_invalid: this consent was already used")
    assert "Nothing was changed" in text_of(again)
    assert provider.mutations == []


@pytest.mark.parametrize("mode", REVISIONS)
async def test_a_preview_that_promised_a_question_is_redeemable_only_through_it(
    serve: ServeFn, provider: ProviderState, mode: str
) -> None:
    user = User("accept")
    with serve() as url:
        async with connect(url, mode=mode, elicit=user) as asker, connect(url, mode=mode) as plain:
            shown = await preview(asker, "delete_snapshot", 798)
            assert "the user will be asked" in shown["warning"]
            skipped = await confirm(plain, "delete_snapshot", 798, shown["confirmation_token"])
            assert skipped.is_error and text_of(skipped).startswith("confirmation_invalid: ")
            assert "will be asked" in text_of(skipped) and "Nothing was changed" in text_of(skipped)
            assert provider.mutations == [] and user.asked == []
            # Through the question it was promised, the same token still works.
            assert status_of(await confirm(asker, "delete_snapshot", 798, shown["confirmation_token"])) == "deleted"
    assert len(user.asked) == 1
    assert [(r.method, r.path) for r in provider.mutations] == DELETE_798


# --- a token is redeemable only by the principal who previewed it -------------------------------------


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def issuer(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    """A local authorization server that publishes only its JWKS."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]})

    with serving_in_thread(Starlette(routes=[Route("/jwks.json", jwks)])) as url:
        yield url


def access_token(key: rsa.RSAPrivateKey, issuer: str, audience: str, subject: str) -> str:
    now = int(time.time())
    scope = "vps-snapshots snapshots:read snapshots:delete"  # the connect scope alone grants reads only
    claims = {"iss": issuer, "aud": audience, "sub": subject, "client_id": "assistant", "scope": scope}
    return jwt.encode(claims | {"iat": now, "exp": now + 300}, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.mark.parametrize("mode", REVISIONS)
async def test_a_token_alice_previewed_does_not_execute_for_bob(
    serve: ServeFn, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str
) -> None:
    oauth = {"oauth_jwks_url": f"{issuer}/jwks.json", "oauth_issuer": issuer}
    with serve(public_url=lambda base: f"{base}/mcp", **oauth) as url:
        alice, bob = (access_token(signing_key, issuer, f"{url}/mcp", who) for who in ("alice", "bob"))
        async with connect(url, mode=mode, bearer=alice) as a, connect(url, mode=mode, bearer=bob) as b:
            token = (await preview(a, "delete_snapshot", 798))["confirmation_token"]
            stolen = await confirm(b, "delete_snapshot", 798, token)
            assert stolen.is_error and text_of(stolen).startswith("confirmation_invalid: ")
            assert "previewed by another caller" in text_of(stolen) and "Nothing was changed" in text_of(stolen)
            assert provider.mutations == []
            # Bob's attempt did not use it up: alice's own confirmation still works.
            assert status_of(await confirm(a, "delete_snapshot", 798, token)) == "deleted"
    assert [(r.method, r.path) for r in provider.mutations] == DELETE_798


async def test_across_replicas_sharing_redis_a_token_executes_only_for_its_principal(
    served_provider: str,
    provider: ProviderState,
    redis_server: RedisServer,
    issuer: str,
    signing_key: rsa.RSAPrivateKey,
) -> None:
    public = "https://snapshots.example/mcp"  # both replicas sit behind one public URL, as in Kubernetes
    environment = {
        "VPS_API_URL": served_provider,
        "VPS_API_TOKEN": TOKEN,
        "VPS_MCP_CONFIRM_SECRET": SECRET,
        "VPS_MCP_STATE_URL": redis_server.url,
        "VPS_MCP_PUBLIC_URL": public,
        "VPS_MCP_OAUTH_JWKS_URL": f"{issuer}/jwks.json",
        "VPS_MCP_OAUTH_ISSUER": issuer,
    }
    alice, bob = (access_token(signing_key, issuer, public, who) for who in ("alice", "bob"))
    with http_server(["--stateless"], environment) as first, http_server(["--stateless"], environment) as second:
        async with connect(first, bearer=alice) as alice_on_first, connect(second, bearer=bob) as bob_on_second:
            token = (await preview(alice_on_first, "delete_snapshot", 798))["confirmation_token"]
            stolen = await confirm(bob_on_second, "delete_snapshot", 798, token)
            assert text_of(stolen).startswith("confirmation_invalid: ") and "another caller" in text_of(stolen)
            assert provider.mutations == []
        async with connect(second, bearer=alice) as alice_on_second:
            assert status_of(await confirm(alice_on_second, "delete_snapshot", 798, token)) == "deleted"
    assert [(r.method, r.path) for r in provider.mutations] == DELETE_798


async def test_the_static_token_and_a_stdio_process_are_different_callers(
    served_provider: str, provider: ProviderState, tmp_path: Path
) -> None:
    shared = {
        "VPS_API_URL": served_provider,
        "VPS_API_TOKEN": TOKEN,
        "VPS_MCP_CONFIRM_SECRET": SECRET,
        "VPS_MCP_STATE_URL": f"sqlite:///{tmp_path}/consent.db",
    }
    stdio = StdioServerParameters(
        command=sys.executable,
        args=["-m", "vps_snapshots_mcp", "--log-level", "WARNING"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **shared},
    )
    with http_server([], shared | {"VPS_MCP_AUTH_TOKEN": AUTH_TOKEN}) as url:
        async with connect(url, bearer=AUTH_TOKEN) as over_http, Client(stdio) as local:
            from_http = (await preview(over_http, "delete_snapshot", 798))["confirmation_token"]
            from_stdio = (await preview(local, "restore_snapshot", 801))["confirmation_token"]
            for refused in (
                await confirm(local, "delete_snapshot", 798, from_http),
                await confirm(over_http, "restore_snapshot", 801, from_stdio),
            ):
                assert text_of(refused).startswith("confirmation_invalid: ") and "another caller" in text_of(refused)
            assert provider.mutations == []
            # Each caller's own token still works for it.
            assert status_of(await confirm(over_http, "delete_snapshot", 798, from_http)) == "deleted"
            assert status_of(await confirm(local, "restore_snapshot", 801, from_stdio)) == "restore_started"
    assert [(r.method, r.path) for r in provider.mutations] == [
        ("DELETE", "/api/v1/snapshots/798/"),
        ("POST", "/api/v1/snapshots/801/restore/"),
    ]


# --- stateless HTTP ---------------------------------------------------------------------------------------


async def test_stateless_2025_11_25_refuses_the_token_alone_even_for_a_client_that_can_ask(
    serve: ServeFn, provider: ProviderState
) -> None:
    # Stateless, 2025-11-25: no back channel to ask on, and the client's capabilities are unknown after its
    # initialize. The user cannot be asked, so the model's token alone must not restore or delete.
    user = User("accept")
    with serve(stateless=True) as url:
        async with connect(url, mode="legacy", elicit=user) as host:
            assert host.protocol_version == "2025-11-25"
            shown = await preview(host, "restore_snapshot", 801)
            assert "cannot confirm it" in shown["warning"]
            refused = await confirm(host, "restore_snapshot", 801, shown["confirmation_token"])
    assert refused.is_error and text_of(refused).startswith("confirmation_invalid: ")
    assert "2026-07-28" in text_of(refused) and "Nothing was changed" in text_of(refused)
    assert user.asked == [] and provider.mutations == []


async def test_stateless_2025_11_25_with_consent_token_executes_by_token(
    serve: ServeFn, provider: ProviderState
) -> None:
    with serve(stateless=True, consent="token") as url:
        async with connect(url, mode="legacy") as host:
            token = (await preview(host, "delete_snapshot", 798))["confirmation_token"]
            assert status_of(await confirm(host, "delete_snapshot", 798, token)) == "deleted"
    assert [(r.method, r.path) for r in provider.mutations] == DELETE_798


async def test_stateless_2026_07_28_asks_an_eliciting_host_and_its_no_voids_the_token(
    serve: ServeFn, provider: ProviderState
) -> None:
    no, yes = User("decline"), User("accept")
    with serve(stateless=True) as url:
        async with connect(url, elicit=no) as host, connect(url) as plain:
            assert host.protocol_version == "2026-07-28"
            shown = await preview(host, "delete_snapshot", 798)
            assert "the user will be asked" in shown["warning"]
            assert status_of(await confirm(host, "delete_snapshot", 798, shown["confirmation_token"])) == "cancelled"
            assert len(no.asked) == 1
            again = await confirm(plain, "delete_snapshot", 798, shown["confirmation_token"])
            assert text_of(again).startswith("confirmation_invalid: ") and provider.mutations == []
        async with connect(url, elicit=yes) as host:
            token = (await preview(host, "delete_snapshot", 798))["confirmation_token"]
            assert status_of(await confirm(host, "delete_snapshot", 798, token)) == "deleted"
    assert len(yes.asked) == 1
    assert [(r.method, r.path) for r in provider.mutations] == DELETE_798
