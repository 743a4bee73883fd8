"""Permissions per server at work: a policy file of three roles and two teams, over real HTTP.

Real parts only: the server over streamable HTTP (in a thread, or as its own process), the SDK's own client on
both protocol revisions, real JWTs from a local JWKS, the simulator (one per team, each accepting only its own
provider token), a redis-server shared by two replica processes. Every test asserts what reached the provider:
nothing, for every refused call.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from vps_snapshots_mcp.compose import compose
from vps_snapshots_mcp.provider.client import asgi_transport
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import ProviderState, create_app
from vps_snapshots_mcp.simulator.serve import bind_socket, serving_in_thread
from vps_snapshots_mcp.simulator.state import seeded_state

from .support.http_serving import ServeFn, mint
from .support.mcp_client import preview_token, text_of
from .support.processes import http_server
from .support.redis_server import RedisServer
from .support.world import BASE_URL, TOKEN

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REVISIONS = ["legacy", "auto"]  # 2025-11-25 and 2026-07-28
AUTH_TOKEN = "client-auth-token-0123456789abcdef"
SECRET = "replicas-share-this-secret-0123"


def three_roles(issuer: str) -> str:
    """viewer: read everywhere; operator: read, create and restore on server 12345; admin: everything."""
    return f"""
[[rule]]
principals = ["oauth:{issuer}#viewer"]
servers = "all"
actions = ["read"]

[[rule]]
principals = ["oauth:{issuer}#operator"]
servers = [12345]
actions = ["read", "create", "restore"]

[[rule]]
principals = ["oauth:{issuer}#admin"]
servers = "all"
actions = "all"
"""


@asynccontextmanager
async def connect(url: str, bearer: str, *, mode: str = "auto") -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP (it cannot ask its user: consent is by confirmation token)."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


def bearer_for(key: rsa.RSAPrivateKey, issuer: str, url: str, subject: str) -> str:
    """A real access token from the local issuer, for this server: every action scope, so the policy decides."""
    scopes = "vps-snapshots snapshots:read snapshots:create snapshots:restore snapshots:delete"
    return mint(key, iss=issuer, aud=f"{url}/mcp", scope=scopes, sub=subject)


def code_of(result: CallToolResult) -> str:
    """`ok`, or the error code a refused call starts with."""
    return text_of(result).split(":")[0] if result.is_error else "ok"


async def calls(client: Client) -> dict[str, str]:
    """Each of the five tools, once on server 12345 (snapshots 801, 798) and once on server 23456 (810)."""
    results = {
        "list 12345": await client.call_tool("list_snapshots", {"server_id": 12345}),
        "list 23456": await client.call_tool("list_snapshots", {"server_id": 23456}),
        "get 798": await client.call_tool("get_snapshot", {"snapshot_id": 798}),
        "get 810": await client.call_tool("get_snapshot", {"snapshot_id": 810}),
        "create 12345": await client.call_tool("create_snapshot", {"server_id": 12345, "name": "nightly"}),
        "create 23456": await client.call_tool("create_snapshot", {"server_id": 23456, "name": "nightly"}),
        "restore 801": await client.call_tool("restore_snapshot", {"snapshot_id": 801}),
        "delete 798": await client.call_tool("delete_snapshot", {"snapshot_id": 798}),
        "delete 810": await client.call_tool("delete_snapshot", {"snapshot_id": 810}),
    }
    return {what: code_of(result) for what, result in results.items()}


EXPECTED = {
    "viewer": {
        "list 12345": "ok", "list 23456": "ok", "get 798": "ok", "get 810": "ok", "create 12345": "forbidden",
        "create 23456": "forbidden", "restore 801": "forbidden", "delete 798": "forbidden", "delete 810": "forbidden",
    },
    "operator": {
        "list 12345": "ok", "list 23456": "forbidden", "get 798": "ok", "get 810": "forbidden", "create 12345": "ok",
        "create 23456": "forbidden", "restore 801": "ok", "delete 798": "forbidden", "delete 810": "forbidden",
    },
    "admin": {
        "list 12345": "ok", "list 23456": "ok", "get 798": "ok", "get 810": "ok", "create 12345": "ok",
        "create 23456": "ok", "restore 801": "ok", "delete 798": "ok", "delete 810": "ok",
    },
}  # fmt: skip


@pytest.mark.parametrize("mode", REVISIONS)
@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
async def test_each_role_may_do_on_each_server_what_the_policy_says_and_nothing_reaches_the_provider_otherwise(
    serve: ServeFn, issuer: str, signing_key: rsa.RSAPrivateKey, provider: ProviderState, tmp_path: Path,
    role: str, mode: str,
) -> None:  # fmt: skip
    policy = tmp_path / "policy.toml"
    policy.write_text(three_roles(issuer))
    oauth = {"oauth_jwks_url": f"{issuer}/jwks.json", "oauth_issuer": issuer}
    with serve(public_url=lambda base: f"{base}/mcp", policy=str(policy), **oauth) as url:
        async with connect(url, bearer_for(signing_key, issuer, url, role), mode=mode) as client:
            assert await calls(client) == EXPECTED[role]
            everything = await client.call_tool("list_snapshots", {})
    # A list of all servers shows only the servers the caller may read.
    listed = {s["server"]["id"] for s in (everything.structured_content or {})["snapshots"]}
    assert listed == ({12345} if role == "operator" else {12345, 23456, 34567})
    # Previews send nothing; only the creates the role may make reached the provider.
    sent = [(r.method, r.path, r.body["server_id"]) for r in provider.mutations]
    creates = {"viewer": [], "operator": [12345], "admin": [12345, 23456]}[role]
    assert sent == [("POST", "/api/v1/snapshots/", server) for server in creates]


async def test_a_forbidden_restore_is_refused_before_a_token_is_minted_and_names_what_the_caller_may_do(
    serve: ServeFn, issuer: str, signing_key: rsa.RSAPrivateKey, provider: ProviderState, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(three_roles(issuer))
    oauth = {"oauth_jwks_url": f"{issuer}/jwks.json", "oauth_issuer": issuer}
    with serve(public_url=lambda base: f"{base}/mcp", policy=str(policy), **oauth) as url:
        async with connect(url, bearer_for(signing_key, issuer, url, "operator")) as client:
            refused = await client.call_tool("delete_snapshot", {"snapshot_id": 798})
            forged = await client.call_tool(
                "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": "x" * 40}
            )
    assert text_of(refused) == (
        f"forbidden: snapshot 798 is on server 12345, and the policy ({policy}) does not let oauth:{issuer}#operator "
        "delete there; it may read, create, restore on server 12345. Nothing was sent. Ask the operator to change "
        "the policy if it should."
    )
    assert refused.structured_content is None or "confirmation_token" not in refused.structured_content
    assert code_of(forged) == "forbidden"
    assert provider.mutations == []


# --- two teams, two provider accounts -------------------------------------------------------------------


class TwoAccounts:
    """The provider as two accounts: a request goes to the account whose token it presents (401 otherwise)."""

    def __init__(self, tokens: dict[str, ProviderState]) -> None:
        self.apps = {token: create_app(state, token=token) for token, state in tokens.items()}
        self.strangers = create_app(seeded_state(), token="no-such-token")
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        bearer = headers.get(b"authorization", b"").decode().partition(" ")[2]
        self.seen.append(bearer)
        await self.apps.get(bearer, self.strangers)(scope, receive, send)


async def test_two_teams_calls_reach_the_provider_with_their_own_credentials_only(
    issuer: str, signing_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    (tmp_path / "a.token").write_text("team-a-provider-token\n")
    (tmp_path / "b.token").write_text("team-b-provider-token\n")
    policy = tmp_path / "policy.toml"
    policy.write_text(f"""
[[rule]]
principals = ["oauth:{issuer}#alice"]
servers = [12345]
actions = "all"
credential = "{tmp_path}/a.token"

[[rule]]
principals = ["oauth:{issuer}#bob"]
servers = [23456]
actions = "all"
credential = "{tmp_path}/b.token"
""")
    team_a, team_b = seeded_state(), seeded_state()
    accounts = TwoAccounts({"team-a-provider-token": team_a, "team-b-provider-token": team_b})
    sock = bind_socket("127.0.0.1", 0)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        api_token=SecretStr(TOKEN), api_url=BASE_URL, transport="http", public_url=f"{base}/mcp",
        oauth_jwks_url=f"{issuer}/jwks.json", oauth_issuer=issuer, policy=str(policy),
    )  # fmt: skip
    composed = compose(settings, transport=asgi_transport(accounts))
    with serving_in_thread(composed.http_app(), sock=sock, lifespan="on") as url:
        async with (
            connect(url, bearer_for(signing_key, issuer, url, "alice")) as alice,
            connect(url, bearer_for(signing_key, issuer, url, "bob")) as bob,
        ):
            assert code_of(await alice.call_tool("create_snapshot", {"server_id": 12345, "name": "a1"})) == "ok"
            assert code_of(await bob.call_tool("create_snapshot", {"server_id": 23456, "name": "b1"})) == "ok"
            token = await preview_token(alice, "delete_snapshot", 798)
            done = await alice.call_tool(
                "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": token}
            )
            assert code_of(done) == "ok", text_of(done)
            token = await preview_token(bob, "delete_snapshot", 810)
            done = await bob.call_tool(
                "delete_snapshot", {"snapshot_id": 810, "confirm": True, "confirmation_token": token}
            )
            assert code_of(done) == "ok", text_of(done)
            # Alice's reach into Bob's server is refused before anything is sent with either token.
            assert code_of(await alice.call_tool("create_snapshot", {"server_id": 23456, "name": "x"})) == "forbidden"
            assert code_of(await alice.call_tool("list_snapshots", {"server_id": 23456})) == "forbidden"
    # Each account saw only its own team's calls, each with its own token; the server's own token was never used.
    assert [(r.method, r.path) for r in team_a.mutations] == [
        ("POST", "/api/v1/snapshots/"),
        ("DELETE", "/api/v1/snapshots/798/"),
    ]
    assert [(r.method, r.path) for r in team_b.mutations] == [
        ("POST", "/api/v1/snapshots/"),
        ("DELETE", "/api/v1/snapshots/810/"),
    ]
    assert [r.body["server_id"] for r in team_a.mutations[:1] + team_b.mutations[:1]] == [12345, 23456]
    assert {r.bearer for r in team_a.requests} == {"team-a-provider-token"}
    assert {r.bearer for r in team_b.requests} == {"team-b-provider-token"}
    assert set(accounts.seen) == {"team-a-provider-token", "team-b-provider-token"}


# --- the change budget across replicas ------------------------------------------------------------------


async def test_the_change_budget_holds_across_two_replicas_sharing_redis(
    served_provider: str, provider: ProviderState, redis_server: RedisServer, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[budget]\nchanges_per_hour = 2\n\n[[rule]]\nprincipals = ["token:*"]\nservers = "all"\nactions = "all"\n'
    )
    environment = {
        "VPS_API_URL": served_provider,
        "VPS_API_TOKEN": TOKEN,
        "VPS_MCP_CONFIRM_SECRET": SECRET,
        "VPS_MCP_STATE_URL": redis_server.url,
        "VPS_MCP_AUTH_TOKEN": AUTH_TOKEN,
        "VPS_MCP_POLICY": str(policy),
    }
    results: list[CallToolResult] = []
    with http_server(["--stateless"], environment) as a_url, http_server(["--stateless"], environment) as b_url:
        async with connect(a_url, AUTH_TOKEN) as a, connect(b_url, AUTH_TOKEN) as b:
            forged = {"snapshot_id": 798, "confirm": True, "confirmation_token": "x" * 40}
            assert code_of(await a.call_tool("delete_snapshot", forged)) == "confirmation_invalid"  # costs nothing
            for client, snapshot_id in ((a, 798), (b, 810), (a, 801), (b, 791)):
                token = await preview_token(client, "delete_snapshot", snapshot_id)  # previews are not counted
                confirmed = {"snapshot_id": snapshot_id, "confirm": True, "confirmation_token": token}
                results.append(await client.call_tool("delete_snapshot", confirmed))
    assert [code_of(r) for r in results] == ["ok", "ok", "rate_limited", "rate_limited"]
    assert "the next change is possible at 20" in text_of(results[2]) and "Nothing was sent" in text_of(results[2])
    assert [(r.method, r.path) for r in provider.mutations] == [
        ("DELETE", "/api/v1/snapshots/798/"),
        ("DELETE", "/api/v1/snapshots/810/"),
    ]


# --- the file: at start, and while serving ----------------------------------------------------------------


def test_a_bad_policy_stops_the_server_at_start_with_one_line_and_exit_2(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nprincipals = ["token:*"]\nservers = "all"\nactions = "all"\n\n[[rule]]\n'
                      'groups = ["ops"]\nservers = [12345]\nactions = ["reboot"]\n')  # fmt: skip
    finished = subprocess.run(
        [sys.executable, "-m", "vps_snapshots_mcp", "--policy", str(policy)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VPS_API_TOKEN": TOKEN},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2
    assert finished.stderr.splitlines() == [
        f"vps-snapshots-mcp: policy file {policy}, rule 2 (line 6): unknown action 'reboot': actions are read, "
        'create, restore, delete, or "all"'
    ]


def rewrite(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))  # a new mtime even on a coarse clock


async def test_a_policy_change_takes_effect_without_a_restart_and_a_broken_one_leaves_it_serving(
    serve: ServeFn, provider: ProviderState, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = tmp_path / "policy.toml"
    rule = '[[rule]]\nprincipals = ["token:*"]\nservers = "all"\nactions = {}\n'
    policy.write_text(rule.format('["read"]'))
    with serve(auth_token=SecretStr(AUTH_TOKEN), policy=str(policy)) as url:
        async with connect(url, AUTH_TOKEN) as client:
            create = {"server_id": 12345, "name": "after-reload"}
            assert code_of(await client.call_tool("create_snapshot", create)) == "forbidden"
            rewrite(policy, rule.format('["read", "create"]'))
            await anyio.sleep(1.1)  # the file is looked at again at most once a second
            with caplog.at_level(logging.INFO, logger="vps_snapshots_mcp.policy"):
                assert code_of(await client.call_tool("create_snapshot", create)) == "ok"
            rewrite(policy, rule.format('["read", "create", "launch"]'))
            await anyio.sleep(1.1)
            with caplog.at_level(logging.INFO, logger="vps_snapshots_mcp.policy"):
                again = await client.call_tool("create_snapshot", {"server_id": 12345, "name": "still-allowed"})
            assert code_of(again) == "ok"
    policy_log = [r for r in caplog.records if r.name == "vps_snapshots_mcp.policy"]
    assert [r.getMessage() for r in policy_log] == [
        f"policy file {policy} reloaded: 1 rules",
        f"policy file {policy}, rule 1 (line 1): unknown action 'launch': actions are read, create, restore, "
        'delete, or "all"; the previous policy keeps serving until the file is fixed',
    ]
    assert len(provider.mutations) == 2
