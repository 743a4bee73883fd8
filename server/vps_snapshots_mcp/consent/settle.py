"""A decided call settled into one consent: refused, previewed, declined, or spent in the ledger, once.

The SDK glue (`protocol/consent.py`) hands over plain values, each computed once
per call: the `Decision`, the token verified against the snapshot as it is now
(or None), the user's answer if they were asked, and the sealed round the
answer came in (2026-07-28). Nothing here verifies a token or decides again.

Single use: the token's nonce, and the round of an accepted question, are spent
in the consent ledger (`state/`) before the provider is called, so a replayed
round or a reused token executes nothing, on this process or any other that
shares the ledger. A question the user declined or cancelled voids the token it
was asked about.

Consent belongs to its caller: a token is redeemable only by the principal who
previewed it (`protocol/principal.py`: OAuth issuer and subject, the static
token's identity, or this process), on any replica sharing the confirm secret;
a preview that said the user will be asked is redeemable only through that
question.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Literal

from .. import tracing
from ..errors import ConfirmationInvalidError, StateUnavailableError
from ..state import ConsentLedger, ConsentRefused, RedemptionUncertain
from . import TOKEN_TTL_S, Action, wording
from .decision import Approved, Consent, Decision, Declined, Preview, Step
from .tokens import VerifiedToken

logger = logging.getLogger(__name__)

Answer = Literal["yes", "declined", "cancelled"]
"""What the user answered when asked; None where nobody was asked."""

Funnel = Callable[[str, str], None]
"""Told each stage of the consent funnel a call passes, as (channel, stage): `metrics.Metrics.consent`'s closed
sets (the composition root binds it to the server's metrics and the call's action)."""


def unmeasured(channel: str, stage: str) -> None:
    """The funnel of a call nobody counts."""


def needs_verifying(decided: Decision, token: str | None) -> bool:
    """Whether this call's token must be verified: where it confirms, or where the user is asked about it.

    A token that does not fit is refused before the user is bothered with a question.
    """
    return bool(token) and decided.step in (Step.TOKEN, Step.ASK, Step.APPROVE)


def refusal(decided: Decision, action: Action, snapshot_id: int) -> ConfirmationInvalidError | None:
    """Why this call's step allows no change, or None when it may go on."""
    if decided.step is Step.REFUSE_NO_TOKEN:
        return ConfirmationInvalidError(wording.no_token(action, snapshot_id))
    if decided.step is Step.REFUSE_CANNOT_ELICIT:
        return ConfirmationInvalidError(wording.cannot_elicit(action, snapshot_id))
    if decided.step is Step.REFUSE_UNKNOWN_CLIENT:
        return ConfirmationInvalidError(wording.unknown_client(action, snapshot_id))
    if decided.step is Step.REFUSE_NO_APPROVAL:
        return ConfirmationInvalidError(wording.approval_needed(action, snapshot_id))
    return None


async def settle(
    action: Action,
    snapshot_id: int,
    decided: Decision,
    verified: VerifiedToken | None,
    answer: Answer | None,
    *,
    principal: str,
    ledger: ConsentLedger,
    sealed_round: tuple[str, float] | None,
    wall: Callable[[], float],
    funnel: Funnel = unmeasured,
) -> Consent:
    """The consent this call carries, spent in `ledger` if it authorises the change.

    `sealed_round`: the key and expiry of the 2026-07-28 round the answer came in, None on earlier protocols.
    Settled in a span of its own (`tracing.py`): the step, and what the consent came to (never a token or a key).
    """
    with tracing.span(f"consent {action}") as span:
        if span.is_recording():
            span.set_attribute("vps_snapshots.consent.step", decided.step.value)
        consent = await _settled(
            action, snapshot_id, decided, verified, answer, principal, ledger, sealed_round, wall, funnel
        )
        if span.is_recording():
            span.set_attribute("vps_snapshots.consent.outcome", type(consent).__name__.lower())
            if isinstance(consent, Approved):
                span.set_attribute("vps_snapshots.consent.by", consent.by)
        return consent


async def _settled(
    action: Action,
    snapshot_id: int,
    decided: Decision,
    verified: VerifiedToken | None,
    answer: Answer | None,
    principal: str,
    ledger: ConsentLedger,
    sealed_round: tuple[str, float] | None,
    wall: Callable[[], float],
    funnel: Funnel,
) -> Consent:
    if decided.step is Step.PREVIEW:
        funnel("", "previewed")
        return Preview(
            user_will_be_asked=decided.user_will_be_asked, principal=principal, confirmable=decided.confirmable
        )
    refused = refusal(decided, action, snapshot_id)
    if refused is not None:
        funnel("", "refused_invalid")
        raise refused
    if decided.step is Step.TOKEN:
        assert verified is not None, "a TOKEN step has a token, verified before it is settled"
        if verified.user_will_be_asked:
            funnel("token", "refused_invalid")
            raise ConfirmationInvalidError(wording.question_promised(action))
        funnel("token", "approved")
        await _spend(ledger, verified, action, snapshot_id, lambda stage: funnel("token", stage))
        logger.info("%s of snapshot %s confirmed by token", action, snapshot_id)
        return Approved(by="token")
    if answer != "yes":
        funnel("form", "declined")
        return await _declined(ledger, verified, "cancelled" if answer == "cancelled" else "declined")
    # A mid-call question (before 2026-07-28) cannot be replayed; a sealed round expires when it says.
    funnel("form", "approved")
    round_key, expires_at = sealed_round or (f"legacy:{secrets.token_hex(16)}", wall() + TOKEN_TTL_S)
    spent = VerifiedToken(ledger_key=f"round:{round_key}", expires_at=expires_at)
    await _spend(ledger, spent, action, snapshot_id, lambda stage: funnel("form", stage))
    if verified is not None:
        await _spend(ledger, verified, action, snapshot_id)  # the token the model carried is used up too
    logger.info("%s of snapshot %s confirmed by the user through elicitation", action, snapshot_id)
    return Approved(by="elicitation")


async def _declined(
    ledger: ConsentLedger, verified: VerifiedToken | None, answer: Literal["declined", "cancelled"]
) -> Declined:
    """The user said no: the token the question was about is void, here and on every process sharing the ledger."""
    if verified is not None:
        # Spent without a change: from now on it is "already used" everywhere. If the ledger cannot record
        # it, the refusal (state_unavailable) says nothing was changed, and nothing was.
        try:
            await ledger.redeem(
                verified.ledger_key, expires_at=verified.expires_at, issued_at=verified.expires_at - TOKEN_TTL_S
            )
        except ConsentRefused:
            pass  # expired, or from before the ledger lost its data: no ledger will ever accept it anyway
        except RedemptionUncertain:
            raise StateUnavailableError(wording.decline_not_recorded(answer)) from None
    return Declined(answer=answer)


async def _spend(
    ledger: ConsentLedger,
    consent: VerifiedToken,
    action: Action,
    snapshot_id: int,
    stage: Callable[[str], None] = lambda stage: None,
) -> None:
    """Spend `consent` once; `stage` is told how that went (redeemed, refused_replayed, refused_invalid,
    state_unavailable)."""
    # Tokens and sealed rounds both live TOKEN_TTL_S: when it was given follows from when it expires.
    try:
        first = await ledger.redeem(
            consent.ledger_key, expires_at=consent.expires_at, issued_at=consent.expires_at - TOKEN_TTL_S
        )
    except ConsentRefused as refused:
        stage("refused_invalid")
        raise ConfirmationInvalidError(wording.ledger_refused(str(refused), action, snapshot_id)) from None
    except RedemptionUncertain as uncertain:
        stage("state_unavailable")
        raise StateUnavailableError(wording.ledger_uncertain(str(uncertain), action, snapshot_id)) from None
    except StateUnavailableError:  # the ledger could not be reached: nothing was recorded
        stage("state_unavailable")
        raise
    if not first:
        stage("refused_replayed")
        raise ConfirmationInvalidError(wording.already_used(action, snapshot_id))
    stage("redeemed")
