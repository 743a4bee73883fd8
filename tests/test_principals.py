"""Who may do what, per action: three principals, the five tools, both revisions, over real HTTP.

Real JWTs signed by a local JWKS issuer; named static tokens from a tokens file on disk. A call without its
scope is answered 403 with the step-up challenge before the SDK dispatches it: the simulator's request log
shows nothing for it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from vps_snapshots_mcp.settings import SettingsError
from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.timing import Timing

from .support.http_serving import ServeFn, mint

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REVISIONS = {"legacy": "2025-11-25", "auto": "2026-07-28"}
TOOLS = ("list_snapshots", "get_snapshot", "create_snapshot", "restore_snapshot", "delete_snapshot")
ARGUMENTS: dict[str, dict[str, Any]] = {
    "list_snapshots": {},
    "get_snapshot": {"snapshot_id": 801},
    "create_snapshot": {"server_id": 12345, "name": "by-principal"},
    "restore_snapshot": {"snapshot_id": 801},
    "delete_snapshot": {"snapshot_id": 801},
}
SCOPE_OF = {
    "list_snapshots": "snapshots:read",
    "get_snapshot": "snapshots:read",
    "create_snapshot": "snapshots:create",
    "restore_snapshot": "snapshots:restore",
    "delete_snapshot": "snapshots:delete",
}
ROLES = {
    "viewer": ["snapshots:read"],
    "operator": ["snapshots:read", "snapshots:create", "snapshots:restore"],
    "admin": ["snapshots:read", "snapshots:create", "snapshots:restore", "snapshots:delete"],
}


def offered_to(role: str) -> list[str]:
    return [tool for tool in TOOLS if SCOPE_OF[tool] in ROLES[role]]


@asynccontextmanager
async def connect(url: str, token: str, mode: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as c,
    ):
        yield c


async def raw_call(url: str, token: str, tool: str, version: str) -> httpx2.Response:
    """A tools/call posted as the revision `version` posts it (2026-07-28 names the method and tool in headers)."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": version,
    }
    if version == "2026-07-28":
        headers |= {"Mcp-Method": "tools/call", "Mcp-Name": tool}
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": ARGUMENTS[tool]}}
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(f"{url}/mcp", json=body, headers=headers)


@pytest.fixture
def oauth_url(serve: ServeFn, issuer: str) -> Iterator[str]:
    settings = {"oauth_jwks_url": f"{issuer}/jwks.json", "oauth_issuer": issuer}
    with serve(public_url=lambda base: f"{base}/mcp", **settings) as url:
        yield url


def role_token(key: rsa.RSAPrivateKey, issuer: str, url: str, role: str) -> str:
    scope = " ".join(["vps-snapshots", *ROLES[role]])
    return mint(key, iss=issuer, aud=f"{url}/mcp", sub=role, scope=scope, groups=[f"team-{role}"])


@pytest.mark.parametrize("mode", list(REVISIONS))
@pytest.mark.parametrize("role", list(ROLES))
async def test_each_role_is_offered_and_may_call_only_its_tools(
    oauth_url: str, issuer: str, signing_key: rsa.RSAPrivateKey, provider: ProviderState, role: str, mode: str
) -> None:
    token = role_token(signing_key, issuer, oauth_url, role)
    async with connect(oauth_url, token, mode) as client:
        listed = [tool.name for tool in (await client.list_tools()).tools]
        assert listed == offered_to(role)
        for tool in offered_to(role):
            result = await client.call_tool(tool, ARGUMENTS[tool])
            assert not result.is_error, (tool, result.content)
    for tool in TOOLS:
        if tool in offered_to(role):
            continue
        before = len(provider.requests)
        answer = await raw_call(oauth_url, token, tool, REVISIONS[mode])
        assert answer.status_code == 403, (tool, answer.text)
        challenge = answer.headers["www-authenticate"]
        assert challenge.startswith('Bearer error="insufficient_scope"')
        assert f'scope="vps-snapshots {SCOPE_OF[tool]}"' in challenge
        assert f'resource_metadata="{oauth_url}/.well-known/oauth-protected-resource/mcp"' in challenge
        assert answer.json()["scope"] == SCOPE_OF[tool]
        assert provider.requests[before:] == [], f"{tool} reached the provider for {role}"


async def test_a_refused_call_through_the_sdk_client_reaches_nothing(
    oauth_url: str, issuer: str, signing_key: rsa.RSAPrivateKey, provider: ProviderState
) -> None:
    token = role_token(signing_key, issuer, oauth_url, "viewer")
    async with connect(oauth_url, token, "auto") as client:
        before = len(provider.requests)
        with pytest.raises(Exception):  # noqa: B017, PT011 - the SDK client's form of an HTTP 403
            await client.call_tool("delete_snapshot", {"snapshot_id": 801, "confirm": True})
    assert provider.mutations == [] and provider.requests[before:] == []


async def test_the_connect_scope_alone_grants_reads_only(
    oauth_url: str, issuer: str, signing_key: rsa.RSAPrivateKey
) -> None:
    token = mint(signing_key, iss=issuer, aud=f"{oauth_url}/mcp", scope="vps-snapshots")
    async with connect(oauth_url, token, "legacy") as client:
        assert [tool.name for tool in (await client.list_tools()).tools] == ["list_snapshots", "get_snapshot"]
    assert (await raw_call(oauth_url, token, "create_snapshot", "2025-11-25")).status_code == 403


async def test_the_old_behaviour_is_one_setting_away(
    serve: ServeFn, issuer: str, signing_key: rsa.RSAPrivateKey
) -> None:
    everything = tuple(ROLES["admin"])
    oauth = {"oauth_jwks_url": f"{issuer}/jwks.json", "oauth_issuer": issuer, "oauth_default_scopes": everything}
    with serve(public_url=lambda base: f"{base}/mcp", **oauth) as url:
        token = mint(signing_key, iss=issuer, aud=f"{url}/mcp", scope="vps-snapshots")
        async with connect(url, token, "legacy") as client:
            assert [tool.name for tool in (await client.list_tools()).tools] == list(TOOLS)


# --- named static tokens ------------------------------------------------------------------------------------

ALICE = "alice-token-0123456789abcdef"
BOT = "bot-token-0123456789abcdefgh"
ALICE_NEXT = "alice-token-rotated-0123456789"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_toml(entries: dict[str, tuple[str, list[str]]]) -> str:
    return "".join(
        f'[tokens.{name}]\nsha256 = "{digest(token)}"\nscopes = {scopes!r}\n\n'.replace("'", '"')
        for name, (token, scopes) in entries.items()
    )


def write_later(path: Path, text: str) -> None:
    """Write `text`, its modification time a few seconds on: a change the server notices within a second."""
    path.write_text(text)
    later = time.time() + 5
    os.utime(path, (later, later))


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(tokens_toml({"alice": (ALICE, ROLES["admin"]), "deploy-bot": (BOT, ["snapshots:read"])}))
    return path


async def tools_of(url: str, token: str) -> list[str] | int:
    try:
        async with connect(url, token, "legacy") as client:
            return [tool.name for tool in (await client.list_tools()).tools]
    except Exception:  # a refused token: the status tells
        async with httpx2.AsyncClient(timeout=30) as http:
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
            return (await http.post(f"{url}/mcp", json=body, headers=headers)).status_code


async def test_named_tokens_each_have_their_own_scopes(
    serve: ServeFn, tokens_file: Path, provider: ProviderState
) -> None:
    with serve(auth_tokens_file=str(tokens_file)) as url:
        assert await tools_of(url, ALICE) == list(TOOLS)
        assert await tools_of(url, BOT) == ["list_snapshots", "get_snapshot"]
        assert await tools_of(url, "not-a-token-0123456789abcdef") == 401
        before = len(provider.requests)
        for version in REVISIONS.values():
            answer = await raw_call(url, BOT, "delete_snapshot", version)
            assert answer.status_code == 403
            challenge = answer.headers["www-authenticate"]
            assert 'error="insufficient_scope", scope="snapshots:delete"' in challenge
            assert "resource_metadata" not in challenge  # no OAuth: no metadata to point at
        assert provider.requests[before:] == []


class Seconds:
    """A monotonic clock the test moves: the server looks at the tokens file at most once a second of it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_rotation_takes_effect_without_a_restart(serve: ServeFn, tokens_file: Path) -> None:
    seconds = Seconds()
    with serve(auth_tokens_file=str(tokens_file), timing=Timing(monotonic=seconds)) as url:
        assert await tools_of(url, ALICE) == list(TOOLS)
        write_later(tokens_file, tokens_toml({"alice": (ALICE_NEXT, ROLES["admin"]), "deploy-bot": (BOT, [])}))
        assert await tools_of(url, ALICE) == list(TOOLS)  # not looked at again within the second
        seconds.now += 1.0
        assert await tools_of(url, ALICE) == 401
        assert await tools_of(url, ALICE_NEXT) == list(TOOLS)
        assert await tools_of(url, BOT) == []


async def test_a_broken_tokens_file_keeps_the_last_good_one(
    serve: ServeFn, tokens_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seconds = Seconds()
    with serve(auth_tokens_file=str(tokens_file), timing=Timing(monotonic=seconds)) as url:
        write_later(tokens_file, '[tokens.alice]\nsha256 = "not hex"\nscopes = []\n')
        seconds.now += 1.0
        with caplog.at_level("ERROR"):
            assert await tools_of(url, ALICE) == list(TOOLS)
        assert any("sha256 must be" in record.getMessage() for record in caplog.records)


def test_a_broken_tokens_file_at_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "tokens.toml"
    path.write_text("[tokens.alice\n")
    env = {**os.environ, "VPS_API_TOKEN": "x" * 20, "VPS_MCP_AUTH_TOKENS_FILE": str(path)}
    done = subprocess.run(
        [sys.executable, "-m", "vps_snapshots_mcp", "serve", "--transport", "http", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "tokens file" in lines[0] and "not valid TOML" in lines[0], done.stderr


def test_a_tokens_file_with_oauth_is_refused() -> None:
    from pydantic import SecretStr

    from vps_snapshots_mcp.settings import Settings

    with pytest.raises(SettingsError, match="choose one client authentication"):
        Settings(
            api_token=SecretStr("x" * 20),
            transport="http",
            auth_tokens_file="/nonexistent",
            oauth_jwks_url="https://issuer.example/jwks.json",
            oauth_issuer="https://issuer.example",
            public_url="https://mcp.example/mcp",
        )


# --- the policy's answers, without a transport ----------------------------------------------------------------


def test_the_access_policy_answers_from_the_principals_scopes() -> None:
    from vps_snapshots_mcp.access import AccessPolicy
    from vps_snapshots_mcp.errors import ForbiddenError
    from vps_snapshots_mcp.protocol.principal import Principal, current_principal

    viewer = Principal(kind="token", id="viewer", scopes=frozenset({"snapshots:read"}))
    everyone = current_principal()  # no request: the local process, every scope
    policy = AccessPolicy()
    assert policy.allowed_actions(viewer) == {"read"}
    assert policy.allowed_actions(everyone) == {"read", "create", "restore", "delete"}
    assert AccessPolicy(no_destructive=True).allowed_actions(everyone) == {"read", "create"}
    assert policy.missing_scope("delete_snapshot", viewer) == "snapshots:delete"
    assert policy.missing_scope("list_snapshots", viewer) is None
    with pytest.raises(ForbiddenError, match="needs the scope snapshots:create"):
        policy.check_call("create_snapshot", viewer)
    connect_only = Principal(kind="oauth", id="iss#sub", scopes=frozenset({"vps-snapshots"}))
    assert policy.allowed_actions(connect_only) == {"read"}
    assert policy.allowed_actions(Principal(kind="token", id="none", scopes=frozenset())) == frozenset()


def test_the_local_principal_is_the_os_user_and_consent_stays_bound_to_the_process() -> None:
    import getpass

    from vps_snapshots_mcp.protocol.principal import current_principal

    local = current_principal()
    assert local.kind == "local" and local.id == getpass.getuser()
    assert local.key.startswith(f"local:{os.getpid()}-")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[tokens.a\n", "not valid TOML"),
        ("", "no [tokens.NAME] tables"),
        ('[tokens.a]\nsha256 = "abc"\nscopes = []\n', "sha256 must be"),
        (f'[tokens.a]\nsha256 = "{"0" * 64}"\nscopes = ["snapshots:everything"]\n', "unknown scope"),
        (f'[tokens.a]\nsha256 = "{"0" * 64}"\nscopes = []\ntoken = "x"\n', "unknown key 'token'"),
        (f'[tokens.a]\nsha256 = "{"0" * 64}"\nscopes = []\n[tokens.b]\nsha256 = "{"0" * 64}"\nscopes = []\n', "same"),
    ],
)
def test_a_broken_tokens_file_says_where_and_why(text: str, reason: str) -> None:
    from vps_snapshots_mcp.protocol.tokens_file import parse_tokens

    with pytest.raises(SettingsError, match=r"tokens file t\.toml") as caught:
        parse_tokens(text, "t.toml")
    assert reason in str(caught.value)
