"""Approvals a person gives on a page the client cannot read: proposed, shown, decided, waited for, redeemed once.

With `--consent url` a confirmed restore or delete is not consented to by the
client (which may answer for itself) but by a person on the server's approval
page. The call proposes a pending approval in the consent ledger (`state/`)
holding the plan's digest (`Plan.digest`: the action, the snapshot id and its
`created_at`, the server id, who asked, and whether a safety snapshot is taken
first) and what a person deciding is shown (`Plan`), then sends the user to
`{site_url}/approve/{id}`. The page (a web room of its own) shows `view(id)`, asks
`may_decide`, and calls `approve` or `decline`, which write the ledger, say so
in the audit trail and wake the call waiting for it (`wait_decided`): in this
process at once (an event), on another replica at its next look at the ledger
(`POLL_S`). The call then spends the approval (`redeem`), once, on any replica,
only for the plan as it is now: a snapshot changed, deleted or replaced since
runs nothing.

Who may decide (`may_decide`): the person who asked, signed in as themselves;
on a protected server (the policy's `[approval]`) never them, but a second
person holding the approve permission (the `snapshots:approve` scope, or a
policy rule granting "approve" on that server). The one who asked may always
decline (withdraw) their own request. No MCP import: the page and the tools
share this service.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

import anyio

from ..errors import ConfirmationInvalidError, StateUnavailableError
from ..policy import Caller, PlainCaller
from ..state import ApprovalRefused, ConsentLedger, PendingApproval, RedemptionUncertain, approval_key
from . import Action, wording

if TYPE_CHECKING:
    from ..access import AccessPolicy
    from ..audit import AuditLog
    from ..models import Snapshot

logger = logging.getLogger(__name__)

DEFAULT_EXPIRY_S = 600
"""How long a pending approval waits for a person (`--approval-expiry`)."""
POLL_S = 1.0
"""How often a waiting call looks at the ledger, for a decision made on another replica."""

Status = Literal["pending", "approved", "declined", "redeemed", "expired"]
Event = Literal["requested", "approved", "declined", "expired"]


@dataclass(frozen=True)
class Plan:
    """What would run, as a person deciding is shown it; its digest binds the approval to it."""

    action: Action
    snapshot_id: int
    snapshot_name: str | None
    created_at: str | None
    server_id: int | None
    server_name: str | None
    principal: str
    """Who asked (`Principal.key`)."""
    safety_snapshot: bool = False
    lost: str = ""
    """What is lost, in words (`wording.consequences`; provider strings cleaned, not escaped for HTML)."""

    @classmethod
    def of(cls, action: Action, snapshot: Snapshot, *, principal: str, safety_snapshot: bool = False) -> Plan:
        return cls(
            action=action,
            snapshot_id=snapshot.id,
            snapshot_name=snapshot.name,
            created_at=snapshot.created_at,
            server_id=snapshot.server_id,
            server_name=snapshot.server_name,
            principal=principal,
            safety_snapshot=safety_snapshot,
            lost=wording.consequences(action, snapshot, safety_snapshot=safety_snapshot),
        )

    @property
    def digest(self) -> str:
        bound = [self.action, self.snapshot_id, self.created_at, self.server_id, self.principal, self.safety_snapshot]
        return "sha256:" + hashlib.sha256(json.dumps(bound, separators=(",", ":")).encode()).hexdigest()

    def shown(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def read(cls, shown: str) -> Plan | None:
        try:
            return cls(**json.loads(shown))
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True)
class ApprovalView:
    """One approval as the page shows it (provider strings as they are: the page escapes them)."""

    approval_id: str
    plan: Plan
    requester: str
    """Who asked (`Principal.key`); also the label the page shows."""
    protected: bool
    expires_at: float
    status: Status
    decided_by: str | None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    """In words for the person on the page."""


class Person(Protocol):
    """Who is signed in on the page, as far as deciding needs: the principal key an MCP caller with the same
    identity has, and the scopes their sign-in carried (None: not known)."""

    @property
    def principal_key(self) -> str: ...
    @property
    def scopes(self) -> frozenset[str] | None: ...
    @property
    def groups(self) -> frozenset[str]:
        """The groups their sign-in carried (the issuer's groups claim), for a policy rule naming a group."""


@dataclass(frozen=True)
class Proposed:
    approval_id: str
    link: str
    expires_at: float


def approval_link(site_url: str, approval_id: str) -> str:
    """The link a person opens (`site_url`: `Settings.site_url`, where the sign-in's callback lives too): only the
    opaque id, nothing that authenticates."""
    return f"{site_url.rstrip('/')}/approve/{approval_id}"


def may_decide(
    person: str | Caller,
    scopes: frozenset[str] | None,
    view: ApprovalView,
    holds_approve: Callable[[str | Caller, frozenset[str] | None, int | None], bool],
) -> Verdict:
    """Whether `person` (a principal key, or a caller with its groups) may approve it: the one who asked, or on a
    protected server someone else holding the approve permission (`holds_approve(person, scopes, server_id)`)."""
    key = person if isinstance(person, str) else person.key
    server = f"server {view.plan.server_id}" if view.plan.server_id is not None else "this server"
    if view.status != "pending":
        return Verdict(False, f"this approval is {view.status}: nothing more can be decided")
    if view.protected:
        if key == view.requester:
            return Verdict(False, f"{server} is protected: a second person must approve, never the one who asked")
        if not holds_approve(person, scopes, view.plan.server_id):
            return Verdict(False, f"{server} is protected: only a person holding the approve permission may approve")
        return Verdict(True, f"{server} is protected: you hold the approve permission")
    if key != view.requester:
        return Verdict(False, "only the person who asked may approve it, signed in as themselves")
    return Verdict(True, "you asked for it")


class _Refused(Exception):
    """A redemption refused: why (`Refusal` or ours), and the coded error the caller is given."""

    def __init__(self, reason: str, error: ConfirmationInvalidError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class Approvals:
    """The approval service: one per server process, shared by the tools and the approval page."""

    def __init__(
        self,
        ledger: ConsentLedger,
        access: AccessPolicy,
        *,
        wall: Callable[[], float],
        site_url: str | None,
        expiry_s: float = DEFAULT_EXPIRY_S,
        audit: AuditLog | None = None,
        notify: Callable[[ApprovalView, str], Awaitable[None]] | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self._ledger = ledger
        self._access = access
        self._wall = wall
        self._site_url = site_url
        self.expiry_s = expiry_s
        self._audit = audit
        self._notify = notify
        self._poll_s = poll_s
        self._waking: dict[str, anyio.Event] = {}

    def link(self, approval_id: str) -> str:
        assert self._site_url is not None, "approval pages need --public-url"
        return approval_link(self._site_url, approval_id)

    # --- the call: propose, wait, redeem ---------------------------------------------------------

    async def propose(self, plan: Plan) -> Proposed:
        """Hold a pending approval of `plan`; audited as requested, and told to the policy's webhooks."""
        expires_at = self._wall() + self.expiry_s
        protected = self._access.protected(plan.server_id)
        approval_id = await self._ledger.propose(
            plan.digest, expires_at=expires_at, plan=plan.shown(), requester=plan.principal, protected=protected
        )
        view = ApprovalView(approval_id, plan, plan.principal, protected, expires_at, "pending", None)
        await self._record("requested", view, None)
        if self._notify is not None:
            await self._notify(view, self.link(approval_id))
        return Proposed(approval_id, self.link(approval_id), expires_at)

    async def wait_decided(self, approval_id: str) -> ApprovalView | None:
        """Wait until it is decided or expired (by its own expiry): woken at once by a decision in this process,
        and looking at the ledger every `POLL_S` for one made on another replica."""
        try:
            while True:
                view = await self.view(approval_id)
                if view is None or view.status != "pending":
                    return view
                remaining = view.expires_at - self._wall()
                waking = self._waking.setdefault(approval_id, anyio.Event())
                with anyio.move_on_after(max(0.0, min(self._poll_s, remaining))):
                    await waking.wait()
        finally:
            self._waking.pop(approval_id, None)  # nothing is kept for an approval nobody waits for

    async def redeem(self, approval_id: str, plan: Plan, count: Callable[[str], None] = lambda stage: None) -> str:
        """Spend the approval for `plan` as it is now, once; who approved it. Refused (coded) otherwise.

        `count`: told the consent funnel's stage it ended in (redeemed, refused_replayed, refused_invalid, expired).
        """
        try:
            approver = await self._redeem(approval_id, plan)
        except _Refused as refused:
            count({"used": "refused_replayed", "expired": "expired"}.get(refused.reason, "refused_invalid"))
            raise refused.error from None
        count("redeemed")
        return approver

    async def _redeem(self, approval_id: str, plan: Plan) -> str:
        held = await self.view(approval_id)
        reason = None
        if held is None:
            reason = "unknown"
        elif held.requester != plan.principal:
            reason = "another_caller"  # said before anything about its plan
        elif held.status == "expired":
            reason = "expired"
        if reason is None:
            try:
                return await self._ledger.redeem_approval(approval_id, plan_digest=plan.digest)
            except ApprovalRefused as refused:
                reason = refused.reason
            except RedemptionUncertain as uncertain:
                raise StateUnavailableError(
                    wording.ledger_uncertain(str(uncertain), plan.action, plan.snapshot_id)
                ) from None
        if reason == "expired" and held is not None:
            await self._record("expired", held, None)
        raise _Refused(
            reason, ConfirmationInvalidError(wording.approval_refused(reason, plan.action, plan.snapshot_id))
        )

    async def expired(self, view: ApprovalView) -> None:
        """A waiting call saw it expire undecided: audited once by that call."""
        await self._record("expired", view, None)

    # --- the page: view, may_decide, approve, decline ------------------------------------------------

    async def view(self, approval_id: str) -> ApprovalView | None:
        """The approval with this id as a person deciding sees it, or None (unknown, or forgotten)."""
        return self._viewed(await self._ledger.approval(approval_id))

    async def pending(self) -> list[ApprovalView]:
        """Every approval still pending, soonest to expire first (the page filters by `may_decide`)."""
        return [v for held in await self._ledger.pending_approvals() if (v := self._viewed(held)) is not None]

    def may_decide(
        self, person: str, scopes: frozenset[str] | None, view: ApprovalView, *, groups: frozenset[str] = frozenset()
    ) -> Verdict:
        """Whether `person` (a principal key; `groups`: those their sign-in carried) may approve `view`."""
        caller = replace(PlainCaller.of_key(person), groups=groups) if groups else person
        return may_decide(caller, scopes, view, self._access.may_approve)

    async def approve(self, approval_id: str, person: Person) -> Verdict:
        """Approve it as `person`, if they may: the ledger first, then the audit line, then the waiting call."""
        return await self._decide(approval_id, person, approve=True)

    async def decline(self, approval_id: str, person: Person) -> Verdict:
        """Decline it as `person`: whoever may approve it, or the one who asked (withdrawing it)."""
        return await self._decide(approval_id, person, approve=False)

    async def decline_for_client(self, approval_id: str, answer: str) -> None:
        """The client said the user will not open the page: the request is withdrawn (nothing runs)."""
        view = await self.view(approval_id)
        if view is None or view.status != "pending":
            return
        try:
            await self._ledger.decline(approval_id, by=f"{view.requester} (the client {answer})")
        except ApprovalRefused:
            return
        await self._record("declined", view, f"{view.requester} (the client {answer})")
        self._wake(approval_id)

    async def _decide(self, approval_id: str, person: Person, *, approve: bool) -> Verdict:
        view = await self.view(approval_id)
        if view is None:
            return Verdict(False, "no such approval is held")
        verdict = self.may_decide(person.principal_key, person.scopes, view, groups=person.groups)
        if not approve and not verdict.allowed and view.status == "pending" and person.principal_key == view.requester:
            verdict = Verdict(True, "you asked for it, and may withdraw it")
        if not verdict.allowed:
            return verdict
        try:
            if approve:
                await self._ledger.approve(approval_id, by=person.principal_key)
            else:
                await self._ledger.decline(approval_id, by=person.principal_key)
        except ApprovalRefused as refused:
            return Verdict(False, str(refused))
        await self._record("approved" if approve else "declined", view, person.principal_key)
        self._wake(approval_id)
        return verdict

    def _wake(self, approval_id: str) -> None:
        waking = self._waking.pop(approval_id, None)
        if waking is not None:
            waking.set()

    def _viewed(self, held: PendingApproval | None) -> ApprovalView | None:
        plan = Plan.read(held.plan) if held is not None else None
        if held is None or plan is None:
            return None
        expired = held.status in ("pending", "approved") and held.expires_at < self._wall()
        status: Status = "expired" if expired else held.status
        return ApprovalView(held.approval_id, plan, held.requester, held.protected, held.expires_at, status, held.by)

    async def _record(self, event: Event, view: ApprovalView, approver: str | None) -> None:
        if self._audit is not None:
            from ..audit import record_approval  # the trail is written only where there is one

            await record_approval(
                self._audit,
                event,
                tool=f"{view.plan.action}_snapshot",
                principal=view.requester,
                approver=approver,
                approval=approval_key(view.approval_id)[:16],
                server_id=view.plan.server_id,
                snapshot_id=view.plan.snapshot_id,
                snapshot_name=view.plan.snapshot_name,
            )


__all__ = [
    "DEFAULT_EXPIRY_S",
    "ApprovalView",
    "Approvals",
    "Person",
    "Plan",
    "Proposed",
    "Verdict",
    "approval_link",
    "may_decide",
]
