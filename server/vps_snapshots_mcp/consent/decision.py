"""What a restore or delete call does, decided once from plain inputs; and the consent it ends with.

`decide` takes what the call says (`confirm`, a token or not), what the client
can do (ask its user through a form, or whether that is known at all) and the
operator's `--consent` mode, and answers one `Step`. The SDK glue
(`protocol/consent.py`) computes it once per call and carries it through: the
question it may put to the user and the settling of the consent both read the
same `Step`, never a second computation.

Who decides, by mode and what the client can do:

    auto (default)   a client that can ask its user (form elicitation) asks,
                     token or not; a client that cannot must bring the token
    elicitation      only a client that can ask its user may restore or delete
    token            a token executes without asking; without one, a client
                     that can ask asks (weaker: the model holds the token)
    url              a person approves on the approval page (`approvals.py`):
                     a client that opens URLs sends its user there; another
                     gets the link in the preview, and its confirming call
                     brings the approval back (`REDEEM`); nothing else confirms

With approval pages on (HTTP with OAuth), `auto` is `url` for a client that
declares URL elicitation. A confirming call that brings an approval is redeemed
whatever the mode: an approval is the strongest consent there is.

Where the client's abilities are unknown (stateless HTTP on 2025-11-25), nobody
can be asked, so only `token` mode takes a token alone; the others refuse.

Every call ends in one `Consent`: `Preview` (nothing sent but the look-up),
`Approved` (spent in the ledger just now: execute) or `Declined` (the user said
no). Anything else is refused with a coded error before the provider is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Literal

from ..settings import ConsentMode

if TYPE_CHECKING:
    from .approvals import Proposed


class Step(Enum):
    """What a restore/delete call does, from its arguments, the client's abilities and the consent mode."""

    PREVIEW = "preview"
    TOKEN = "token"  # noqa: S105 - a step name, not a secret
    ASK = "ask"
    REFUSE_NO_TOKEN = "refuse_no_token"  # noqa: S105 - a step name, not a secret
    REFUSE_CANNOT_ELICIT = "refuse_cannot_elicit"
    REFUSE_UNKNOWN_CLIENT = "refuse_unknown_client"
    APPROVE = "approve"
    """Send the user to the approval page (URL elicitation), wait for the decision, redeem it."""
    REDEEM = "redeem"
    """The call brings an approval from a preview's link: redeem it."""
    REFUSE_NO_APPROVAL = "refuse_no_approval"


def by_approval(mode: ConsentMode, *, approval_pages: bool, client_opens_urls: bool) -> bool:
    """Whether a person approves this call on the approval page."""
    return approval_pages and (mode == "url" or (mode == "auto" and client_opens_urls))


def decide(
    *,
    confirm: bool,
    has_token: bool,
    client_can_elicit: bool,
    mode: ConsentMode,
    client_known: bool = True,
    approval: bool = False,
    has_approval: bool = False,
    client_opens_urls: bool = False,
) -> Step:
    """`client_known`: whether this request says what the client can do (not on stateless 2025-11-25);
    `approval`: a person approves on the page (`by_approval`); `has_approval`: the call brings one."""
    if not confirm:
        return Step.PREVIEW
    if has_approval:
        return Step.REDEEM
    if approval:
        return Step.APPROVE if client_opens_urls else Step.REFUSE_NO_APPROVAL
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
class Decision:
    """The step of one call, with the facts the preview needs: decided once, carried through the call."""

    step: Step
    user_will_be_asked: bool
    """A preview's promise: a confirming call from this client will ask its user (not in token mode)."""
    confirmable: bool
    """False where this connection cannot confirm at all (stateless HTTP on 2025-11-25, not in token mode)."""
    approval: bool = False
    """A person approves on the approval page: a preview for a client that cannot open URLs carries the link."""
    client_opens_urls: bool = False


APPROVAL_TOKEN_PREFIX = "approval."  # noqa: S105 - a prefix, not a secret
"""A preview's confirmation_token that names an approval (url mode): `approval.<id>`."""


def decision(
    *,
    confirm: bool,
    token: str | None,
    client_can_elicit: bool,
    mode: ConsentMode,
    client_known: bool,
    approval_pages: bool = False,
    client_opens_urls: bool = False,
) -> Decision:
    """The one decision of a restore or delete call, from plain inputs."""
    approval = by_approval(mode, approval_pages=approval_pages, client_opens_urls=client_opens_urls)
    has_approval = approval_pages and bool(token) and str(token).startswith(APPROVAL_TOKEN_PREFIX)
    return Decision(
        step=decide(
            confirm=confirm,
            has_token=bool(token),
            client_can_elicit=client_can_elicit,
            mode=mode,
            client_known=client_known,
            approval=approval,
            has_approval=has_approval,
            client_opens_urls=client_opens_urls,
        ),
        user_will_be_asked=(client_can_elicit and mode != "token") or (approval and client_opens_urls),
        confirmable=client_known or mode == "token" or approval,
        approval=approval,
        client_opens_urls=client_opens_urls,
    )


@dataclass(frozen=True)
class Preview:
    user_will_be_asked: bool
    principal: str
    """Who previewed (`Principal.key`): the token is minted for this caller alone."""
    confirmable: bool = True
    """False where this connection cannot confirm at all (stateless HTTP on 2025-11-25, not in token mode)."""
    approval: Proposed | None = None
    """The pending approval this preview proposed (url mode, a client that cannot open URLs): its link."""


@dataclass(frozen=True)
class Approved:
    by: Literal["token", "elicitation", "approval"]
    approver: str | None = None
    """Who approved it on the approval page (`Principal.key`)."""


@dataclass(frozen=True)
class Declined:
    answer: Literal["declined", "cancelled"]


Consent = Preview | Approved | Declined
