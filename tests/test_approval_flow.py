"""Consent the model cannot give (`--consent url`): a person approves on the approval page, the call executes once.

Real parts: the server over HTTP on a loopback port with OAuth (a local issuer publishing a JWKS), the SDK's own
client with a URL-elicitation callback, the provider simulator recording every change, a redis-server and two
server processes for the replica case. The page itself is built elsewhere: here the person approves by calling
the approval service (`consent/approvals.py`) on the server's ledger, as the page does. Every test asserts what
reached the provider.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp_types import (
    CallToolResult,
    ElicitRequestParams,
    ElicitRequestURLParams,
    ElicitResult,
    InputRequiredResult,
    InputResponses,
)

from vps_snapshots_mcp.access import AccessPolicy
from vps_snapshots_mcp.compose import Composition
from vps_snapshots_mcp.consent.approvals import Approvals
from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.state import ConsentLedger, open_ledger
from vps_snapshots_mcp.timing import Timing

from .support.http_serving import serving_composed
from .support.mcp_client import text_of
from .support.processes import http_server
from .support.redis_server import RedisServer
from .support.world import TOKEN

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REVISIONS = ["legacy", "auto"]  # 2025-11-25 (elicitation/create mid-call) and 2026-07-28 (input-required rounds)
DELETE_798 = [("DELETE", "/api/v1/snapshots/798/")]
RESTORE_801 = [("POST", "/api/v1/snapshots/801/restore/")]
SCOPES = "vps-snapshots snapshots:read snapshots:restore snapshots:delete"


@dataclass(frozen=True)
class Person:
    principal_key: str
    scopes: frozenset[str] | None = None


Serve = Callable[..., AbstractContextManager[tuple[str, Composition]]]


@pytest.fixture
def serve(provider: ProviderState) -> Serve:
    return serving_composed(provider)


@pytest.fixture
def url_mode(serve: Serve, issuer: str) -> Callable[..., AbstractContextManager[tuple[str, Composition]]]:
    def start(**settings: Any) -> AbstractContextManager[tuple[str, Composition]]:
        oauth = {"oauth_jwks_url": f"{issuer}/jwks.json", "oauth_issuer": issuer}
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
        public_url=composition.settings.public_url,
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


# --- a client that opens URLs: the user is sent to the page, the call waits, then executes once -----------


@pytest.mark.parametrize("mode", REVISIONS)
async def test_approved_on_the_page_the_delete_runs_once(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str
) -> None:
    with url_mode() as (url, composition):
        alice = Person(f"oauth:{issuer}#alice")
        service = page(composition)

        async def approve(approval_id: str) -> None:
            view = await service.view(approval_id)
            assert view is not None and view.plan.snapshot_id == 798 and view.requester == alice.principal_key
            assert (await service.approve(approval_id, alice)).allowed

        browser, heard = Browser(approve), list[str]()
        token = bearer(signing_key, issuer, f"{url}/mcp", "alice")
        async with connect(url, token, mode=mode, browser=browser, heard=heard) as c:
            result = await delete_798(c)
            assert not result.is_error, text_of(result)
            assert result.structured_content is not None and result.structured_content["status"] == "deleted"
            assert browser.links[0].startswith(f"{url}/approve/")
            assert mutations(provider) == DELETE_798
            if mode == "legacy":  # 2025-11-25: the client is told the URL interaction is over
                assert any("notifications/elicitation/complete" in note for note in heard), heard
            again = await delete_798(c)  # a new call is a new approval, and the snapshot is gone
            assert again.is_error
    assert mutations(provider) == DELETE_798


@pytest.mark.parametrize("mode", REVISIONS)
async def test_declined_on_the_page_nothing_runs(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str
) -> None:
    with url_mode() as (url, composition):
        service = page(composition)
        alice = Person(f"oauth:{issuer}#alice")

        async def decline(approval_id: str) -> None:
            assert (await service.decline(approval_id, alice)).allowed
            assert not (await service.approve(approval_id, alice)).allowed  # decided once

        async with connect(
            url, bearer(signing_key, issuer, f"{url}/mcp", "alice"), mode=mode, browser=Browser(decline)
        ) as c:
            result = await delete_798(c)
    assert result.is_error and text_of(result).startswith("confirmation_invalid: ")
    assert "declined on the approval page" in text_of(result) and "Nothing was changed" in text_of(result)
    assert mutations(provider) == []


@pytest.mark.parametrize("mode", REVISIONS)
async def test_a_user_who_does_not_open_the_page_changes_nothing(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str
) -> None:
    with url_mode() as (url, composition):
        seen: list[str] = []

        async def remember(approval_id: str) -> None:
            seen.append(approval_id)

        token = bearer(signing_key, issuer, f"{url}/mcp", "alice")
        async with connect(url, token, mode=mode, browser=Browser(remember, answer="decline")) as c:
            result = await delete_798(c)
        assert result.structured_content is not None and result.structured_content["status"] == "cancelled"
        alice = Person(f"oauth:{issuer}#alice")
        assert not (await page(composition).approve(seen[0], alice)).allowed  # withdrawn: nobody approves it now
    assert mutations(provider) == []


class Shifted:
    """The server's clock, which a test moves on (its wall clock, judging expiry, follows)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.mark.parametrize("mode", REVISIONS)
async def test_an_approval_nobody_gives_expires_and_nothing_runs(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str
) -> None:
    clock = Shifted()
    with url_mode(approval_expiry=30, timing=Timing(now=clock)) as (url, _composition):
        token = bearer(signing_key, issuer, f"{url}/mcp", "alice")

        async def nobody_decides(approval_id: str) -> None:
            clock.offset = timedelta(seconds=31)  # its thirty seconds pass, undecided

        async with connect(url, token, mode=mode, browser=Browser(nobody_decides)) as c:
            with anyio.fail_after(20):
                result = await delete_798(c)
    assert result.is_error and text_of(result).startswith("confirmation_invalid: "), text_of(result)
    assert "expired" in text_of(result) and "Nothing was changed" in text_of(result)
    assert mutations(provider) == []


# --- a client that cannot open URLs: the preview carries the link; the model can read it, not approve --------


async def preview_798(client: Client) -> dict[str, Any]:
    result = await client.call_tool("delete_snapshot", {"snapshot_id": 798})
    assert result.structured_content is not None, text_of(result)
    return dict(result.structured_content)


async def restore_801(client: Client, token: str | None = None) -> CallToolResult:
    arguments: dict[str, Any] = {"snapshot_id": 801, "confirm": True}
    if token is not None:
        arguments["confirmation_token"] = token
    return await client.call_tool("restore_snapshot", arguments)


@pytest.mark.parametrize("mode", REVISIONS)
async def test_without_url_elicitation_the_preview_links_the_page_and_only_an_approval_confirms(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str
) -> None:
    with url_mode() as (url, composition):
        alice, bob = Person(f"oauth:{issuer}#alice"), Person(f"oauth:{issuer}#bob")
        as_alice = bearer(signing_key, issuer, f"{url}/mcp", "alice")
        as_bob = bearer(signing_key, issuer, f"{url}/mcp", "bob")
        async with connect(url, as_alice, mode=mode) as model, connect(url, as_bob, mode=mode) as other:
            shown = await model.call_tool("restore_snapshot", {"snapshot_id": 801})
            assert shown.structured_content is not None, text_of(shown)
            warning, token = shown.structured_content["warning"], shown.structured_content["confirmation_token"]
            link = warning.split("open in their browser: ", 1)[1].split(" ", 1)[0]
            assert link.startswith(f"{url}/approve/") and "you cannot approve it" in warning
            assert token == "approval." + approval_id_of(link)
            # The model alone: confirm without the approval, with it before anyone approved, with a token of its own.
            for attempt in (None, token, "v2.forged.token", "approval." + "A" * 43):
                refused = await restore_801(model, attempt)
                assert refused.is_error and text_of(refused).startswith("confirmation_invalid: "), text_of(refused)
            assert "has not been given yet" in text_of(await restore_801(model, token))
            service = page(composition)
            assert not (await service.approve(approval_id_of(link), bob)).allowed  # not bob's to approve
            assert (await service.approve(approval_id_of(link), alice)).allowed
            stolen = await restore_801(other, token)  # bob brings alice's approval
            assert stolen.is_error and "asked for by another caller" in text_of(stolen)
            assert mutations(provider) == []
            done = await restore_801(model, token)
            assert done.structured_content is not None and done.structured_content["status"] == "restore_started"
            replayed = await restore_801(model, token)
            assert replayed.is_error and "already used" in text_of(replayed), text_of(replayed)
    assert mutations(provider) == RESTORE_801


async def test_a_snapshot_changed_after_its_approval_is_not_touched(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey
) -> None:
    with url_mode() as (url, composition):
        alice = Person(f"oauth:{issuer}#alice")
        async with connect(url, bearer(signing_key, issuer, f"{url}/mcp", "alice")) as model:
            token = (await preview_798(model))["confirmation_token"]
            assert (await page(composition).approve(token.removeprefix("approval."), alice)).allowed
            provider.snapshots[798].created_at = provider.snapshots[798].created_at.replace(year=2026)
            changed = await delete_798(model, token)
    assert changed.is_error and "not what was approved" in text_of(changed), text_of(changed)
    assert mutations(provider) == []


@pytest.mark.parametrize("change", ["changed", "replaced"])
@pytest.mark.parametrize("mode", REVISIONS)
async def test_a_snapshot_changed_while_the_person_decides_is_not_touched(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str, change: str
) -> None:
    with url_mode() as (url, composition):
        alice = Person(f"oauth:{issuer}#alice")

        async def change_then_approve(approval_id: str) -> None:
            if change == "changed":
                provider.snapshots[798].created_at = provider.snapshots[798].created_at.replace(year=2026)
            else:  # deleted, and one of the same name taken in its place (a new id)
                old = provider.snapshots.pop(798)
                provider.snapshots[900] = replace(old, id=900)
            assert (await page(composition).approve(approval_id, alice)).allowed

        token = bearer(signing_key, issuer, f"{url}/mcp", "alice")
        async with connect(url, token, mode=mode, browser=Browser(change_then_approve)) as c:
            result = await delete_798(c)
    expected = "not what was approved" if change == "changed" else "not_found: "
    assert result.is_error and expected in text_of(result), text_of(result)
    assert mutations(provider) == []


# --- 2026-07-28 by hand: the round, the retry, and the same retry replayed ---------------------------


async def test_a_replayed_retry_executes_nothing_more(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey
) -> None:
    arguments = {"snapshot_id": 798, "confirm": True}
    original = replace(provider.snapshots[798])
    with url_mode() as (url, composition):
        alice = Person(f"oauth:{issuer}#alice")
        token = bearer(signing_key, issuer, f"{url}/mcp", "alice")
        async with connect(url, token, browser=Browser(None)) as c:
            first = await c.session.call_tool("delete_snapshot", arguments, allow_input_required=True)
            assert isinstance(first, InputRequiredResult) and first.input_requests and first.request_state
            ((key, request),) = first.input_requests.items()
            assert isinstance(request.params, ElicitRequestURLParams)
            assert first.request_state and approval_id_of(request.params.url) not in first.request_state  # sealed
            assert (await page(composition).approve(approval_id_of(request.params.url), alice)).allowed
            responses: InputResponses = {key: ElicitResult(action="accept")}
            done = await c.call_tool(
                "delete_snapshot", arguments, input_responses=responses, request_state=first.request_state
            )
            assert done.structured_content is not None and done.structured_content["status"] == "deleted"
            provider.snapshots[798] = original  # the same snapshot back: only the ledger can refuse now
            again = await c.call_tool(
                "delete_snapshot", arguments, input_responses=responses, request_state=first.request_state
            )
    assert again.is_error and "already used" in text_of(again), text_of(again)
    assert mutations(provider) == DELETE_798


# --- four eyes: a protected server needs a second person ---------------------------------------------


@pytest.mark.parametrize("mode", REVISIONS)
async def test_on_a_protected_server_alice_cannot_approve_her_own_and_bob_can(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[approval]\nprotected_servers = [12345]\n\n[[rule]]\nprincipals = ["oauth:{issuer}#alice"]\n'
        f'servers = "all"\nactions = "all"\n\n[[rule]]\nprincipals = ["oauth:{issuer}#bob"]\nservers = [12345]\n'
        'actions = ["read", "approve"]\n'
    )
    with url_mode(policy=str(policy), audit_log=str(tmp_path / "audit.jsonl")) as (url, composition):
        alice, bob = Person(f"oauth:{issuer}#alice"), Person(f"oauth:{issuer}#bob")
        service = page(composition)
        verdicts = []

        async def both_try(approval_id: str) -> None:
            verdicts.append(await service.approve(approval_id, alice))
            verdicts.append(await service.approve(approval_id, bob))

        token = bearer(signing_key, issuer, f"{url}/mcp", "alice")
        async with connect(url, token, mode=mode, browser=Browser(both_try)) as c:
            result = await delete_798(c)
        assert result.structured_content is not None and result.structured_content["status"] == "deleted", text_of(
            result
        )
    assert [v.allowed for v in verdicts] == [False, True] and "never the one who asked" in verdicts[0].reason
    assert mutations(provider) == DELETE_798
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    executed = [line for line in lines if line["outcome"] == "executed"]
    assert len(executed) == 1 and executed[0]["consent"] == "approval"
    assert executed[0]["details"]["approver"] == bob.principal_key and executed[0]["actor"]["id"] == f"{issuer}#alice"


# --- replicas: A asks, B's page approves, one of them executes, once ---------------------------------


async def test_replica_a_proposes_replica_b_approves_and_it_runs_once(
    served_provider: str,
    provider: ProviderState,
    redis_server: RedisServer,
    issuer: str,
    signing_key: rsa.RSAPrivateKey,
) -> None:
    public = "https://snapshots.example/mcp"
    environment = {
        "VPS_API_URL": served_provider,
        "VPS_API_TOKEN": TOKEN,
        "VPS_MCP_CONFIRM_SECRET": "replicas-share-this-secret-0123",
        "VPS_MCP_STATE_URL": redis_server.url,
        "VPS_MCP_PUBLIC_URL": public,
        "VPS_MCP_OAUTH_JWKS_URL": f"{issuer}/jwks.json",
        "VPS_MCP_OAUTH_ISSUER": issuer,
        "VPS_MCP_CONSENT": "url",
    }
    alice = Person(f"oauth:{issuer}#alice")
    token = bearer(signing_key, issuer, public, "alice")
    ledger_b = open_ledger(redis_server.url, wall=Timing().wall)  # replica B's page, on the shared ledger
    replica_b_page = Approvals(ledger_b, AccessPolicy(), wall=Timing().wall, public_url=public)
    arguments = {"snapshot_id": 798, "confirm": True}
    original = replace(provider.snapshots[798])
    try:
        with http_server(["--stateless"], environment) as a, http_server(["--stateless"], environment) as b:
            async with (
                connect(a, token, browser=Browser(None)) as on_a,
                connect(b, token, browser=Browser(None)) as on_b,
            ):
                first = await on_a.session.call_tool("delete_snapshot", arguments, allow_input_required=True)
                assert isinstance(first, InputRequiredResult) and first.input_requests and first.request_state
                ((key, request),) = first.input_requests.items()
                assert isinstance(request.params, ElicitRequestURLParams)
                assert request.params.url.startswith("https://snapshots.example/approve/")
                assert (await replica_b_page.approve(approval_id_of(request.params.url), alice)).allowed
                again = await replica_b_page.approve(approval_id_of(request.params.url), alice)
                assert not again.allowed  # a second approval changes nothing
                responses: InputResponses = {key: ElicitResult(action="accept")}
                done = await on_b.call_tool(
                    "delete_snapshot", arguments, input_responses=responses, request_state=first.request_state
                )
                assert done.structured_content is not None and done.structured_content["status"] == "deleted"
                provider.snapshots[798] = original  # the same snapshot back: only the ledger can refuse now
                replayed = await on_a.call_tool(
                    "delete_snapshot", arguments, input_responses=responses, request_state=first.request_state
                )
                assert replayed.is_error and "already used" in text_of(replayed), text_of(replayed)
    finally:
        await ledger_b.aclose()
    assert mutations(provider) == DELETE_798


# --- auto: the page for a client that opens URLs, today's flows for the others -------------------------


async def test_auto_sends_a_url_client_to_the_page_and_keeps_the_token_for_others(
    serve: Serve, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey
) -> None:
    oauth = {"oauth_jwks_url": f"{issuer}/jwks.json", "oauth_issuer": issuer}
    with serve(public_url=lambda base: f"{base}/mcp", **oauth) as (url, composition):
        alice = Person(f"oauth:{issuer}#alice")
        service = page(composition)

        async def approve(approval_id: str) -> None:
            assert (await service.approve(approval_id, alice)).allowed

        token = bearer(signing_key, issuer, f"{url}/mcp", "alice")
        browser = Browser(approve)
        async with connect(url, token, browser=browser) as with_urls, connect(url, token) as without:
            done = await restore_801(with_urls)
            assert done.structured_content is not None and done.structured_content["status"] == "restore_started"
            assert len(browser.links) == 1
            shown = await preview_798(without)
            assert shown["confirmation_token"].startswith("v2.") and "/approve/" not in shown["warning"]
            deleted = await delete_798(without, shown["confirmation_token"])
            assert deleted.structured_content is not None and deleted.structured_content["status"] == "deleted"
    assert mutations(provider) == RESTORE_801 + DELETE_798


async def test_a_call_cancelled_while_it_waits_withdraws_its_approval(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey
) -> None:
    with url_mode() as (url, composition):
        opened = anyio.Event()
        seen: list[str] = []

        async def open_page(approval_id: str) -> None:
            seen.append(approval_id)
            opened.set()

        token = bearer(signing_key, issuer, f"{url}/mcp", "alice")
        async with connect(url, token, mode="legacy", browser=Browser(open_page)) as c:
            scope = anyio.CancelScope()

            async def call() -> None:
                with scope:
                    await delete_798(c)

            async with anyio.create_task_group() as group:
                group.start_soon(call)
                await opened.wait()
                scope.cancel()
            for _ in range(100):  # the server hears of the cancellation on its own time: a bounded look
                held = await composition.ledger.approval(seen[0])
                if held is not None and held.status != "pending":
                    break
                await anyio.sleep(0.05)
        assert held is not None and held.status == "declined"
        assert not (await page(composition).approve(seen[0], Person(f"oauth:{issuer}#alice"))).allowed
    assert mutations(provider) == []
