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

Single use: the token's nonce, and on 2026-07-28 the sealed `requestState` of
the accepted round, are spent in the consent ledger (`state/`) before the
provider is called, so a replayed round or a reused token executes nothing,
on this process or any other that shares the ledger.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
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

from .app_context import AppContext, app_of
from .confirm import SNAPSHOTS_PER_SERVER, TOKEN_TTL_S, Action, VerifiedToken, elicitation_message, nothing_changed
from .errors import (
    ConfirmationInvalidError,
    InvalidStateError,
    QuotaExceededError,
    SnapshotsError,
    StateUnavailableError,
    Target,
)
from .models import Snapshot
from .provider_text import date_label, quoted, server_label
from .sealed_rounds import sealed_round
from .settings import ConsentMode
from .state import ConsentRefused, RedemptionUncertain
from .waiting import is_running

logger = logging.getLogger(__name__)


# --- the decision, pure ---------------------------------------------------------------------------


class Step(Enum):
    """What a restore/delete call does, from its arguments, the client's abilities and the consent mode."""

    PREVIEW = "preview"
    TOKEN = "token"  # noqa: S105 - a step name, not a secret
    ASK = "ask"
    REFUSE_NO_TOKEN = "refuse_no_token"  # noqa: S105 - a step name, not a secret
    REFUSE_CANNOT_ELICIT = "refuse_cannot_elicit"


def decide(*, confirm: bool, has_token: bool, client_can_elicit: bool, mode: ConsentMode) -> Step:
    if not confirm:
        return Step.PREVIEW
    if mode == "token" and has_token:
        return Step.TOKEN
    if client_can_elicit:
        return Step.ASK
    if mode == "elicitation":
        return Step.REFUSE_CANNOT_ELICIT
    return Step.TOKEN if has_token else Step.REFUSE_NO_TOKEN


@dataclass(frozen=True)
class Preview:
    user_will_be_asked: bool


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


def target_of(snapshot: Snapshot) -> Target:
    return Target(server_id=snapshot.server_id, snapshot_id=snapshot.id, snapshot_name=snapshot.name)


@contextmanager
def concerning(snapshot: Snapshot) -> Iterator[None]:
    """Errors escaping this block say which snapshot they concern (for the audit trail)."""
    try:
        yield
    except SnapshotsError as exc:
        if exc.target is None:
            exc.target = target_of(snapshot)
        raise


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


def quota_full(server: str, snapshots: list[Snapshot], *, why: str) -> QuotaExceededError:
    """Refuse before posting, naming the oldest snapshots as candidates to delete."""
    oldest = sorted(snapshots, key=lambda s: (s.created_at or "", s.id))[:3]
    candidates = "; ".join(
        f"{s.id} {quoted(s.name)} ({date_label(s.created_at)}, "
        f"{f'{s.size_mb} MB' if s.size_mb is not None else 'size unknown'})"
        for s in oldest
    )
    return QuotaExceededError(
        f"server {server} already has {len(snapshots)} snapshots, the most the provider allows "
        f"({SNAPSHOTS_PER_SERVER}), and {why}. Oldest, candidates to delete: {candidates}. "
        "Ask the user which to delete (delete_snapshot asks for confirmation), then try again. Nothing was created."
    )


def client_can_elicit(ctx: Context[AppContext, Any]) -> bool:
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # A bare `elicitation: {}` (before modes existed) means form support; url-only does not.
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def _step(confirm: bool, token: str | None, ctx: Context[AppContext, Any]) -> Step:
    mode = app_of(ctx).settings.consent
    return decide(confirm=confirm, has_token=bool(token), client_can_elicit=client_can_elicit(ctx), mode=mode)


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
            app_of(ctx).tokens.verify(token, action, snapshot, safety_snapshot=safety_snapshot)
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
    if step is Step.PREVIEW:
        return Preview(user_will_be_asked=client_can_elicit(ctx) and app.settings.consent != "token")
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
    verified = app.tokens.verify(token, action, snapshot, safety_snapshot=safety_snapshot) if token else None
    if step is Step.TOKEN:
        assert verified is not None
        await _spend(app, verified, action, snapshot.id)
        logger.info("%s of snapshot %s confirmed by token", action, snapshot.id)
        return Approved(by="token")
    if not isinstance(answer, AcceptedElicitation):
        return Declined(answer="cancelled" if answer.action == "cancel" else "declined")
    if not isinstance(answer.data, ConsentForm) or not answer.data.confirm:
        return Declined(answer="declined")
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
