"""Consent for restore and delete, the SDK side: the resolvers that run before the tool body.

The decision and its words live in `consent/` (no MCP import); this module only
wires them to the SDK's resolvers, each computed once per call (the SDK runs a
resolver once per round, however many others depend on it):

    call_decision          the call's `Decision` (`consent/decision.py`), from its
                           arguments, what the client can do and the consent mode
    restore_token,         the confirmation token, verified once against the
    delete_token           snapshot as it is now and the caller (or None)
    restore_question,      the question put to the user (`Elicit`), when and
    delete_question        only when the decision is to ask
    restore_consent,       the one typed `Consent` the tool body matches on
    delete_consent         (`Preview | Approved | Declined`), settled and spent
                           by `consent/settle.py`

Anything else raises a coded error before the provider is called. On 2026-07-28
the sealed `requestState` of an accepted round (`rounds.py`) is spent in the
consent ledger too, so a replayed round executes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import (
    AcceptedElicitation,
    Context,
    Elicit,
    ElicitationResult,
    Resolve,
)
from pydantic import BaseModel, Field

from ..consent.decision import Approved, Consent, Decision, Declined, Preview, Step, decision
from ..consent.settle import Answer, needs_verifying, settle
from ..consent.tokens import Action, VerifiedToken
from ..consent.wording import elicitation_message, quota_full
from ..errors import ConfirmationInvalidError, InvalidStateError
from ..models import Snapshot
from ..operations import concerning
from ..provider.facts import SNAPSHOTS_PER_SERVER
from ..provider.text import server_label
from ..waiting import is_running
from .app_context import AppContext, app_of
from .approval import approval_consent, approval_pages, client_opens_urls
from .principal import current_principal
from .rounds import sealed_round

__all__ = ["Approved", "Consent", "Decision", "Declined", "Preview", "Step"]


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


async def call_decision(confirm: bool, confirmation_token: str | None, ctx: Context[AppContext, Any]) -> Decision:
    """What this restore or delete call does: decided once, read by every resolver after it."""
    return decision(
        confirm=confirm,
        token=confirmation_token,
        client_can_elicit=client_can_elicit(ctx),
        mode=app_of(ctx).settings.consent,
        client_known=client_known(ctx),
        approval_pages=approval_pages(ctx),
        client_opens_urls=client_opens_urls(ctx),
    )


def _verified(
    action: Action,
    snapshot: Snapshot,
    decided: Decision,
    token: str | None,
    safety_snapshot: bool,
    ctx: Context[AppContext, Any],
) -> VerifiedToken | None:
    if token is None or not needs_verifying(decided, token):
        return None
    app = app_of(ctx)
    with concerning(snapshot):
        try:
            return app.tokens.verify(
                token, action, snapshot, principal=current_principal().key, safety_snapshot=safety_snapshot
            )
        except ConfirmationInvalidError:
            app.count_consent(action, "token", "expired" if app.tokens.expired(token) else "refused_invalid")
            raise


async def restore_token(
    snapshot: Annotated[Snapshot, Resolve(restorable_snapshot)],
    decided: Annotated[Decision, Resolve(call_decision)],
    confirmation_token: str | None,
    safety_snapshot: bool,
    ctx: Context[AppContext, Any],
) -> VerifiedToken | None:
    """The restore's confirmation token, verified once, where the call confirms by it or asks about it."""
    return _verified("restore", snapshot, decided, confirmation_token, safety_snapshot, ctx)


async def delete_token(
    snapshot: Annotated[Snapshot, Resolve(target_snapshot)],
    decided: Annotated[Decision, Resolve(call_decision)],
    confirmation_token: str | None,
    ctx: Context[AppContext, Any],
) -> VerifiedToken | None:
    """The delete's confirmation token, verified once, where the call confirms by it or asks about it."""
    return _verified("delete", snapshot, decided, confirmation_token, False, ctx)


def _question(
    action: Action, snapshot: Snapshot, decided: Decision, safety_snapshot: bool, ctx: Context[AppContext, Any]
) -> Elicit[ConsentForm] | NotAsked:
    if decided.step is not Step.ASK:
        return NotAsked()
    if sealed_round() is None:  # asked now, not answered: on 2026-07-28 this resolver runs again with the answer
        app_of(ctx).count_consent(action, "form", "asked")
    return Elicit(elicitation_message(action, snapshot, safety_snapshot=safety_snapshot), ConsentForm)


async def restore_question(
    snapshot: Annotated[Snapshot, Resolve(restorable_snapshot)],
    decided: Annotated[Decision, Resolve(call_decision)],
    verified: Annotated[VerifiedToken | None, Resolve(restore_token)],  # a token that does not fit asks nobody
    safety_snapshot: bool,
    ctx: Context[AppContext, Any],
) -> Elicit[ConsentForm] | NotAsked:
    """Ask the user about a restore when, and only when, the call needs it."""
    return _question("restore", snapshot, decided, safety_snapshot, ctx)


async def delete_question(
    snapshot: Annotated[Snapshot, Resolve(target_snapshot)],
    decided: Annotated[Decision, Resolve(call_decision)],
    verified: Annotated[VerifiedToken | None, Resolve(delete_token)],  # a token that does not fit asks nobody
    ctx: Context[AppContext, Any],
) -> Elicit[ConsentForm] | NotAsked:
    """Ask the user about a delete when, and only when, the call needs it."""
    return _question("delete", snapshot, decided, False, ctx)


async def restore_consent(
    answer: Annotated[ElicitationResult[ConsentForm | NotAsked], Resolve(restore_question)],
    snapshot: Annotated[Snapshot, Resolve(restorable_snapshot)],
    decided: Annotated[Decision, Resolve(call_decision)],
    verified: Annotated[VerifiedToken | None, Resolve(restore_token)],
    confirmation_token: str | None,
    safety_snapshot: bool,
    ctx: Context[AppContext, Any],
) -> Consent:
    """The consent a restore call carries, spent in the ledger if it authorises the restore."""
    if _by_approval(decided):
        return await approval_consent("restore", snapshot, decided, confirmation_token, safety_snapshot, ctx)
    return await _settle("restore", snapshot, decided, verified, answer, ctx)


async def delete_consent(
    answer: Annotated[ElicitationResult[ConsentForm | NotAsked], Resolve(delete_question)],
    snapshot: Annotated[Snapshot, Resolve(target_snapshot)],
    decided: Annotated[Decision, Resolve(call_decision)],
    verified: Annotated[VerifiedToken | None, Resolve(delete_token)],
    confirmation_token: str | None,
    ctx: Context[AppContext, Any],
) -> Consent:
    """The consent a delete call carries, spent in the ledger if it authorises the delete."""
    if _by_approval(decided):
        return await approval_consent("delete", snapshot, decided, confirmation_token, False, ctx)
    return await _settle("delete", snapshot, decided, verified, answer, ctx)


def _by_approval(decided: Decision) -> bool:
    """Whether the approval page consents to this call (`protocol/approval.py`), not the client."""
    if decided.step is Step.PREVIEW:
        return decided.approval and not decided.client_opens_urls  # the preview carries the link
    return decided.step in (Step.APPROVE, Step.REDEEM)


def user_answer(answer: ElicitationResult[ConsentForm | NotAsked]) -> Answer | None:
    """The user's answer in plain words; None when nobody was asked."""
    if isinstance(answer, AcceptedElicitation):
        if isinstance(answer.data, NotAsked):
            return None
        return "yes" if isinstance(answer.data, ConsentForm) and answer.data.confirm else "declined"
    return "cancelled" if answer.action == "cancel" else "declined"


async def _settle(
    action: Action,
    snapshot: Snapshot,
    decided: Decision,
    verified: VerifiedToken | None,
    answer: ElicitationResult[ConsentForm | NotAsked],
    ctx: Context[AppContext, Any],
) -> Consent:
    app = app_of(ctx)
    sealed = sealed_round()
    with concerning(snapshot):
        return await settle(
            action,
            snapshot.id,
            decided,
            verified,
            user_answer(answer),
            principal=current_principal().key,
            ledger=app.ledger,
            sealed_round=(sealed.key, sealed.expires_at) if sealed else None,
            wall=app.timing.wall,
            funnel=lambda channel, stage: app.count_consent(action, channel, stage),
        )
