"""The approval page over plain HTTP (what the model, a script or another site can do with the link), against the
REAL identity provider: the server with `--consent url` and its sign-in, the SDK's client asking as alice (a
client without URL elicitation: the preview carries the link and `approval.<id>`), the IdP's login form filled
over HTTP. Every test asserts what reached the provider. The browser itself: `test_approval_page_browser.py`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx2
import pytest

from vps_snapshots_mcp.protocol.web.pages import inert, shown
from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.timing import Timing

from .support.approvals import DELETE_798, Shifted, approval_id_of, connect, delete_798, mutations, preview_798
from .support.mcp_client import text_of
from .support.signin_http import sign_in_over_http
from .support.signin_serving import Deployment, signin_deployment

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def clock() -> Shifted:
    return Shifted()


@pytest.fixture
def deployment(provider: ProviderState, tmp_path: Path, clock: Shifted) -> Iterator[Deployment]:
    with signin_deployment(provider, tmp_path, consent="url", approval_expiry=60, timing=Timing(now=clock)) as up:
        yield up


@contextmanager
def signed_in(deployment: Deployment, user: str, next_path: str) -> Iterator[httpx2.Client]:
    """A cookie-keeping HTTP client signed in as `user`, on `next_path` (the callback followed)."""
    with httpx2.Client(timeout=20, follow_redirects=False) as http:
        callback = sign_in_over_http(http, deployment.url, deployment.idp, user, next_path=next_path)
        back = http.get(callback)
        assert back.status_code == 303 and back.headers["location"] == next_path, back.text
        yield http


def csrf_of(page: httpx2.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


async def asked_by_alice(deployment: Deployment) -> tuple[str, str]:
    """Alice's client (no URL elicitation) previews deleting snapshot 798: the link, and the approval's token."""
    async with connect(deployment.url, deployment.idp.access_token("alice")) as model:
        preview = await preview_798(model)
    link = preview["warning"].split("open in their browser: ", 1)[1].split(" ", 1)[0]
    assert preview["confirmation_token"] == "approval." + approval_id_of(link)
    return link, preview["confirmation_token"]


async def test_the_link_without_a_session_leads_to_sign_in_and_changes_nothing(
    deployment: Deployment, provider: ProviderState
) -> None:
    link, token = await asked_by_alice(deployment)
    path = link.removeprefix(deployment.url)
    with httpx2.Client(timeout=20, follow_redirects=False) as model:  # the model fetches the link itself
        answer = model.get(link)
        assert answer.status_code == 303 and answer.headers["location"] == f"/approve/login?next={path}"
        assert "delete" not in answer.text.lower()  # nothing of the plan without signing in
        posted = model.post(link, data={"decision": "approve", "csrf": "x" * 64})
        assert posted.status_code == 403 and "Nothing has changed" in posted.text
    async with connect(deployment.url, deployment.idp.access_token("alice")) as model_again:
        refused = await delete_798(model_again, token)
    assert refused.is_error and "has not been given yet" in text_of(refused)
    assert mutations(provider) == []


async def test_alice_approves_over_http_with_the_csrf_token_and_the_delete_runs_once(
    deployment: Deployment, provider: ProviderState
) -> None:
    link, token = await asked_by_alice(deployment)
    path = link.removeprefix(deployment.url)
    with signed_in(deployment, "alice", path) as alice:
        page = alice.get(link)
        assert page.status_code == 200
        headers = page.headers
        assert "default-src 'none'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src" not in headers["content-security-policy"]  # default-src 'none': no script at all
        assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
        assert "<script" not in page.text.lower()
        assert re.search(r"\son\w+=", page.text) is None  # no inline handler either
        assert '<strong id="action">DELETE</strong>' in page.text and "Destructive: DELETE" in page.text
        assert '<span id="snapshot-id">798</span>' in page.text and '<span id="requester">you</span>' in page.text
        csrf = csrf_of(page)
        # the model's or another site's attempts: no token, a wrong one, a foreign origin -> 403, nothing decided
        for data, extra in (
            ({"decision": "approve"}, {}),
            ({"decision": "approve", "csrf": "0" * 64}, {}),
            ({"decision": "approve", "csrf": csrf}, {"Origin": "https://evil.example"}),
            ({"decision": "approve", "csrf": csrf}, {"Sec-Fetch-Site": "same-site"}),
        ):
            refused = alice.post(link, data=data, headers=extra)
            assert refused.status_code == 403 and "Nothing has changed" in refused.text, refused.text
        assert 'id="status">pending<' in alice.get(link).text
        assert mutations(provider) == []
        same_origin = {"Origin": deployment.url, "Sec-Fetch-Site": "same-origin"}
        approved = alice.post(link, data={"decision": "approve", "csrf": csrf}, headers=same_origin)
        assert approved.status_code == 200 and "You approved" in approved.text, approved.text
        replayed = alice.post(link, data={"decision": "approve", "csrf": csrf})
        assert replayed.status_code == 403 and "Nothing was decided" in replayed.text
    async with connect(deployment.url, deployment.idp.access_token("alice")) as model:
        done = await delete_798(model, token)
        assert not done.is_error, text_of(done)
        again = await delete_798(model, token)  # a replayed client retry
        assert again.is_error
    assert mutations(provider) == DELETE_798


async def test_the_list_shows_what_the_person_may_decide_and_unknown_or_expired_ids_say_so(
    deployment: Deployment, provider: ProviderState, clock: Shifted
) -> None:
    link, _ = await asked_by_alice(deployment)
    approval_id = approval_id_of(link)
    with signed_in(deployment, "alice", "/approve/") as alice:
        listing = alice.get(f"{deployment.url}/approve/")
        assert listing.status_code == 200 and f'href="/approve/{approval_id}"' in listing.text
        unknown = alice.get(f"{deployment.url}/approve/{'A' * 43}")
        assert unknown.status_code == 404 and "No such approval" in unknown.text
        assert "content-security-policy" in unknown.headers
        clock.offset += timedelta(seconds=61)  # the approval's 60 s pass
        expired = alice.get(link)
        assert expired.status_code == 410 and 'id="status">expired<' in expired.text
        assert 'id="approve"' not in expired.text
        assert f'href="/approve/{approval_id}"' not in alice.get(f"{deployment.url}/approve/").text
    with signed_in(deployment, "bob", "/approve/") as bob:  # not his, unprotected server: nothing to decide
        assert "Nothing is waiting for you." in bob.get(f"{deployment.url}/approve/").text
    assert mutations(provider) == []


def test_provider_strings_are_escaped_and_made_inert() -> None:
    hostile = 'x<script>alert(1)</script>\u202egnp.exe\u2066"&'
    assert inert(hostile) == 'x<script>alert(1)</script>\\u202egnp.exe\\u2066"&'
    html = shown(hostile)
    assert html == "<bdi>x&lt;script&gt;alert(1)&lt;/script&gt;\\u202egnp.exe\\u2066&quot;&amp;</bdi>"
    assert "\u202e" not in html and "<script" not in html
    assert shown(None) == "<em>(not given)</em>" and shown("") == "<em>(not given)</em>"
