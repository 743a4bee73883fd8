"""Consent on the approval page (`--consent url`), the SDK side: the URL elicitation on both revisions.

The service (`consent/approvals.py`) proposes, waits for and redeems approvals;
this module only carries a call to it and back:

    preview             a client that cannot open URLs: the preview proposes the
                        approval and carries its link; its confirmation_token
                        names the approval (`approval.<id>`), so the confirming
                        call brings it back (REDEEM) and nothing else confirms
    2025-11-25          `elicitation/create` mode url with the link, mid-call;
                        the call waits for the decision (bounded by the
                        approval's expiry), sends
                        `notifications/elicitation/complete`, and redeems
    2026-07-28          the first round proposes and answers input-required:
                        the URL request, and the approval's id in the
                        requestState the SDK seals (bound to the call's
                        arguments and caller); the client's retry waits for the
                        decision in the same way and redeems

Every path ends in the approval spent once, for the snapshot as it is now
(looked up afresh after the wait), or in a coded refusal: declined, expired,
changed, another caller's, already used. The client's own "accept" only means
the user opened the page: it approves nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp_types import ElicitRequest, ElicitRequestURLParams, ElicitResult, InputRequiredResult
from mcp_types.version import is_version_at_least

from ..consent import Action, wording
from ..consent.approvals import ApprovalView, Plan, Proposed
from ..consent.decision import APPROVAL_TOKEN_PREFIX, Approved, Consent, Decision, Declined, Preview, Step
from ..errors import ConfirmationInvalidError, StateUnavailableError
from ..state import approval_key
from .app_context import AppContext, app_of
from .principal import current_principal

if TYPE_CHECKING:  # start-up does not load the models: the server answers tools/list without them
    from ..models import Snapshot

ROUND_KEY = "vps_snapshots_mcp:approval"
"""The input request's key on 2026-07-28, and the field of our requestState naming the approval."""


class ApprovalRound(Exception):  # not an error: a round the adapter answers as input-required
    """Raised by the consent resolver on 2026-07-28: answer this call with the URL request, not a result."""

    def __init__(self, proposed: Proposed, message: str) -> None:
        super().__init__("an approval round")
        self.result = InputRequiredResult(
            input_requests={ROUND_KEY: ElicitRequest(params=_url_params(message, proposed))},
            request_state=json.dumps({ROUND_KEY: proposed.approval_id}),
        )


def client_opens_urls(ctx: Context[AppContext, Any]) -> bool:
    """Whether the client declared URL elicitation (it can send its user to a page it cannot read)."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and elicitation.url is not None


def approval_pages(ctx: Context[AppContext, Any]) -> bool:
    return app_of(ctx).settings.approval_pages


async def approval_consent(
    action: Action,
    snapshot: Snapshot,
    decided: Decision,
    token: str | None,
    safety_snapshot: bool,
    ctx: Context[AppContext, Any],
) -> Consent:
    """The consent of a call a person approves on the approval page (steps PREVIEW in url mode, APPROVE, REDEEM).

    Each stage is counted in the consent funnel on the `url` channel (`metrics.py`): asked when a person is sent
    to the page, declined or expired as decided there, redeemed or refused when the call executes."""
    app = app_of(ctx)
    try:
        return await _approval_consent(action, snapshot, decided, token, safety_snapshot, ctx)
    except ApprovalRound:
        app.count_consent(action, "url", "asked")
        raise
    except StateUnavailableError:
        app.count_consent(action, "url", "state_unavailable")
        raise


async def _approval_consent(
    action: Action,
    snapshot: Snapshot,
    decided: Decision,
    token: str | None,
    safety_snapshot: bool,
    ctx: Context[AppContext, Any],
) -> Consent:
    app = app_of(ctx)
    approvals = app.approvals
    plan = Plan.of(action, snapshot, principal=current_principal().key, safety_snapshot=safety_snapshot)
    if decided.step is Step.PREVIEW:
        proposed = await approvals.propose(plan)
        app.count_consent(action, "url", "previewed")
        app.count_consent(action, "url", "asked")
        return Preview(user_will_be_asked=False, principal=plan.principal, approval=proposed)
    if decided.step is Step.REDEEM:
        assert token is not None
        approver = await approvals.redeem(
            token.removeprefix(APPROVAL_TOKEN_PREFIX), plan, lambda stage: app.count_consent(action, "url", stage)
        )
        return Approved(by="approval", approver=approver)
    message = wording.approval_request(action, snapshot, safety_snapshot=safety_snapshot)
    if _input_required(ctx):
        approval_id = _round_of(ctx)
        if approval_id is None:
            raise ApprovalRound(await approvals.propose(plan), message)
        answer = (ctx.input_responses or {}).get(ROUND_KEY)
        if not isinstance(answer, ElicitResult) or answer.action != "accept":
            said: Literal["declined", "cancelled"] = (
                "cancelled" if isinstance(answer, ElicitResult) and answer.action == "cancel" else "declined"
            )
            await approvals.decline_for_client(approval_id, said)
            app.count_consent(action, "url", "declined")
            return Declined(answer=said)
        return await _decided(app_of(ctx), approval_id, plan, await approvals.wait_decided(approval_id))
    proposed = await approvals.propose(plan)
    app.count_consent(action, "url", "asked")
    elicitation_id = approval_key(proposed.approval_id)[:32]
    opened = await ctx.elicit_url(message, proposed.link, elicitation_id)
    if opened.action != "accept":
        app.count_consent(action, "url", "declined")
        await approvals.decline_for_client(
            proposed.approval_id, "cancelled" if opened.action == "cancel" else "declined"
        )
        return Declined(answer="cancelled" if opened.action == "cancel" else "declined")
    try:
        view = await approvals.wait_decided(proposed.approval_id)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):  # the call is gone: nobody may approve what nothing would run
            await approvals.decline_for_client(proposed.approval_id, "cancelled")
        raise
    await ctx.request_context.session.send_elicit_complete(elicitation_id, related_request_id=ctx.request_id)
    return await _decided(app_of(ctx), proposed.approval_id, plan, view)


async def _decided(app: AppContext, approval_id: str, plan: Plan, view: ApprovalView | None) -> Consent:
    """The decision waited for, redeemed for the snapshot as it is now (looked up afresh), or refused."""
    if view is not None and view.status == "expired":
        await app.approvals.expired(view)
    if view is None or view.status in ("expired", "declined"):
        reason = "unknown" if view is None else view.status
        app.count_consent(plan.action, "url", "refused_invalid" if view is None else view.status)
        raise ConfirmationInvalidError(wording.approval_refused(reason, plan.action, plan.snapshot_id))
    app.count_consent(plan.action, "url", "approved")
    from .consent import look_up  # the same look-up the call began with, fresh

    now = await look_up(app, plan.snapshot_id, fresh=True)
    fresh = Plan.of(plan.action, now, principal=plan.principal, safety_snapshot=plan.safety_snapshot)
    approver = await app.approvals.redeem(
        approval_id, fresh, lambda stage: app.count_consent(plan.action, "url", stage)
    )
    return Approved(by="approval", approver=approver)


def _input_required(ctx: Context[AppContext, Any]) -> bool:
    version = ctx.protocol_version
    return version is not None and is_version_at_least(version, "2026-07-28")


def _round_of(ctx: Context[AppContext, Any]) -> str | None:
    """The approval this call's round names (its requestState, unsealed by the SDK and bound to this call)."""
    state = ctx.request_state
    if not state:
        return None
    try:
        named = json.loads(state).get(ROUND_KEY)
    except (ValueError, AttributeError):
        return None
    return named if isinstance(named, str) else None


def _url_params(message: str, proposed: Proposed) -> ElicitRequestURLParams:
    return ElicitRequestURLParams(
        message=message, url=proposed.link, elicitation_id=approval_key(proposed.approval_id)[:32]
    )


__all__ = ["ROUND_KEY", "ApprovalRound", "approval_consent", "approval_pages", "client_opens_urls"]
