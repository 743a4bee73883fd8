"""Alice signs in through headless Debian Chromium at the REAL identity provider's login form, and the approval
page says who she is; the screenshot is saved under tests/artefacts/ for a person to look at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vps_snapshots_mcp.simulator import ProviderState

from .support.browser import chromium, screenshot, sign_in
from .support.oidc import USERS
from .support.signin_serving import Deployment, signin_deployment

pytestmark = pytest.mark.slow


@pytest.fixture
def deployment(provider: ProviderState, tmp_path: Path) -> Iterator[Deployment]:
    with signin_deployment(provider, tmp_path) as running:
        yield running


def test_alice_signs_in_through_chromium_and_the_page_says_alice(deployment: Deployment, tmp_path: Path) -> None:
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.goto(f"{deployment.url}/approve/")
        assert page.url.startswith(deployment.idp.issuer)  # sent to the identity provider to sign in
        page.wait_for_selector("#password")
        screenshot(page, "signin-idp-login-form")
        sign_in(page, "alice", USERS["alice"])
        page.wait_for_selector("#who")
        assert page.url == f"{deployment.url}/approve/"
        assert page.inner_text("#who").startswith("Signed in as Alice (alice at ")
        [cookie] = [c for c in browser.cookies(deployment.url) if c["name"] == "vps-approve"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's scripts cannot read it
        screenshot(page, "signin-landing-alice")
        page.click("text=Sign out")
        page.wait_for_selector("text=You are signed out.")
        assert [c for c in browser.cookies(deployment.url) if c["name"] == "vps-approve"] == []
        visited: list[str] = []
        page.on("request", lambda request: visited.append(request.url))
        page.goto(f"{deployment.url}/approve/")
        # signed out here: the page sends her to the identity provider again (whose own session may sign her in
        # without a form: signing out of the approval page is not signing out of the identity provider)
        assert any(url.startswith(deployment.idp.issuer) for url in visited), visited
