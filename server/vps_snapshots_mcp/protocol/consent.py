"""Consent for restore and delete: the resolvers that run before the tool body, and one typed decision.

Every restore or delete call is settled here into one `Consent` value, which the
tool body matches on:

    Preview    no `confirm`: nothing is sent but the look-up; the body answers
               with the warning and a confirmation token.
    Approved   the user's consent, spent in the ledger just now: by token, or
               by the user's own "yes" through elicitation. The body executes.
    Declined   the user was asked and said no (or cancelled). Nothing is sent.

Anything else raises a coded error before the provider is called. Who decides,
by `--consent` mode and what the client can do:

    auto (default)   a client that can ask its user (form elicitation) asks,
                     token or not; a client that cannot must bring the token
    elicitation      only a client that can ask its user may restore or delete
    token            a token executes without asking; without one, a client
                     that can ask asks (weaker: the model holds the token)

Consent belongs to its caller. A token is redeemable only by the principal who
previewed it (`principal.py`: OAuth issuer and subject, the static token's
identity, or this process), on any replica sharing the confirm secret. A preview
that said the user will be asked is redeemable only through that question, and a
question the user declined or cancelled voids the token it was asked about.
Where the client's abilities are unknown (stateless HTTP on 2025-11-25: no back
channel, and the initialize capabilities are gone by the next request), nobody
can be asked, so only `token` mode takes a token alone; the others refuse.

Single use: the token's nonce, and on 2026-07-28 the sealed `requestState` of
the accepted round, are spent in the consent ledger (`state/`) before the
provider is called, so a replayed round or a reused token executes nothing,
on this process or any other that shares the ledger.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import (
    AcceptedElicitation,
    Context,
    Elicit,
    ElicitationResult,
    Resolve,
)
from pydantic import BaseModel, Field

from ..consent.tokens import (
    CANNOT_CONFIRM_HERE,
    TOKEN_TTL_S,
    Action,
    VerifiedToken,
    elicitation_message,
    nothing_changed,
)
from ..errors import (
    ConfirmationInvalidError,
    InvalidStateError,
    StateUnavailableError,
)
from ..models import Snapshot
from ..operations import concerning, quota_full
from ..provider.facts import SNAPSHOTS_PER_SERVER
from ..provider.text import server_label
from ..settings import ConsentMode
from ..state import ConsentRefused, RedemptionUncertain
from ..waiting import is_running
from .app_context import AppContext, app_of
from .principal import current_principal
from .rounds import sealed_round

logger = logging.getLogger(__name__)


# --- the decision, pure ---------------------------------------------------------------------------


class Step(Enum):
    """What a restore/delete call does, from its arguments, the client's abilities and the consent mode."""

    PREVIEW = "preview"
    TOKEN = "token"  # noqa: S105 - a step name, not a secret
    ASK = "ask"
    REFUSE_NO_TOKEN = "refuse_no_token"  # noqa: S105 - a step name, not a secret
    REFUSE_CANNOT_ELICIT = "refuse_cannot_elicit"
    REFUSE_UNKNOWN_CLIENT = "refuse_unknown_client"


def decide(
    *, confirm: bool, has_token: bool, client_can_elicit: bool, mode: ConsentMode, client_known: bool = True
) -> Step:
    """`client_known`: whether this request says what the client can do (not on stateless 2025-11-25)."""
    if not confirm:
        return Step.PREVIEW
    if mode == "token" and has_token:
        return Step.TOKEN
    if client_can_elicit:
        return Step.ASK
    if not client_known and mode != "token":
        return Step.REFUSE_UNKNOWN_CLIENT
    if mode == "elicitation":
        return Step.REFUSE_CANNOT_ELICIT
    return Step.TOKEN if has_token else Step.REFUSE_NO_TOKEN


@dataclass(frozen=True)
class Preview:
    user_will_be_asked: bool
    principal: str
    """Who previewed (`Principal.key`): the token is minted for this caller alone."""
    confirmable: bool = True
    """False where this connection cannot confirm at all (stateless HTTP on 2025-11-25, not in token mode)."""


@dataclass(frozen=True)
class Approved:
    by: Literal["token", "elicitation"]


@dataclass(frozen=True)
class Declined:
    answer: Literal["declined", "cancelled"]


Consent = Preview | Approved | Declined


class ConsentForm(BaseModel):
    """What the user is asked when the client can elicit."""

    confirm: bool = Field(title="Yes, go ahead", description="Tick to go ahead. This cannot be undone.")


class NotAsked(BaseModel):
    """The question resolver's answer when this call asks nobody."""


# --- what an error concerns -----------------------------------------------------------------------


# `concerning` (errors name the snapshot they concern) lives with the operations (`operations.py`).


# --- resolvers ------------------------------------------------------------------------------------


async def look_up(app: AppContext, snapshot_id: int, *, fresh: bool) -> Snapshot:
    """The snapshot, if its server is allowed. `fresh`: read it now, never sharing a read already in flight."""
    snapshot = await app.client.get_snapshot(snapshot_id, fresh=fresh)
    with concerning(snapshot):
        app.check_server_allowed(snapshot.server_id, what=f"snapshot {snapshot_id}")
    return snapshot


async def target_snapshot(snapshot_id: int, ctx: Context[AppContext, Any]) -> Snapshot:
    """The target of a restore or delete, looked up afresh on every call."""
    return await look_up(app_of(ctx), snapshot_id, fresh=True)


async def restorable_snapshot(
    snapshot: Annotated[Snapshot, Resolve(target_snapshot)],
    safety_snapshot: bool,
    ctx: Context[AppContext, Any],
) -> Snapshot:
    """The target of a restore, refused before anyone is asked if it could not be done as asked."""
    with concerning(snapshot):
        if is_running(snapshot) or snapshot.status == "failed":
            raise InvalidStateError(
                f"snapshot {snapshot.id} is {snapshot.status}; only a completed snapshot can be restored. "
                "Nothing was changed."
            )
        if safety_snapshot and snapshot.server_id is not None:
            siblings = await app_of(ctx).client.list_snapshots(snapshot.server_id, fresh=True)
            if len(siblings) >= SNAPSHOTS_PER_SERVER:
                label = server_label(snapshot.server_id, snapshot.server_name)
                raise quota_full(label, siblings, why="the safety snapshot needs a free slot")
    return snapshot


def client_can_elicit(ctx: Context[AppContext, Any]) -> bool:
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # A bare `elicitation: {}` (before modes existed) means form support; url-only does not.
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def client_known(ctx: Context[AppContext, Any]) -> bool:
    """Whether this request says what the client can do.

    Not on stateless HTTP with 2025-11-25: each request is its own connection, the capabilities the client
    declared at initialize are gone, and there is no back channel to ask on. 2026-07-28 requests carry the
    client's capabilities in every request's `_meta`; stdio and stateful HTTP keep the handshake's.
    """
    return ctx.client_capabilities is not None


def _step(confirm: bool, token: str | None, ctx: Context[AppContext, Any]) -> Step:
    mode = app_of(ctx).settings.consent
    return decide(
        confirm=confirm,
        has_token=bool(token),
        client_can_elicit=client_can_elicit(ctx),
        mode=mode,
        client_known=client_known(ctx),
    )


def _question(
    action: Action,
    snapshot: Snapshot,
    confirm: bool,
    token: str | None,
    safety_snapshot: bool,
    ctx: Context[AppContext, Any],
) -> Elicit[ConsentForm] | NotAsked:
    if _step(confirm, token, ctx) is not Step.ASK:
        return NotAsked()
    if token:
        # A token that does not fit is refused before the user is bothered with a question.
        with concerning(snapshot):
            app_of(ctx).tokens.verify(
                token, action, snapshot, principal=current_principal().key, safety_snapshot=safety_snapshot
            )
    return Elicit(elicitation_message(action, snapshot, safety_snapshot=safety_snapshot), ConsentForm)


async def restore_question(
    snapshot: Annotated[Snapshot, Resolve(restorable_snapshot)],
    confirm: bool,
    confirmation_token: str | None,
    safety_snapshot: bool,
    ctx: Context[AppContext, Any],
) -> Elicit[ConsentForm] | NotAsked:
    """Ask the user about a restore when, and only when, the call needs it."""
    return _question("restore", snapshot, confirm, confirmation_token, safety_snapshot, ctx)


async def delete_question(
    snapshot: Annotated[Snapshot, Resolve(target_snapshot)],
    confirm: bool,
    confirmation_token: str | None,
    ctx: Context[AppContext, Any],
) -> Elicit[ConsentForm] | NotAsked:
    """Ask the user about a delete when, and only when, the call needs it."""
    return _question("delete", snapshot, confirm, confirmation_token, False, ctx)


async def restore_consent(
    answer: Annotated[ElicitationResult[ConsentForm | NotAsked], Resolve(restore_question)],
    snapshot: Annotated[Snapshot, Resolve(restorable_snapshot)],
    confirm: bool,
    confirmation_token: str | None,
    safety_snapshot: bool,
    ctx: Context[AppContext, Any],
) -> Consent:
    """The consent a restore call carries, spent in the ledger if it authorises the restore."""
    with concerning(snapshot):
        return await _settle("restore", snapshot, answer, confirm, confirmation_token, safety_snapshot, ctx)


async def delete_consent(
    answer: Annotated[ElicitationResult[ConsentForm | NotAsked], Resolve(delete_question)],
    snapshot: Annotated[Snapshot, Resolve(target_snapshot)],
    confirm: bool,
    confirmation_token: str | None,
    ctx: Context[AppContext, Any],
) -> Consent:
    """The consent a delete call carries, spent in the ledger if it authorises the delete."""
    with concerning(snapshot):
        return await _settle("delete", snapshot, answer, confirm, confirmation_token, False, ctx)


async def _settle(
    action: Action,
    snapshot: Snapshot,
    answer: ElicitationResult[ConsentForm | NotAsked],
    confirm: bool,
    token: str | None,
    safety_snapshot: bool,
    ctx: Context[AppContext, Any],
) -> Consent:
    app = app_of(ctx)
    step = _step(confirm, token, ctx)
    principal = current_principal().key
    if step is Step.PREVIEW:
        return Preview(
            user_will_be_asked=client_can_elicit(ctx) and app.settings.consent != "token",
            principal=principal,
            confirmable=client_known(ctx) or app.settings.consent == "token",
        )
    if step is Step.REFUSE_NO_TOKEN:
        raise ConfirmationInvalidError(
            "confirm=true needs the confirmation_token from a preview, and this client cannot ask the user "
            "directly. " + nothing_changed(action, snapshot.id)
        )
    if step is Step.REFUSE_CANNOT_ELICIT:
        raise ConfirmationInvalidError(
            f"this server asks the user directly before every restore and delete (consent mode elicitation), "
            f"and this client cannot ask its user (no form elicitation). Nothing was changed. Use an MCP client "
            f"that supports elicitation to {action} snapshot {snapshot.id}."
        )
    if step is Step.REFUSE_UNKNOWN_CLIENT:
        raise ConfirmationInvalidError(
            f"{CANNOT_CONFIRM_HERE} Nothing was changed. To {action} snapshot {snapshot.id}, connect on protocol "
            "2026-07-28 or to a server with sessions; an operator who accepts the weaker token-only consent can "
            "run the server with --consent token."
        )
    verified = (
        app.tokens.verify(token, action, snapshot, principal=principal, safety_snapshot=safety_snapshot)
        if token
        else None
    )
    if step is Step.TOKEN:
        assert verified is not None
        if verified.user_will_be_asked:
            raise ConfirmationInvalidError(
                "the preview of this confirmation token said the user will be asked directly, and this connection "
                "cannot ask its user (it declared no form elicitation), so the token alone does not confirm it. "
                f"Call {action}_snapshot with confirm=true and this token from the client that previewed it, "
                "where the user is asked. Nothing was changed."
            )
        await _spend(app, verified, action, snapshot.id)
        logger.info("%s of snapshot %s confirmed by token", action, snapshot.id)
        return Approved(by="token")
    if not isinstance(answer, AcceptedElicitation):
        return await _declined(app, verified, "cancelled" if answer.action == "cancel" else "declined")
    if not isinstance(answer.data, ConsentForm) or not answer.data.confirm:
        return await _declined(app, verified, "declined")
    sealed = sealed_round()  # a mid-call question (below) cannot be replayed; a sealed round expires when it says
    round_key, expires_at = (
        (sealed.key, sealed.expires_at)
        if sealed
        else (f"legacy:{secrets.token_hex(16)}", app.timing.wall() + TOKEN_TTL_S)
    )
    await _spend(app, VerifiedToken(ledger_key=f"round:{round_key}", expires_at=expires_at), action, snapshot.id)
    if verified is not None:
        await _spend(app, verified, action, snapshot.id)  # the token the model carried is used up too
    logger.info("%s of snapshot %s confirmed by the user through elicitation", action, snapshot.id)
    return Approved(by="elicitation")


async def _declined(
    app: AppContext, verified: VerifiedToken | None, answer: Literal["declined", "cancelled"]
) -> Declined:
    """The user said no: the token the question was about is void, here and on every process sharing the ledger."""
    if verified is not None:
        # Spent without a change: from now on it is "already used" everywhere. If the ledger cannot record
        # it, the refusal (state_unavailable) says nothing was changed, and nothing was.
        try:
            await app.ledger.redeem(
                verified.ledger_key, expires_at=verified.expires_at, issued_at=verified.expires_at - TOKEN_TTL_S
            )
        except ConsentRefused:
            pass  # expired, or from before the ledger lost its data: no ledger will ever accept it anyway
        except RedemptionUncertain:
            raise StateUnavailableError(
                f"the user {answer} and nothing was changed, but the consent ledger did not confirm in time that "
                "the confirmation token they were asked about is void. Do not use that token again: preview "
                "afresh if the user changes their mind."
            ) from None
    return Declined(answer=answer)


async def _spend(app: AppContext, consent: VerifiedToken, action: Action, snapshot_id: int) -> None:
    # Tokens and sealed rounds both live TOKEN_TTL_S: when it was given follows from when it expires.
    try:
        first = await app.ledger.redeem(
            consent.ledger_key, expires_at=consent.expires_at, issued_at=consent.expires_at - TOKEN_TTL_S
        )
    except ConsentRefused as refused:
        raise ConfirmationInvalidError(f"{refused} " + nothing_changed(action, snapshot_id)) from None
    except RedemptionUncertain as uncertain:
        raise StateUnavailableError(f"{uncertain}. " + nothing_changed(action, snapshot_id)) from None
    if not first:
        raise ConfirmationInvalidError(
            "this consent was already used: each confirmation token, and each answer the user gave, authorises "
            "one change. " + nothing_changed(action, snapshot_id)
        )
