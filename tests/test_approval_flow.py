"""Consent the model cannot give (`--consent url`): a person approves on the approval page, the call executes once.

Real parts: the server over HTTP on a loopback port with OAuth (a local issuer publishing a JWKS), the SDK's own
client with a URL-elicitation callback, and the provider simulator recording every change (replicas, four eyes
and rounds by hand: `test_approval_replicas.py`). The page itself is built elsewhere: here the person approves by
calling the approval service (`consent/approvals.py`) on the server's ledger, as the page does. Every test asserts
what reached the provider.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.timing import Timing

from .support.approvals import (
    DELETE_798,
    RESTORE_801,
    REVISIONS,
    Browser,
    Person,
    Shifted,
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

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


# --- a client that opens URLs: the user is sent to the page, the call waits, then executes once -----------


@pytest.mark.parametrize("mode", REVISIONS)
async def test_approved_on_the_page_the_delete_runs_once(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str
) -> None:
    with url_mode() as (url, composition):
        alice = Person(f"oauth:{issuer}#alice")
        service = page(composition)

        async def approve(approval_id: str) -> None:
            view = await service.view(approval_id)
            assert view is not None and view.plan.snapshot_id == 798 and view.requester == alice.principal_key
            assert (await service.approve(approval_id, alice)).allowed

        browser, heard = Browser(approve), list[str]()
        token = bearer(signing_key, issuer, f"{url}/mcp", "alice")
        async with connect(url, token, mode=mode, browser=browser, heard=heard) as c:
            result = await delete_798(c)
            assert not result.is_error, text_of(result)
            assert result.structured_content is not None and result.structured_content["status"] == "deleted"
            assert browser.links[0].startswith(f"{url}/approve/")
            assert mutations(provider) == DELETE_798
            if mode == "legacy":  # 2025-11-25: the client is told the URL interaction is over
                assert any("notifications/elicitation/complete" in note for note in heard), heard
            again = await delete_798(c)  # a new call is a new approval, and the snapshot is gone
            assert again.is_error
        assert url_funnel(composition) == {"asked": 1, "approved": 1, "redeemed": 1}
    assert mutations(provider) == DELETE_798


@pytest.mark.parametrize("mode", REVISIONS)
async def test_declined_on_the_page_nothing_runs(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str
) -> None:
    with url_mode() as (url, composition):
        service = page(composition)
        alice = Person(f"oauth:{issuer}#alice")

        async def decline(approval_id: str) -> None:
            assert (await service.decline(approval_id, alice)).allowed
            assert not (await service.approve(approval_id, alice)).allowed  # decided once

        async with connect(
            url, bearer(signing_key, issuer, f"{url}/mcp", "alice"), mode=mode, browser=Browser(decline)
        ) as c:
            result = await delete_798(c)
        assert url_funnel(composition) == {"asked": 1, "declined": 1}
    assert result.is_error and text_of(result).startswith("confirmation_invalid: ")
    assert "declined on the approval page" in text_of(result) and "Nothing was changed" in text_of(result)
    assert mutations(provider) == []


@pytest.mark.parametrize("mode", REVISIONS)
async def test_a_user_who_does_not_open_the_page_changes_nothing(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str
) -> None:
    with url_mode() as (url, composition):
        seen: list[str] = []

        async def remember(approval_id: str) -> None:
            seen.append(approval_id)

        token = bearer(signing_key, issuer, f"{url}/mcp", "alice")
        async with connect(url, token, mode=mode, browser=Browser(remember, answer="decline")) as c:
            result = await delete_798(c)
        assert result.structured_content is not None and result.structured_content["status"] == "cancelled"
        alice = Person(f"oauth:{issuer}#alice")
        assert not (await page(composition).approve(seen[0], alice)).allowed  # withdrawn: nobody approves it now
    assert mutations(provider) == []


@pytest.mark.parametrize("mode", REVISIONS)
async def test_an_approval_nobody_gives_expires_and_nothing_runs(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str
) -> None:
    clock = Shifted()
    with url_mode(approval_expiry=30, timing=Timing(now=clock)) as (url, _composition):
        token = bearer(signing_key, issuer, f"{url}/mcp", "alice")

        async def nobody_decides(approval_id: str) -> None:
            clock.offset = timedelta(seconds=31)  # its thirty seconds pass, undecided

        async with connect(url, token, mode=mode, browser=Browser(nobody_decides)) as c:
            with anyio.fail_after(20):
                result = await delete_798(c)
    assert result.is_error and text_of(result).startswith("confirmation_invalid: "), text_of(result)
    assert "expired" in text_of(result) and "Nothing was changed" in text_of(result)
    assert mutations(provider) == []


# --- a client that cannot open URLs: the preview carries the link; the model can read it, not approve --------


@pytest.mark.parametrize("mode", REVISIONS)
async def test_without_url_elicitation_the_preview_links_the_page_and_only_an_approval_confirms(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str
) -> None:
    with url_mode() as (url, composition):
        alice, bob = Person(f"oauth:{issuer}#alice"), Person(f"oauth:{issuer}#bob")
        as_alice = bearer(signing_key, issuer, f"{url}/mcp", "alice")
        as_bob = bearer(signing_key, issuer, f"{url}/mcp", "bob")
        async with connect(url, as_alice, mode=mode) as model, connect(url, as_bob, mode=mode) as other:
            shown = await model.call_tool("restore_snapshot", {"snapshot_id": 801})
            assert shown.structured_content is not None, text_of(shown)
            warning, token = shown.structured_content["warning"], shown.structured_content["confirmation_token"]
            link = warning.split("open in their browser: ", 1)[1].split(" ", 1)[0]
            assert link.startswith(f"{url}/approve/") and "you cannot approve it" in warning
            assert token == "approval." + approval_id_of(link)
            # The model alone: confirm without the approval, with it before anyone approved, with a token of its own.
            for attempt in (None, token, "v2.forged.token", "approval." + "A" * 43):
                refused = await restore_801(model, attempt)
                assert refused.is_error and text_of(refused).startswith("confirmation_invalid: "), text_of(refused)
            assert "has not been given yet" in text_of(await restore_801(model, token))
            service = page(composition)
            assert not (await service.approve(approval_id_of(link), bob)).allowed  # not bob's to approve
            assert (await service.approve(approval_id_of(link), alice)).allowed
            stolen = await restore_801(other, token)  # bob brings alice's approval
            assert stolen.is_error and "asked for by another caller" in text_of(stolen)
            assert mutations(provider) == []
            done = await restore_801(model, token)
            assert done.structured_content is not None and done.structured_content["status"] == "restore_started"
            replayed = await restore_801(model, token)
            assert replayed.is_error and "already used" in text_of(replayed), text_of(replayed)
    assert mutations(provider) == RESTORE_801


async def test_a_snapshot_changed_after_its_approval_is_not_touched(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey
) -> None:
    with url_mode() as (url, composition):
        alice = Person(f"oauth:{issuer}#alice")
        async with connect(url, bearer(signing_key, issuer, f"{url}/mcp", "alice")) as model:
            token = (await preview_798(model))["confirmation_token"]
            assert (await page(composition).approve(token.removeprefix("approval."), alice)).allowed
            provider.snapshots[798].created_at = provider.snapshots[798].created_at.replace(year=2026)
            changed = await delete_798(model, token)
    assert changed.is_error and "not what was approved" in text_of(changed), text_of(changed)
    assert mutations(provider) == []


@pytest.mark.parametrize("change", ["changed", "replaced"])
@pytest.mark.parametrize("mode", REVISIONS)
async def test_a_snapshot_changed_while_the_person_decides_is_not_touched(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey, mode: str, change: str
) -> None:
    with url_mode() as (url, composition):
        alice = Person(f"oauth:{issuer}#alice")

        async def change_then_approve(approval_id: str) -> None:
            if change == "changed":
                provider.snapshots[798].created_at = provider.snapshots[798].created_at.replace(year=2026)
            else:  # deleted, and one of the same name taken in its place (a new id)
                old = provider.snapshots.pop(798)
                provider.snapshots[900] = replace(old, id=900)
            assert (await page(composition).approve(approval_id, alice)).allowed

        token = bearer(signing_key, issuer, f"{url}/mcp", "alice")
        async with connect(url, token, mode=mode, browser=Browser(change_then_approve)) as c:
            result = await delete_798(c)
    expected = "not what was approved" if change == "changed" else "not_found: "
    assert result.is_error and expected in text_of(result), text_of(result)
    assert mutations(provider) == []


async def test_a_call_cancelled_while_it_waits_withdraws_its_approval(
    url_mode: Any, provider: ProviderState, issuer: str, signing_key: rsa.RSAPrivateKey
) -> None:
    with url_mode() as (url, composition):
        opened = anyio.Event()
        seen: list[str] = []

        async def open_page(approval_id: str) -> None:
            seen.append(approval_id)
            opened.set()

        token = bearer(signing_key, issuer, f"{url}/mcp", "alice")
        async with connect(url, token, mode="legacy", browser=Browser(open_page)) as c:
            scope = anyio.CancelScope()

            async def call() -> None:
                with scope:
                    await delete_798(c)

            async with anyio.create_task_group() as group:
                group.start_soon(call)
                await opened.wait()
                scope.cancel()
            for _ in range(100):  # the server hears of the cancellation on its own time: a bounded look
                held = await composition.ledger.approval(seen[0])
                if held is not None and held.status != "pending":
                    break
                await anyio.sleep(0.05)
        assert held is not None and held.status == "declined"
        assert not (await page(composition).approve(seen[0], Person(f"oauth:{issuer}#alice"))).allowed
    assert mutations(provider) == []


def url_funnel(composition: Any) -> dict[str, int]:
    """The consent funnel's url channel as the server's metrics counted it (stages counted at least once)."""
    counts: dict[str, int] = {}
    for family in composition.metrics.registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "vps_snapshots_consent_total" and labels.get("channel") == "url" and sample.value:
                assert labels["action"] == "delete", labels
                counts[labels["stage"]] = int(sample.value)
    return counts
