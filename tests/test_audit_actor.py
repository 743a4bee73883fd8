"""Each audit line names who asked (the actor), through which request, and in which W3C trace.

The actor is the caller's principal as the trail names it: the OS user for stdio, the static token's
digest identity (never the token), a named token's name, the OAuth issuer and subject with the client id.
Driven through real transports: stdio (a real process), HTTP in a thread with the static token (raw
JSON-RPC, so the request id and `_meta` are the test's own) and with OAuth (a real JWT from a local JWKS).
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import RequestParamsMeta
from pydantic import SecretStr

from vps_snapshots_mcp.audit import Actor, AuditLog, record_denial, trace_id_of
from vps_snapshots_mcp.audit_chain import verify
from vps_snapshots_mcp.protocol.principal import (
    Principal,
    reset_static_token_principal,
    set_static_token_principal,
    static_token_principal,
)

from .support.http_serving import ServeFn, mint
from .support.raw_http import events, open_session
from .support.world import NOW, TOKEN, ServerFactory

pytestmark = pytest.mark.anyio

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
AUTH_TOKEN = "client-auth-token-0123456789abcdef"


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def carrying(traceparent: str) -> RequestParamsMeta:
    """A request's `_meta` with a W3C `traceparent`, as an MCP client propagates it (an open map)."""
    return cast(RequestParamsMeta, {"traceparent": traceparent})


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


# --- the W3C trace id: strictly parsed, anything malformed ignored ------------------------------------------


def test_a_valid_traceparent_gives_its_trace_id() -> None:
    assert trace_id_of({"traceparent": TRACEPARENT}) == TRACE
    assert trace_id_of({"traceparent": f"01-{TRACE}-00f067aa0ba902b7-01-later-fields"}) == TRACE  # a later version


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        "",
        TRACEPARENT.upper(),  # hex is lower case
        f"00-{TRACE}-00f067aa0ba902b7-01-extra",  # version 00 has four fields
        f"ff-{TRACE}-00f067aa0ba902b7-01",  # version ff is invalid
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE[:-1]}-00f067aa0ba902b7-01",
        f"00-{TRACE}g-00f067aa0ba902b7-01",
        f" {TRACEPARENT}",
        f"{TRACEPARENT}\n",
        f"01-{TRACE}-00f067aa0ba902b7-01-{'x' * 600}",  # absurdly long
    ],
)
def test_a_malformed_traceparent_is_ignored(value: object) -> None:
    assert trace_id_of({"traceparent": value}) is None
    assert trace_id_of(None) is None and trace_id_of({}) is None


# --- in process: the request id, the trace id, a named principal, a denial --------------------------------


async def test_a_call_records_its_request_id_and_the_trace_of_its_meta(
    make_server: ServerFactory, audit_path: Path
) -> None:
    async with Client(make_server(audit_log=str(audit_path))) as client:
        traced, malformed = carrying(TRACEPARENT), carrying("00-bad")
        await client.call_tool("create_snapshot", {"server_id": 12345, "name": "a"}, meta=traced)
        await client.call_tool("create_snapshot", {"server_id": 12345, "name": "b"})
        await client.call_tool("create_snapshot", {"server_id": 12345, "name": "c"}, meta=malformed)
    first, second, third = records(audit_path)
    assert (first["trace_id"], second["trace_id"], third["trace_id"]) == (TRACE, None, None)
    ids = [line["request_id"] for line in (first, second, third)]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 3
    local = {"kind": "local", "id": getpass.getuser(), "client_id": None}
    assert first["actor"] == second["actor"] == local


async def test_a_named_principal_is_named_by_its_name(make_server: ServerFactory, audit_path: Path) -> None:
    handle = set_static_token_principal(Principal(kind="token", id="deploy-bot"))  # as the tokens file would
    try:
        async with Client(make_server(audit_log=str(audit_path), allowed_servers=frozenset({12345}))) as client:
            await client.call_tool("create_snapshot", {"server_id": 12345, "name": "nightly"})
            refused = await client.call_tool("create_snapshot", {"server_id": 34567, "name": "elsewhere"})
    finally:
        reset_static_token_principal(handle)
    assert refused.is_error
    made, denied = records(audit_path)
    assert made["actor"] == denied["actor"] == {"kind": "token", "id": "deploy-bot", "client_id": None}
    assert (denied["outcome"], denied["error_code"], denied["server_id"]) == ("refused", "forbidden", 34567)


async def test_a_denial_before_any_tool_runs_is_recorded_with_its_actor(audit_path: Path) -> None:
    log = AuditLog(str(audit_path), now=lambda: NOW)
    actor = Actor.of(Principal(kind="oauth", id="https://issuer.test#viewer-1", client_id="assistant"))
    await record_denial(log, "delete_snapshot", actor, "insufficient_scope", request_id=7, trace_id=TRACE)
    await record_denial(log, "restore_snapshot", actor, "forbidden", request_id="x" * 500, snapshot_id=801)
    await record_denial(None, "delete_snapshot", actor, "forbidden")  # no trail: nothing, and no error
    log.close()
    first, second = records(audit_path)
    assert {k: first[k] for k in ("tool", "outcome", "error_code", "request_id", "trace_id")} == {
        "tool": "delete_snapshot",
        "outcome": "refused",
        "error_code": "insufficient_scope",
        "request_id": 7,
        "trace_id": TRACE,
    }
    assert first["actor"] == {"kind": "oauth", "id": "https://issuer.test#viewer-1", "client_id": "assistant"}
    assert (second["request_id"], second["snapshot_id"]) == ("x" * 128, 801)
    assert verify(audit_path.read_bytes()).ok


# --- stdio: the OS user running the server ------------------------------------------------------------------


@pytest.mark.slow
async def test_over_stdio_the_actor_is_the_os_user(served_provider: str, tmp_path: Path, audit_path: Path) -> None:
    parameters = StdioServerParameters(
        command=sys.executable,
        args=["-m", "vps_snapshots_mcp", "--audit-log", str(audit_path)],
        env={"VPS_API_URL": served_provider, "VPS_API_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
    )
    with (tmp_path / "stderr").open("w") as stderr:
        async with Client(stdio_client(parameters, errlog=stderr)) as client:
            await client.call_tool("create_snapshot", {"server_id": 12345, "name": "over-stdio"})
    [line] = records(audit_path)
    assert line["actor"] == {"kind": "local", "id": getpass.getuser(), "client_id": None}
    assert isinstance(line["request_id"], int)


# --- HTTP: the static token (never the token itself), OAuth -------------------------------------------------


@pytest.fixture
def static_token_server(serve: ServeFn, audit_path: Path) -> Iterator[str]:
    with serve(auth_token=SecretStr(AUTH_TOKEN), audit_log=str(audit_path)) as url:
        yield url


@pytest.mark.slow
def test_the_static_token_is_named_by_its_identity_with_the_request_and_trace(
    static_token_server: str, audit_path: Path
) -> None:
    with httpx2.Client(headers={"Authorization": f"Bearer {AUTH_TOKEN}"}, timeout=30) as http:
        headers = open_session(http, static_token_server)
        call = {
            "jsonrpc": "2.0", "id": "req-42", "method": "tools/call",
            "params": {
                "name": "create_snapshot", "arguments": {"server_id": 12345, "name": "over-http"},
                "_meta": {"traceparent": TRACEPARENT},
            },
        }  # fmt: skip
        with http.stream("POST", f"{static_token_server}/mcp", json=call, headers=headers) as answer:
            assert answer.status_code == 200
            [message] = [event["data"] for event in events(answer) if event.get("data")]
        assert message["id"] == "req-42" and not message["result"].get("isError"), message
    [line] = records(audit_path)
    identity = static_token_principal(AUTH_TOKEN.encode()).id
    assert line["actor"] == {"kind": "token", "id": identity, "client_id": None}
    assert (line["request_id"], line["trace_id"]) == ("req-42", TRACE)
    assert AUTH_TOKEN not in audit_path.read_text()


@pytest.mark.slow
async def test_an_oauth_caller_is_named_by_issuer_subject_and_client(
    serve: ServeFn, issuer: str, signing_key: rsa.RSAPrivateKey, audit_path: Path
) -> None:
    with serve(
        oauth_jwks_url=f"{issuer}/jwks.json",
        oauth_issuer=issuer,
        public_url=lambda base: f"{base}/mcp",
        audit_log=str(audit_path),
    ) as url:
        token = mint(signing_key, iss=issuer, aud=f"{url}/mcp", scope="vps-snapshots snapshots:create")
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
            Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
        ):
            await client.call_tool("create_snapshot", {"server_id": 12345, "name": "with-oauth"})
    [line] = records(audit_path)
    assert line["actor"] == {"kind": "oauth", "id": f"{issuer}#operator-7", "client_id": "assistant"}
    assert token not in audit_path.read_text()


async def test_a_read_refused_for_permission_is_recorded_and_other_reads_are_not(
    make_server: ServerFactory, audit_path: Path
) -> None:
    async with Client(make_server(audit_log=str(audit_path), allowed_servers=frozenset({12345}))) as client:
        assert not (await client.call_tool("list_snapshots", {"server_id": 12345})).is_error
        refused = await client.call_tool("list_snapshots", {"server_id": 34567})
        missing = await client.call_tool("get_snapshot", {"snapshot_id": 424242})
    assert refused.is_error and missing.is_error
    [line] = records(audit_path)  # a denial is audited whatever the tool; a read allowed, or not found, is not
    assert (line["tool"], line["outcome"], line["error_code"], line["server_id"]) == (
        "list_snapshots",
        "refused",
        "forbidden",
        34567,
    )
    assert line["actor"] == {"kind": "local", "id": getpass.getuser(), "client_id": None}


@pytest.mark.slow
async def test_a_call_refused_for_its_scope_at_the_http_layer_is_audited_with_its_actor(
    serve: ServeFn, issuer: str, signing_key: rsa.RSAPrivateKey, audit_path: Path
) -> None:
    # The 403 step-up refuses before any tool runs; the denial still names who asked, in which request and trace.
    with serve(
        oauth_jwks_url=f"{issuer}/jwks.json",
        oauth_issuer=issuer,
        public_url=lambda base: f"{base}/mcp",
        audit_log=str(audit_path),
    ) as url:
        token = mint(signing_key, iss=issuer, aud=f"{url}/mcp", scope="vps-snapshots")  # reads only
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        call = {
            "jsonrpc": "2.0",
            "id": "req-7",
            "method": "tools/call",
            "params": {
                "name": "delete_snapshot",
                "arguments": {"snapshot_id": 801, "confirm": True},
                "_meta": {"traceparent": traceparent},
            },
        }
        async with httpx2.AsyncClient(timeout=30) as http:
            answer = await http.post(
                f"{url}/mcp",
                json=call,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
            )
    assert answer.status_code == 403 and "snapshots:delete" in answer.headers["WWW-Authenticate"]
    [line] = records(audit_path)
    assert (line["tool"], line["outcome"], line["error_code"], line["snapshot_id"]) == (
        "delete_snapshot",
        "refused",
        "forbidden",
        801,
    )
    assert line["actor"]["kind"] == "oauth" and line["actor"]["id"] == f"{issuer}#operator-7"
    assert (line["request_id"], line["trace_id"]) == ("req-7", "4bf92f3577b34da6a3ce929d0e0e4736")
    assert token not in audit_path.read_text()
    assert verify(audit_path.read_bytes()).ok
