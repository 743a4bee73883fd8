"""The approval page's sign-in against a REAL OpenID Connect provider (npm `oidc-provider` on Node 22), over plain
HTTP: people sign in with their password at the provider's login form, the server keeps a session in its ledger.

And what must not work: a wrong or replayed `state`, a code without its PKCE verifier, a forged or expired session,
a session after sign-out, a sign-out without its CSRF token, an off-site `next`; the session cookie and the client
secret never appear in a log line or a page.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.state.memory import MemoryLedger

from .support.clocks import WallClock
from .support.oidc import GROUPS, USERS
from .support.redis_server import RedisServer
from .support.signin_http import session_cookie, sign_in_over_http
from .support.signin_serving import Deployment, signin_deployment

pytestmark = pytest.mark.slow


@pytest.fixture
def deployment(provider: ProviderState, tmp_path: Path) -> Iterator[Deployment]:
    with signin_deployment(provider, tmp_path) as running:
        yield running


def browser(**cookies: str) -> httpx2.Client:
    """A client that keeps cookies and shows every redirect; `cookies` by name (`vps_approve` for vps-approve)."""
    return httpx2.Client(
        timeout=20, follow_redirects=False, cookies={k.replace("_", "-"): v for k, v in cookies.items()}
    )


def sign_in(http: httpx2.Client, deployment: Deployment, user: str = "alice") -> None:
    callback = sign_in_over_http(http, deployment.url, deployment.idp, user)
    answer = http.get(callback)
    assert answer.status_code == 303 and answer.headers["location"] == "/approve/", answer.text


def test_alice_signs_in_and_the_landing_page_says_alice(deployment: Deployment) -> None:
    with browser() as http:
        callback = sign_in_over_http(http, deployment.url, deployment.idp, "alice")
        answer = http.get(callback)
        assert answer.status_code == 303 and answer.headers["location"] == "/approve/"
        cookie = answer.headers["set-cookie"]
        assert "vps-approve=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # the public URL is http:// (loopback); https:// adds Secure and __Host-
        page = http.get(f"{deployment.url}/approve/")
        assert page.status_code == 200
        assert "Signed in as <strong>Alice</strong> (alice at http://127.0.0.1" in page.text
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "form-action 'self'" in policy
        assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store" and page.headers["x-content-type-options"] == "nosniff"


def test_a_wrong_password_signs_nobody_in(deployment: Deployment) -> None:
    with browser() as http:
        start = http.get(f"{deployment.url}/approve/login")
        with pytest.raises(AssertionError, match="refused the password"):
            deployment.idp.follow_login(http, start, "alice", "not-her-password")
        assert http.get(f"{deployment.url}/approve/").status_code == 303  # still sent to sign in


def test_nobody_signed_in_is_sent_to_sign_in(deployment: Deployment) -> None:
    with browser() as http:
        answer = http.get(f"{deployment.url}/approve/")
        assert answer.status_code == 303 and answer.headers["location"] == "/approve/login?next=/approve/"
    with browser(vps_approve=secrets.token_urlsafe(32)) as forger:
        assert forger.get(f"{deployment.url}/approve/").status_code == 303


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_a_callback_with_a_wrong_state_is_refused_and_a_replayed_one_too(deployment: Deployment) -> None:
    with browser() as http:
        callback = sign_in_over_http(http, deployment.url, deployment.idp, "alice")
        login_cookie = str(http.cookies.get("vps-approve-login"))
        wrong = http.get(with_query(callback, state=secrets.token_urlsafe(32)))
        assert wrong.status_code == 400 and "not for this sign-in" in wrong.text
        assert "vps-approve=" not in wrong.headers.get("set-cookie", "")
        assert http.get(f"{deployment.url}/approve/").status_code == 303  # nobody signed in
        http.cookies.set("vps-approve-login", login_cookie)  # a wrong answer spent nothing: the real one works
        assert http.get(callback).status_code == 303
    with browser(vps_approve_login=login_cookie) as replayer:
        replayed = replayer.get(callback)
        assert replayed.status_code == 400 and "vps-approve=" not in replayed.headers.get("set-cookie", "")


def test_an_answer_delivered_to_another_browser_is_refused(deployment: Deployment) -> None:
    with browser() as victim, browser() as attacker:
        callback = sign_in_over_http(attacker, deployment.url, deployment.idp, "bob")
        answer = victim.get(callback)  # login CSRF: bob's code pushed into alice's browser
        assert answer.status_code == 400 and "not started in this browser" in answer.text
        assert victim.get(f"{deployment.url}/approve/").status_code == 303


def test_a_code_without_its_pkce_verifier_is_worthless(deployment: Deployment) -> None:
    with browser() as http:
        callback = sign_in_over_http(http, deployment.url, deployment.idp, "alice")
        code = parse_qs(urlsplit(callback).query)["code"][0]
        client = deployment.client
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uris[0]}
        stolen = httpx2.post(f"{deployment.idp.issuer}/token", data=form, auth=(client.client_id, client.client_secret))
        assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant", stolen.text
        guessed = httpx2.post(
            f"{deployment.idp.issuer}/token",
            data=form | {"code_verifier": secrets.token_urlsafe(48)},
            auth=(client.client_id, client.client_secret),
        )
        assert guessed.status_code == 400, guessed.text


@pytest.mark.parametrize(
    "next_path",
    ["https://evil.example/approve/", "//evil.example/approve/", "/approve/../mcp", "/elsewhere", "/approve/\\evil"],
)
def test_a_sign_in_never_leads_off_the_approval_pages(deployment: Deployment, next_path: str) -> None:
    answer = httpx2.get(f"{deployment.url}/approve/login", params={"next": next_path})
    assert answer.status_code == 400 and "location" not in answer.headers


def test_a_sign_in_leads_back_to_the_approval_page_it_came_from(deployment: Deployment) -> None:
    with browser() as http:
        callback = sign_in_over_http(http, deployment.url, deployment.idp, "bob", next_path="/approve/abc-123_x")
        assert http.get(callback).headers["location"] == "/approve/abc-123_x"


def test_sign_out_needs_its_csrf_token_and_ends_the_session(deployment: Deployment) -> None:
    with browser() as http:
        sign_in(http, deployment)
        cookie = session_cookie(http)
        assert http.post(f"{deployment.url}/approve/logout", data={}).status_code == 403
        assert http.post(f"{deployment.url}/approve/logout", data={"csrf": "0" * 64}).status_code == 403
        assert http.get(f"{deployment.url}/approve/").status_code == 200  # still signed in
        page = http.get(f"{deployment.url}/approve/").text
        token = page.split('name="csrf" value="')[1].split('"')[0]
        out = http.post(f"{deployment.url}/approve/logout", data={"csrf": token})
        assert out.status_code == 200 and "signed out" in out.text
    with browser(vps_approve=cookie) as replayer:
        assert replayer.get(f"{deployment.url}/approve/").status_code == 303  # the old cookie is worth nothing now


def test_an_expired_session_is_refused(provider: ProviderState, tmp_path: Path) -> None:
    wall = WallClock()
    wall.now = time.time()
    ledger = MemoryLedger(wall=wall)
    with signin_deployment(provider, tmp_path, ledger=ledger) as deployment, browser() as http:
        sign_in(http, deployment)
        wall.now += 29 * 60
        assert http.get(f"{deployment.url}/approve/").status_code == 200  # used: the idle expiry moves on
        wall.now += 31 * 60
        assert http.get(f"{deployment.url}/approve/").status_code == 303  # idle 31 minutes


def test_the_cookie_and_the_client_secret_never_reach_a_log_line(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with browser() as http:
        sign_in(http, deployment)
        cookie = session_cookie(http)
        http.get(f"{deployment.url}/approve/")
    # The test's own HTTP client logs in this process too (httpx2, httpcore2): its lines are the browser's, not the
    # server's. The replicas' test reads every line of whole server processes.
    server_lines = [r for r in caplog.records if not r.name.startswith(("httpcore2", "httpx2"))]
    logged = "\n".join(record.getMessage() for record in server_lines)
    assert "signed in on the approval page" in logged  # the log is there, and says who
    assert cookie not in logged and deployment.client.client_secret not in logged


def test_a_wrong_client_secret_is_never_shown(provider: ProviderState, tmp_path: Path) -> None:
    wrong = "wrong-secret-" + secrets.token_urlsafe(16)
    with (
        signin_deployment(provider, tmp_path, approval_client_secret=SecretStr(wrong)) as deployment,
        browser() as http,
    ):
        callback = sign_in_over_http(http, deployment.url, deployment.idp, "alice")
        answer = http.get(callback)
        assert answer.status_code == 400 and "did not accept this sign-in" in answer.text
        assert wrong not in answer.text and deployment.client.client_secret not in answer.text


@pytest.mark.anyio
async def test_the_kits_access_tokens_are_accepted_by_the_mcp_server(deployment: Deployment) -> None:
    token = deployment.idp.access_token("alice", ["vps-snapshots", "snapshots:read"])
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(streamable_http_client(f"{deployment.url}/mcp", http_client=http)) as client,
    ):
        listed = await client.call_tool("list_snapshots", {})
        assert not listed.is_error
        assert [tool.name for tool in (await client.list_tools()).tools] == ["list_snapshots", "get_snapshot"]
    assert set(USERS) == {"alice", "bob"}


def test_the_person_signed_in_carries_the_issuers_groups_and_the_mcp_principal_key(deployment: Deployment) -> None:
    from starlette.requests import Request

    assert deployment.composition is not None and deployment.composition.signin is not None
    with browser() as http:
        sign_in(http, deployment, "bob")
        cookie = session_cookie(http)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/approve/",
        "headers": [(b"cookie", f"vps-approve={cookie}".encode())],
    }
    person = anyio.run(deployment.composition.signin.signed_in, Request(scope))
    assert person is not None
    assert (person.subject, person.name, person.groups) == ("bob", "Bob", frozenset(GROUPS["bob"]))
    assert person.principal_key == f"oauth:{deployment.idp.issuer}#bob"  # test_signin_id_token: = the MCP caller's


def test_a_new_sign_in_ends_the_session_the_browser_had(deployment: Deployment) -> None:
    with browser() as http:
        sign_in(http, deployment, "alice")
        first = session_cookie(http)
        sign_in(http, deployment, "alice")  # the provider's own session signs her in again without its form
        assert session_cookie(http) != first
        assert "Signed in as <strong>Alice</strong>" in http.get(f"{deployment.url}/approve/").text
    with browser(vps_approve=first) as old:
        assert old.get(f"{deployment.url}/approve/").status_code == 303


def test_an_unreachable_identity_provider_is_said_plainly(provider: ProviderState, tmp_path: Path) -> None:
    with signin_deployment(provider, tmp_path, approval_issuer="http://127.0.0.1:9") as deployment:
        answer = httpx2.get(f"{deployment.url}/approve/login")
        assert answer.status_code == 502 and "identity provider cannot be reached" in answer.text


@pytest.mark.anyio
async def test_the_access_tokens_carry_the_users_groups(deployment: Deployment) -> None:
    import jwt

    token = deployment.idp.access_token("bob", ["vps-snapshots", "snapshots:read"])
    assert jwt.decode(token, options={"verify_signature": False})["groups"] == GROUPS["bob"]


def test_a_ledger_out_of_reach_is_said_plainly(
    provider: ProviderState, tmp_path: Path, redis_server: RedisServer
) -> None:
    with signin_deployment(provider, tmp_path, state_url=redis_server.url) as deployment, browser() as http:
        sign_in(http, deployment)
        assert http.get(f"{deployment.url}/approve/").status_code == 200
        redis_server.stop()
        answer = http.get(f"{deployment.url}/approve/")
        assert answer.status_code == 503 and "cannot reach its state" in answer.text
