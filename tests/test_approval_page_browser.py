"""End to end in a real browser: the SDK's client asks (URL elicitation hands the link to headless Chromium), the
person signs in at the REAL identity provider, reads the plan and approves or declines; what reached the provider
is asserted every time. The SDK's client runs in a thread of its own (it is async; Playwright's API is sync).
Screenshots: tests/artefacts/approval-*.png."""

from __future__ import annotations

import json
import queue
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from mcp.client.context import ClientRequestContext
from mcp_types import CallToolResult, ElicitRequestParams, ElicitRequestURLParams, ElicitResult
from playwright.sync_api import BrowserContext, Page

from vps_snapshots_mcp.protocol.web.pages import inert
from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.timing import Timing

from .support.approvals import DELETE_798, REVISIONS, Shifted, approval_id_of, connect, delete_798, mutations
from .support.browser import chromium, screenshot, sign_in
from .support.mcp_client import text_of
from .support.oidc import TYPESCRIPT_SDK, USERS, node_binary
from .support.redis_server import RedisServer
from .support.signin_serving import Deployment, replicas, signin_deployment

pytestmark = pytest.mark.slow

T = TypeVar("T")
CALL_DEADLINE_S = 90.0
POLICY = """
[approval]
protected_servers = [12345]

[[rule]]
groups = ["operators"]
servers = "all"
actions = "all"

[[rule]]
groups = ["approvers"]
servers = [12345]
actions = ["read", "approve"]
"""
"""Alice and bob are operators; bob is also an approver (the test IdP's groups): server 12345 needs four eyes."""


class ToBrowser:
    """A client's URL-elicitation callback: the URL goes to the browser (the test), the answer is accept."""

    def __init__(self) -> None:
        self.links: queue.Queue[str] = queue.Queue()

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        assert isinstance(params, ElicitRequestURLParams), params
        self.links.put(params.url)
        return ElicitResult(action="accept")

    def next_link(self) -> str:
        return self.links.get(timeout=CALL_DEADLINE_S)


@contextmanager
def in_thread(call: Callable[[], Awaitable[T]]) -> Iterator[Future[T]]:
    """`call` run on an event loop in a thread of its own; its future."""
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(anyio.run, call)


def alice_deletes(deployment: Deployment, browser: ToBrowser, mode: str, heard: list[str] | None = None) -> Any:
    async def call() -> CallToolResult:
        token = deployment.idp.access_token("alice")
        async with connect(deployment.url, token, mode=mode, browser=browser, heard=heard) as client:  # type: ignore[arg-type]
            return await delete_798(client)

    return in_thread(call)


def open_signed_in(context: BrowserContext, link: str, user: str) -> Page:
    """`link` opened in the browser: the identity provider's form filled as `user`, back on the page."""
    page = context.new_page()
    page.goto(link)
    sign_in(page, user, USERS[user])
    page.wait_for_selector("#who")
    assert page.url == link
    return page


@pytest.fixture
def clock() -> Shifted:
    return Shifted()


@pytest.fixture
def deployment(provider: ProviderState, tmp_path: Path, clock: Shifted) -> Iterator[Deployment]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY.replace("protected_servers = [12345]", "protected_servers = []"))
    options = {"consent": "url", "approval_expiry": 60, "timing": Timing(now=clock), "policy": str(policy)}
    with signin_deployment(provider, tmp_path, **options) as up:
        yield up


@pytest.fixture
def protected(provider: ProviderState, tmp_path: Path) -> Iterator[Deployment]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    with signin_deployment(provider, tmp_path, consent="url", policy=str(policy)) as up:
        yield up


@pytest.mark.parametrize("mode", REVISIONS)
def test_alice_asks_signs_in_and_approves_and_the_delete_runs_once(
    deployment: Deployment, provider: ProviderState, tmp_path: Path, mode: str
) -> None:
    browser, heard = ToBrowser(), list[str]()
    with alice_deletes(deployment, browser, mode, heard) as asked, chromium(tmp_path / "profile") as context:
        link = browser.next_link()
        assert link.startswith(f"{deployment.url}/approve/") and link.count("/") == 4  # only the opaque id
        page = open_signed_in(context, link, "alice")
        assert page.inner_text("#action") == "DELETE" and page.inner_text("#snapshot-id") == "798"
        assert page.inner_text("#status") == "pending" and page.inner_text("#requester") == "you"
        assert "Destructive: DELETE" in page.inner_text("#lost")
        assert page.evaluate("document.scripts.length") == 0
        if mode == "legacy":
            screenshot(page, "approval-plan")
        assert mutations(provider) == []
        page.click("#approve")
        page.wait_for_selector("#result")
        assert page.inner_text("#result").startswith("You approved")
        result = asked.result(timeout=CALL_DEADLINE_S)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and result.structured_content["status"] == "deleted"
    assert mutations(provider) == DELETE_798
    if mode == "legacy":  # 2025-11-25: the client hears that the URL interaction is over
        assert any("notifications/elicitation/complete" in note for note in heard), heard


def test_declined_in_the_browser_nothing_runs(deployment: Deployment, provider: ProviderState, tmp_path: Path) -> None:
    browser = ToBrowser()
    with alice_deletes(deployment, browser, "auto") as asked, chromium(tmp_path / "profile") as context:
        page = open_signed_in(context, browser.next_link(), "alice")
        page.click("#decline")
        page.wait_for_selector("#result")
        result = asked.result(timeout=CALL_DEADLINE_S)
    assert result.is_error and "declined on the approval page" in text_of(result)
    assert mutations(provider) == []


def test_expired_while_the_page_is_open_nothing_runs(
    deployment: Deployment, provider: ProviderState, tmp_path: Path, clock: Shifted
) -> None:
    browser = ToBrowser()
    with alice_deletes(deployment, browser, "legacy") as asked, chromium(tmp_path / "profile") as context:
        page = open_signed_in(context, browser.next_link(), "alice")
        clock.offset += timedelta(seconds=61)  # the approval's 60 s pass while she reads
        page.click("#approve")
        page.wait_for_selector("#refusal")
        assert "expired" in page.inner_text("#refusal")
        result = asked.result(timeout=CALL_DEADLINE_S)
    assert result.is_error and "expired" in text_of(result)
    assert mutations(provider) == []


def test_the_snapshot_changed_between_asking_and_approving_nothing_runs(
    deployment: Deployment, provider: ProviderState, tmp_path: Path
) -> None:
    browser = ToBrowser()
    with alice_deletes(deployment, browser, "auto") as asked, chromium(tmp_path / "profile") as context:
        page = open_signed_in(context, browser.next_link(), "alice")
        snapshot = provider.snapshots[798]
        provider.snapshots[798] = replace(snapshot, created_at=snapshot.created_at - timedelta(days=1))
        page.click("#approve")
        page.wait_for_selector("#result")
        result = asked.result(timeout=CALL_DEADLINE_S)
    assert result.is_error and "is not what was approved" in text_of(result), text_of(result)
    assert mutations(provider) == []


def test_a_hostile_snapshot_name_is_shown_inert(
    deployment: Deployment, provider: ProviderState, tmp_path: Path
) -> None:
    hostile = (
        '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">\u202eexe.gnp\u202c '
        + "A" * 120
        + " \u2066RTL\u2069 &amp; done"
    )
    provider.snapshots[798] = replace(provider.snapshots[798], name=hostile)
    browser = ToBrowser()
    with alice_deletes(deployment, browser, "auto") as asked, chromium(tmp_path / "profile") as context:
        page = open_signed_in(context, browser.next_link(), "alice")
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        shown = page.eval_on_selector("#snapshot-name bdi", "element => element.textContent")
        assert shown == inert(hostile)  # the text exactly, its bidi controls as visible escapes
        assert "\u202e" not in shown and "\\u202e" in shown and "<script>window.pwned=1</script>" in shown
        assert page.evaluate("window.pwned === undefined") and page.evaluate("document.scripts.length") == 0
        assert page.evaluate("document.images.length") == 0
        assert page.evaluate("document.querySelectorAll('#snapshot-name img, #snapshot-name script').length") == 0
        width = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert width, "a long name wraps: the page does not scroll sideways"
        screenshot(page, "approval-hostile-name")
        assert dialogs == []
        page.click("#decline")
        page.wait_for_selector("#result")
        asked.result(timeout=CALL_DEADLINE_S)
    assert mutations(provider) == []


def test_four_eyes_alice_may_not_approve_her_own_request_bob_may(
    protected: Deployment, provider: ProviderState, tmp_path: Path
) -> None:
    browser = ToBrowser()
    with alice_deletes(protected, browser, "legacy") as asked:
        link = browser.next_link()
        with chromium(tmp_path / "alice") as context:
            page = open_signed_in(context, link, "alice")
            assert "a second person must approve" in page.inner_text("#refusal")
            assert page.query_selector("#approve") is None
            screenshot(page, "approval-four-eyes-refusal")
            forced = page.request.post(link, form={"decision": "approve", "csrf": csrf_of(page)})
            assert forced.status == 403  # the form is not shown, and its POST is refused too
        assert mutations(provider) == []
        with chromium(tmp_path / "bob") as context:
            page = context.new_page()
            page.goto(f"{protected.url}/approve/")
            sign_in(page, "bob", USERS["bob"])
            page.wait_for_selector("#pending")
            page.click(f"a[href='/approve/{approval_id_of(link)}']")
            page.wait_for_selector("#approve")
            assert "alice" in page.inner_text("#requester")
            page.click("#approve")
            page.wait_for_selector("#result")
        result = asked.result(timeout=CALL_DEADLINE_S)
    assert not result.is_error, text_of(result)
    assert mutations(provider) == DELETE_798


def csrf_of(page: Page) -> str:
    value = page.get_attribute("input[name=csrf]", "value")
    assert value
    return value


def test_a_forged_post_from_another_origin_changes_nothing(
    deployment: Deployment, provider: ProviderState, tmp_path: Path
) -> None:
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from vps_snapshots_mcp.simulator.serve import serving_in_thread

    browser = ToBrowser()
    with alice_deletes(deployment, browser, "auto") as asked, chromium(tmp_path / "profile") as context:
        link = browser.next_link()
        page = open_signed_in(context, link, "alice")  # signed in: her cookie is in this browser

        async def evil(request: Any) -> HTMLResponse:
            form = (
                f'<form method="post" action="{link}"><input name="decision" value="approve">'
                f'<input name="csrf" value="{"0" * 64}"><button id="go">win a prize</button></form>'
            )
            return HTMLResponse(form)

        with serving_in_thread(Starlette(routes=[Route("/", evil)])) as elsewhere:
            page.goto(elsewhere)
            page.click("#go")
            page.wait_for_load_state()
            assert "Nothing has changed" in page.content()
        assert mutations(provider) == []
        page.goto(link)
        assert page.inner_text("#status") == "pending"
        page.click("#decline")
        page.wait_for_selector("#result")
        asked.result(timeout=CALL_DEADLINE_S)
    assert mutations(provider) == []


def test_a_page_on_replica_b_approves_a_request_made_on_replica_a_once(
    served_provider: str, provider: ProviderState, redis_server: RedisServer, tmp_path: Path
) -> None:
    environment = {"VPS_MCP_CONSENT": "url", "VPS_MCP_CONFIRM_SECRET": "replicas-share-this-secret-0123"}
    with replicas(served_provider, redis_server.url, tmp_path, environment=environment) as (idp, (a, b)):
        on_a = Deployment(a, idp)
        browser = ToBrowser()
        with alice_deletes(on_a, browser, "auto") as asked, chromium(tmp_path / "profile") as context:
            link = browser.next_link()
            assert link.startswith(f"{a}/approve/")
            page = open_signed_in(context, link.replace(a, b), "alice")  # the same id, served by replica B
            csrf = csrf_of(page)
            page.click("#approve")
            page.wait_for_selector("#result")
            result = asked.result(timeout=CALL_DEADLINE_S)
            assert not result.is_error, text_of(result)
            for replica in (a, b):  # a second approval, a replayed POST: on either replica, nothing more
                again = page.request.post(link.replace(a, replica), form={"decision": "approve", "csrf": csrf})
                assert again.status == 403 and "Nothing was decided" in again.text()

        async def replayed_retry() -> CallToolResult:
            async with connect(a, idp.access_token("alice")) as client:  # the IdP's tokens are for replica A
                return await delete_798(client, "approval." + approval_id_of(link))

        with in_thread(replayed_retry) as retried:
            assert retried.result(timeout=CALL_DEADLINE_S).is_error
    assert mutations(provider) == DELETE_798


def test_the_typescript_sdk_client_is_sent_to_the_page_and_the_delete_runs_once(
    deployment: Deployment, provider: ProviderState, tmp_path: Path
) -> None:
    assert TYPESCRIPT_SDK.exists(), "the TypeScript SDK comes with .ci/tools.sh's npm tools (installed with the IdP's)"
    config = {
        "sdk": str(TYPESCRIPT_SDK),
        "url": f"{deployment.url}/mcp",
        "token": deployment.idp.access_token("alice"),
        "tool": "delete_snapshot",
        "arguments": {"snapshot_id": 798, "confirm": True},
    }
    command = [node_binary(), str(Path(__file__).parent / "support" / "ts_client.mjs")]
    said: queue.Queue[dict[str, Any]] = queue.Queue()
    with (
        subprocess.Popen([*command, json.dumps(config)], stdout=subprocess.PIPE, text=True) as client,
        ThreadPoolExecutor(1) as reader,
        chromium(tmp_path / "profile") as context,
    ):
        stdout = client.stdout
        assert stdout is not None

        def read() -> None:  # each line as it comes, until the client exits
            for line in stdout:
                said.put(json.loads(line))

        reader.submit(read)
        try:
            page = open_signed_in(context, said.get(timeout=CALL_DEADLINE_S)["url"], "alice")
            page.click("#approve")
            page.wait_for_selector("#result")
            answer = said.get(timeout=CALL_DEADLINE_S)
            assert client.wait(timeout=CALL_DEADLINE_S) == 0
        finally:
            if client.poll() is None:
                client.kill()
    assert not answer["result"].get("isError"), answer
    assert answer["result"]["structuredContent"]["status"] == "deleted"
    assert mutations(provider) == DELETE_798
