"""Approvals across rounds, people and replicas: a replayed 2026-07-28 retry, four eyes on a protected server,
replica A proposing and replica B's page approving, and `auto` choosing the page only for clients that open URLs.

Real parts, as in `test_approval_flow.py`: the server over HTTP with OAuth, the SDK's client, the simulator, a
redis-server and two server processes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp_types import ElicitRequestURLParams, ElicitResult, InputRequiredResult, InputResponses

from vps_snapshots_mcp.access import AccessPolicy
from vps_snapshots_mcp.consent.approvals import Approvals
from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.state import open_ledger
from vps_snapshots_mcp.timing import Timing

from .support.approvals import (
    DELETE_798,
    RESTORE_801,
    REVISIONS,
    SIGNIN,
    SIGNIN_ENVIRONMENT,
    Browser,
    Person,
    Serve,
    approval_id_of,
    bearer,
    connect,
    delete_798,
    mutations,
    page,
    preview_798,
    restore_801,
)
from .support.mcp_client import text_of
from .support.processes import http_server
from .support.redis_server import RedisServer
from .support.world import TOKEN

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


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
        **SIGNIN_ENVIRONMENT,
    }
    alice = Person(f"oauth:{issuer}#alice")
    token = bearer(signing_key, issuer, public, "alice")
    ledger_b = open_ledger(redis_server.url, wall=Timing().wall)  # replica B's page, on the shared ledger
    replica_b_page = Approvals(ledger_b, AccessPolicy(), wall=Timing().wall, site_url=public.removesuffix("/mcp"))
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
    serve_composed: Serve, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey
) -> None:
    oauth = {"oauth_jwks_url": f"{issuer}/jwks.json", "oauth_issuer": issuer, **SIGNIN}
    with serve_composed(public_url=lambda base: f"{base}/mcp", **oauth) as (url, composition):
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
