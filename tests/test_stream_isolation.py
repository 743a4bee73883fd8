"""A resumable stream belongs to its session and its caller: nobody else can replay it.

Each server runs as its own process (or two, sharing one Redis) behind the static bearer token, so every
session has the same principal and only the session tells them apart. Alice's session asks for a delete
preview (its answer carries a confirmation token); Bob's session, on the same server or on another replica,
sends `GET /mcp` with `Last-Event-ID` set to small integers and to Alice's own event ids, and must read
nothing of hers. Alice, resuming her own stream, still reads her own answer and no one else's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from .support.http_serving import mint
from .support.processes import http_server
from .support.raw_http import ACCEPT, VERSION, events
from .support.redis_server import RedisServer

pytestmark = pytest.mark.slow

AUTH_TOKEN = "client-auth-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {AUTH_TOKEN}"}
GUESSES = [str(n) for n in range(0, 40)]


def open_session(http: httpx2.Client, url: str, bearer: dict[str, str] = BEARER) -> dict[str, str]:
    initialize = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
    }  # fmt: skip
    answer = http.post(f"{url}/mcp", json=initialize, headers={**ACCEPT, **bearer})
    assert answer.status_code == 200, answer.text
    headers = {**ACCEPT, **bearer, "mcp-session-id": answer.headers["mcp-session-id"], "mcp-protocol-version": VERSION}
    http.post(f"{url}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers


def call(
    http: httpx2.Client, url: str, headers: dict[str, str], name: str, arguments: dict[str, Any]
) -> list[dict[str, Any]]:
    """One tools/call with request id 2 (every session uses the same id), its SSE events in full."""
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    with http.stream("POST", f"{url}/mcp", json=body, headers=headers) as response:
        assert response.status_code == 200
        return list(events(response))


def replay(http: httpx2.Client, url: str, headers: dict[str, str], last_event_id: str) -> list[dict[str, Any]]:
    """What `GET /mcp` with this Last-Event-ID sends, up to a final answer (or the end of the stream)."""
    got: list[dict[str, Any]] = []
    resume = {**headers, "Accept": "text/event-stream", "Last-Event-ID": last_event_id}
    with http.stream("GET", f"{url}/mcp", headers=resume) as response:
        if response.status_code != 200:
            return []
        for event in events(response):
            got.append(event)
            if (event.get("data") or {}).get("id") is not None:
                break
    return got


def alice_previews_a_delete(http: httpx2.Client, url: str, bearer: dict[str, str] = BEARER) -> tuple[list[str], str]:
    """Alice's delete preview: her event ids and the confirmation token her answer carries."""
    alice = open_session(http, url, bearer)
    answer = call(http, url, alice, "delete_snapshot", {"snapshot_id": 798})
    token = answer[-1]["data"]["result"]["structuredContent"]["confirmation_token"]
    assert token
    ids = [e["id"] for e in answer if "id" in e]
    assert token in json.dumps(replay(http, url, alice, ids[0]))  # Alice herself can resume it
    return ids, token


def assert_bob_reads_nothing_of_alice(
    http: httpx2.Client, url: str, alice_ids: list[str], token: str, bearer: dict[str, str] = BEARER
) -> None:
    bob = open_session(http, url, bearer)
    for last_event_id in GUESSES + alice_ids:
        got = replay(http, url, bob, last_event_id)
        assert token not in json.dumps(got), f"Last-Event-ID {last_event_id} replayed Alice's answer to Bob"
        assert [e for e in got if e.get("data")] == [], f"Last-Event-ID {last_event_id} replayed {got}"


@contextmanager
def server(state_url: str | None) -> Iterator[str]:
    environment = {"VPS_MCP_AUTH_TOKEN": AUTH_TOKEN, "VPS_MCP_SANDBOX_SECONDS": "2"}
    if state_url is not None:
        environment["VPS_MCP_STATE_URL"] = state_url
    with http_server(["--sandbox"], environment) as url:
        yield url


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_another_session_replays_nothing_of_alices_stream(store: str, tmp_path: Path) -> None:
    with (
        server(None if store == "memory" else f"sqlite:///{tmp_path}/state.db") as url,
        httpx2.Client(timeout=30) as http,
    ):
        alice_ids, token = alice_previews_a_delete(http, url)
        assert_bob_reads_nothing_of_alice(http, url, alice_ids, token)


def test_another_replica_on_the_same_redis_replays_nothing_of_alices_stream(redis_server: RedisServer) -> None:
    with ExitStack() as stack, httpx2.Client(timeout=30) as http:
        first = stack.enter_context(server(redis_server.url))
        second = stack.enter_context(server(redis_server.url))
        alice_ids, token = alice_previews_a_delete(http, first)
        assert_bob_reads_nothing_of_alice(http, second, alice_ids, token)
        assert_bob_reads_nothing_of_alice(http, first, alice_ids, token)


def test_with_oauth_another_user_replays_nothing_of_alices_stream(
    oauth_server: str,
    issuer: str,
    signing_key: rsa.RSAPrivateKey,
) -> None:
    def bearer(subject: str) -> dict[str, str]:
        scope = "vps-snapshots snapshots:read snapshots:delete"  # the connect scope alone grants reads only
        claims = {"iss": issuer, "aud": f"{oauth_server}/mcp", "scope": scope, "sub": subject}
        return {"Authorization": f"Bearer {mint(signing_key, **claims)}"}

    with httpx2.Client(timeout=30) as http:
        alice_ids, token = alice_previews_a_delete(http, oauth_server, bearer("alice"))
        assert_bob_reads_nothing_of_alice(http, oauth_server, alice_ids, token, bearer("bob"))


@pytest.mark.parametrize("store", ["memory", "sqlite", "redis"])
def test_resuming_ones_own_stream_gets_ones_own_answer_only(
    store: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    state_url = {"memory": None, "sqlite": f"sqlite:///{tmp_path}/state.db", "redis": redis_server.url}[store]
    with server(state_url) as url, httpx2.Client(timeout=30) as http:
        alice = open_session(http, url)
        bob = open_session(http, url)
        # Alice's wait drops right after its first event; Bob answers the same request id, 2, meanwhile.
        arguments = {"server_id": 12345, "name": "mine", "wait": True}
        body = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "create_snapshot", "arguments": arguments},
        }
        with http.stream("POST", f"{url}/mcp", json=body, headers=alice) as response:
            priming = next(events(response))["id"]
        call(http, url, bob, "get_snapshot", {"snapshot_id": 798})
        resumed = replay(http, url, alice, priming)
    answers = [e["data"] for e in resumed if e.get("data")]
    assert len(answers) == 1, answers
    assert answers[0]["result"]["structuredContent"].get("snapshot", {}).get("name") == "mine", answers  # not Bob's


@pytest.mark.parametrize("store", ["memory", "sqlite", "redis"])
def test_event_ids_are_not_a_guessable_sequence(store: str, tmp_path: Path, redis_server: RedisServer) -> None:
    state_url = {"memory": None, "sqlite": f"sqlite:///{tmp_path}/state.db", "redis": redis_server.url}[store]
    with server(state_url) as url, httpx2.Client(timeout=30) as http:
        headers = open_session(http, url)
        ids = [e["id"] for _ in range(3) for e in call(http, url, headers, "get_snapshot", {"snapshot_id": 798})]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert not any(i.isdigit() for i in ids)
    assert all(len(i) >= 16 for i in ids)  # at least ~96 random bits each
