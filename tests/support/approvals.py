"""Helpers of the approval-flow tests: a person on the page, a client that opens URLs, and the calls they make."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, ElicitRequestParams, ElicitRequestURLParams, ElicitResult
from pydantic import SecretStr

from vps_snapshots_mcp.compose import Composition
from vps_snapshots_mcp.consent.approvals import Approvals
from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.state import ConsentLedger

from .mcp_client import text_of

REVISIONS = ["legacy", "auto"]  # 2025-11-25 (elicitation/create mid-call) and 2026-07-28 (input-required rounds)
DELETE_798 = [("DELETE", "/api/v1/snapshots/798/")]
RESTORE_801 = [("POST", "/api/v1/snapshots/801/restore/")]
SCOPES = "vps-snapshots snapshots:read snapshots:restore snapshots:delete"


@dataclass(frozen=True)
class Person:
    principal_key: str
    scopes: frozenset[str] | None = None
    groups: frozenset[str] = frozenset()


Serve = Callable[..., AbstractContextManager[tuple[str, Composition]]]


SIGNIN = {"approval_client_id": "approval-page", "approval_client_secret": SecretStr("the-idp-gave-this-secret")}
"""The approval page's sign-in (its OpenID Connect client): without it no page is served, nobody is sent to one.
These tests approve through the service; the sign-in itself: tests/test_signin*.py, test_approval_page*.py."""
SIGNIN_ENVIRONMENT = {"VPS_MCP_APPROVAL_CLIENT_ID": "approval-page", "VPS_MCP_APPROVAL_CLIENT_SECRET": "the-idp-gave"}


def in_url_mode(serve: Serve, issuer: str) -> Serve:
    """`serve` with `--consent url`, OAuth trusting `issuer`, the page's sign-in, and the public URL its own."""

    def start(**settings: Any) -> AbstractContextManager[tuple[str, Composition]]:
        oauth = {"oauth_jwks_url": f"{issuer}/jwks.json", "oauth_issuer": issuer, **SIGNIN}
        return serve(public_url=lambda base: f"{base}/mcp", consent="url", **oauth, **settings)

    return start


def bearer(key: rsa.RSAPrivateKey, issuer: str, audience: str, subject: str, scope: str = SCOPES) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": subject, "client_id": "assistant", "scope": scope}
    return jwt.encode(claims | {"iat": now, "exp": now + 300}, key, algorithm="RS256", headers={"kid": "k1"})


def page(composition: Composition, ledger: ConsentLedger | None = None) -> Approvals:
    """The approval page's service, as another replica would hold it: the same ledger, its own process state."""
    return Approvals(
        ledger or composition.ledger,
        composition.access,
        wall=time.time,
        site_url=composition.settings.site_url,
    )


def approval_id_of(url: str) -> str:
    assert "/approve/" in url, url
    return url.rsplit("/approve/", 1)[1]


class Browser:
    """The person behind a client that opens URLs: opens the link, and decides there (through the service)."""

    def __init__(self, decide: Callable[[str], Any] | None, answer: str = "accept") -> None:
        self.decide = decide
        self.answer = answer
        self.links: list[str] = []

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        assert isinstance(params, ElicitRequestURLParams), params
        self.links.append(params.url)
        if self.decide is not None:
            await self.decide(approval_id_of(params.url))
        return ElicitResult(action=self.answer)


@asynccontextmanager
async def connect(
    url: str, token: str, *, mode: str = "auto", browser: Browser | None = None, heard: list[str] | None = None
) -> AsyncIterator[Client]:
    """The SDK's client over HTTP; it opens URLs when given a `browser`; `heard` collects what the server told it."""

    async def listen(message: Any) -> None:
        if heard is not None:
            heard.append(repr(message))

    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(
            streamable_http_client(f"{url}/mcp", http_client=http),
            mode=mode,
            elicitation_callback=browser,
            message_handler=listen,
        ) as c,
    ):
        yield c


async def delete_798(client: Client, token: str | None = None) -> CallToolResult:
    arguments: dict[str, Any] = {"snapshot_id": 798, "confirm": True}
    if token is not None:
        arguments["confirmation_token"] = token
    return await client.call_tool("delete_snapshot", arguments)


def mutations(provider: ProviderState) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in provider.mutations]


class Shifted:
    """The server's clock, which a test moves on (its wall clock, judging expiry, follows)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def preview_798(client: Client) -> dict[str, Any]:
    result = await client.call_tool("delete_snapshot", {"snapshot_id": 798})
    assert result.structured_content is not None, text_of(result)
    return dict(result.structured_content)


async def restore_801(client: Client, token: str | None = None) -> CallToolResult:
    arguments: dict[str, Any] = {"snapshot_id": 801, "confirm": True}
    if token is not None:
        arguments["confirmation_token"] = token
    return await client.call_tool("restore_snapshot", arguments)
