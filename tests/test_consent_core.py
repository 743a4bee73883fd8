"""The consent core on its own, without the SDK: a decided call settled and spent in a real ledger.

What an approval page or a task runner would call: plain values in, one `Consent`
out, or a coded refusal. (Through the MCP server: test_tools.py, test_consent_once.py.)
"""

from __future__ import annotations

import subprocess
import sys
from typing import Literal

import pytest

from vps_snapshots_mcp.consent.decision import Approved, Decision, Declined, Preview, Step, decision
from vps_snapshots_mcp.consent.settle import settle
from vps_snapshots_mcp.consent.tokens import ConfirmationTokens, VerifiedToken
from vps_snapshots_mcp.consent.wording import CANNOT_CONFIRM_HERE, nothing_changed, quota_full
from vps_snapshots_mcp.errors import ConfirmationInvalidError
from vps_snapshots_mcp.provider.facts import SNAPSHOTS_PER_SERVER
from vps_snapshots_mcp.settings import ConsentMode
from vps_snapshots_mcp.state.memory import MemoryLedger

from .support.clocks import ME, SNAP, WallClock

pytestmark = pytest.mark.anyio


def test_the_core_loads_no_sdk() -> None:
    probe = (
        "import sys, vps_snapshots_mcp.consent.settle, vps_snapshots_mcp.consent.wording; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'mcp', 'mcp_types', 'starlette', 'httpx2'}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("can_elicit", "known", "mode", "asked", "confirmable"),
    [
        (True, True, "auto", True, True),
        (False, True, "auto", False, True),
        (True, True, "token", False, True),  # token mode: the token executes, nobody is asked
        (False, False, "auto", False, False),  # stateless 2025-11-25: nobody can be asked
        (False, False, "token", False, True),
    ],
)
def test_the_decision_carries_what_the_preview_promises(
    can_elicit: bool, known: bool, mode: ConsentMode, asked: bool, confirmable: bool
) -> None:
    decided = decision(confirm=False, token=None, client_can_elicit=can_elicit, mode=mode, client_known=known)
    assert decided == Decision(step=Step.PREVIEW, user_will_be_asked=asked, confirmable=confirmable)


def decided(step: Step) -> Decision:
    return Decision(step=step, user_will_be_asked=False, confirmable=True)


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
def ledger(wall: WallClock) -> MemoryLedger:
    return MemoryLedger(wall=wall)


@pytest.fixture
def verified(wall: WallClock) -> VerifiedToken:
    tokens = ConfirmationTokens(b"0123456789abcdef-secret", wall=wall)
    return tokens.verify(tokens.mint("delete", SNAP, principal=ME).token, "delete", SNAP, principal=ME)


async def test_a_preview_spends_nothing(ledger: MemoryLedger, wall: WallClock) -> None:
    consent = await settle(
        "delete", 801, decided(Step.PREVIEW), None, None, principal=ME, ledger=ledger, sealed_round=None, wall=wall
    )
    assert consent == Preview(user_will_be_asked=False, principal=ME, confirmable=True)


@pytest.mark.parametrize(
    ("step", "words"),
    [
        (Step.REFUSE_NO_TOKEN, "confirm=true needs the confirmation_token from a preview"),
        (Step.REFUSE_CANNOT_ELICIT, "this server asks the user directly before every restore and delete"),
        (Step.REFUSE_UNKNOWN_CLIENT, CANNOT_CONFIRM_HERE),
    ],
)
async def test_a_refused_step_says_why_and_spends_nothing(
    step: Step, words: str, ledger: MemoryLedger, wall: WallClock, verified: VerifiedToken
) -> None:
    with pytest.raises(ConfirmationInvalidError) as caught:
        await settle(
            "delete", 801, decided(step), verified, None, principal=ME, ledger=ledger, sealed_round=None, wall=wall
        )
    assert str(caught.value).startswith("confirmation_invalid: " + words) and "Nothing was changed" in str(caught.value)
    assert await ledger.redeem(verified.ledger_key, expires_at=verified.expires_at)  # still unspent


async def test_a_token_approves_once(ledger: MemoryLedger, wall: WallClock, verified: VerifiedToken) -> None:
    by_token = decided(Step.TOKEN)
    consent = await settle(
        "delete", 801, by_token, verified, None, principal=ME, ledger=ledger, sealed_round=None, wall=wall
    )
    assert consent == Approved(by="token")
    with pytest.raises(ConfirmationInvalidError) as caught:
        await settle("delete", 801, by_token, verified, None, principal=ME, ledger=ledger, sealed_round=None, wall=wall)
    assert str(caught.value) == (
        "confirmation_invalid: this consent was already used: each confirmation token, and each answer the user "
        "gave, authorises one change. " + nothing_changed("delete", 801)
    )


async def test_an_accepted_round_executes_once_and_spends_the_token_too(
    ledger: MemoryLedger, wall: WallClock, verified: VerifiedToken
) -> None:
    round_ = ("sealed-digest", wall.now + 600)
    ask = decided(Step.ASK)
    consent = await settle(
        "delete", 801, ask, verified, "yes", principal=ME, ledger=ledger, sealed_round=round_, wall=wall
    )
    assert consent == Approved(by="elicitation")
    with pytest.raises(ConfirmationInvalidError, match="already used"):
        await settle("delete", 801, ask, None, "yes", principal=ME, ledger=ledger, sealed_round=round_, wall=wall)
    assert not await ledger.redeem(verified.ledger_key, expires_at=verified.expires_at)


@pytest.mark.parametrize("answer", ["declined", "cancelled"])
async def test_a_no_voids_the_token_it_was_asked_about(
    answer: Literal["declined", "cancelled"], ledger: MemoryLedger, wall: WallClock, verified: VerifiedToken
) -> None:
    consent = await settle(
        "delete",
        801,
        decided(Step.ASK),
        verified,
        answer,
        principal=ME,
        ledger=ledger,
        sealed_round=None,
        wall=wall,
    )
    assert consent == Declined(answer=answer)
    assert not await ledger.redeem(verified.ledger_key, expires_at=verified.expires_at)


async def test_a_token_that_promised_a_question_does_not_confirm_alone(ledger: MemoryLedger, wall: WallClock) -> None:
    promised = VerifiedToken(ledger_key="token:n", expires_at=wall.now + 600, user_will_be_asked=True)
    with pytest.raises(ConfirmationInvalidError, match="said the user will be asked directly"):
        await settle(
            "delete",
            801,
            decided(Step.TOKEN),
            promised,
            None,
            principal=ME,
            ledger=ledger,
            sealed_round=None,
            wall=wall,
        )
    assert await ledger.redeem(promised.ledger_key, expires_at=promised.expires_at)  # nothing was spent


def test_the_quota_refusal_reads_the_providers_fact() -> None:
    full = [SNAP.model_copy(update={"id": 800 + i}) for i in range(SNAPSHOTS_PER_SERVER)]
    refusal = str(quota_full('12345 "web-server-01"', full, why="a new snapshot needs a free slot"))
    assert (
        f"already has {SNAPSHOTS_PER_SERVER} snapshots, the most the provider allows ({SNAPSHOTS_PER_SERVER})"
        in refusal
    )


# --- approval pages (`--consent url`) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "pages", "opens_urls", "confirm", "token", "step"),
    [
        ("url", True, True, True, None, Step.APPROVE),
        ("url", True, False, True, None, Step.REFUSE_NO_APPROVAL),
        ("url", True, False, True, "v2.a.b", Step.REFUSE_NO_APPROVAL),  # a token is not an approval
        ("url", True, False, True, "approval.xyz", Step.REDEEM),
        ("url", True, False, False, None, Step.PREVIEW),
        ("auto", True, True, True, None, Step.APPROVE),  # auto: the page for a client that opens URLs
        ("auto", True, False, True, "v2.a.b", Step.TOKEN),  # ... and today's flows for the others
        ("auto", False, True, True, None, Step.ASK),  # no approval pages (stdio, no OAuth): today's flows
        ("auto", False, True, True, "approval.xyz", Step.ASK),  # and nothing redeems an approval there
    ],
)
def test_who_decides_with_approval_pages(
    mode: ConsentMode, pages: bool, opens_urls: bool, confirm: bool, token: str | None, step: Step
) -> None:
    decided = decision(
        confirm=confirm,
        token=token,
        client_can_elicit=opens_urls,  # the SDK's clients declare form and URL together
        mode=mode,
        client_known=True,
        approval_pages=pages,
        client_opens_urls=opens_urls,
    )
    assert decided.step is step


async def test_confirming_without_an_approval_where_only_the_page_consents_is_refused(
    ledger: MemoryLedger, wall: WallClock
) -> None:
    decided = decision(
        confirm=True, token=None, client_can_elicit=False, mode="url", client_known=True, approval_pages=True
    )
    with pytest.raises(ConfirmationInvalidError, match="approved by a person on the approval page"):
        await settle("delete", 798, decided, None, None, principal=ME, ledger=ledger, sealed_round=None, wall=wall)
