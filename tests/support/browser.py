"""Headless Debian Chromium (`/usr/bin/chromium`, installed by .ci/run) driven by Playwright, for the approval page.

Playwright's own browsers are never downloaded: it launches the system's Chromium by `executable_path`, with a
fresh user data directory per test. `sign_in` fills the identity provider's login form; `screenshot` saves a page
under `tests/artefacts/` (ignored by git) and prints where, so a person can look at it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = Path(__file__).resolve().parents[1] / "artefacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEADLINE_MS = 20_000
"""Every navigation and wait in a browser test gives up after this."""


@contextmanager
def chromium(user_data_dir: Path) -> Iterator[BrowserContext]:
    """A headless Chromium with a fresh profile in `user_data_dir`; its one browser context."""
    if not CHROMIUM.exists():
        raise RuntimeError("Debian's chromium is not installed (.ci/run installs `chromium chromium-driver`)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            timeout=DEADLINE_MS,
            viewport={"width": 1000, "height": 700},
        )
        context.set_default_timeout(DEADLINE_MS)
        context.set_default_navigation_timeout(DEADLINE_MS)
        try:
            yield context
        finally:
            context.close()


def sign_in(page: Page, user: str, password: str) -> None:
    """On the identity provider's login form (the page shows it now): type `user` and `password`, submit, and wait
    until the browser has left the provider's pages."""
    page.wait_for_selector("#username")
    here = page.url
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#submit")
    origin = re.escape(here.split("/interaction/")[0])
    page.wait_for_url(re.compile(rf"^(?!{origin}/).*"))


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as `tests/artefacts/NAME.png`; print and return the path."""
    ARTEFACTS.mkdir(exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")  # the test output names the artefact for a person to open
    return path


__all__ = ["ARTEFACTS", "CHROMIUM", "Browser", "chromium", "screenshot", "sign_in"]
