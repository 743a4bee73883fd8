"""Every word of consent, in one place: what is lost, the preview's warning, the question, each refusal.

Numbers come from what the provider promises (`provider/facts.py`) and from the
life of a consent (`TOKEN_TTL_S`), never from literals here. Provider text (a
snapshot's name, a server's name) enters only through `quoted` and the labels
of `provider/text.py`, as data.

Tests assert these texts; a change here is a change of behaviour.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from ..errors import QuotaExceededError
from ..provider.facts import SNAPSHOTS_PER_SERVER
from ..provider.text import date_label, quoted, server_label
from . import TOKEN_TTL_S, Action

if TYPE_CHECKING:  # start-up does not load the models: the server answers tools/list without them
    from ..models import Snapshot


# --- what is lost, and what the model is to do about it -------------------------------------------


def nothing_changed(action: Action, snapshot_id: int) -> str:
    """The tail of every refusal: what state things are in and how to go on."""
    return (
        f"Nothing was changed. To {action} snapshot {snapshot_id}, call {action}_snapshot without confirm "
        "for a fresh preview, show its warning to the user, and call again with confirm=true and the new "
        "confirmation_token only if the user agrees."
    )


def consequences(action: Action, snapshot: Snapshot, *, safety_snapshot: bool = False) -> str:
    """Exactly what is lost, in words for a person."""
    taken = date_label(snapshot.created_at)
    server = server_label(snapshot.server_id, snapshot.server_name)
    if action == "restore":
        if safety_snapshot:
            return (
                f"Restoring snapshot {quoted(snapshot.name)} (id {snapshot.id}) overwrites ALL current data on "
                f"server {server} with the state of {taken}. First, a safety snapshot of the "
                "current state is taken, and the restore starts only once it has completed; it uses one of the "
                f"server's {SNAPSHOTS_PER_SERVER} snapshot slots. The server is stopped before the restore. The "
                "restore itself cannot be undone, except by restoring the safety snapshot."
            )
        return (
            f"Restoring snapshot {quoted(snapshot.name)} (id {snapshot.id}) overwrites ALL current data on "
            f"server {server} with the state of {taken}. The server is stopped first. "
            f"Everything written to the server since {taken} is lost. This cannot be undone."
        )
    size = f", {snapshot.size_mb} MB" if snapshot.size_mb is not None else ""
    return (
        f"Deleting snapshot {quoted(snapshot.name)} (id {snapshot.id}{size}, taken {taken}, of server "
        f"{server}) removes it for good: it cannot be recovered, and the server can no longer "
        "be restored to that point. This cannot be undone."
    )


CANNOT_CONFIRM_HERE = (
    "This connection cannot confirm it: the server keeps no sessions (stateless HTTP) and, on protocol "
    "2025-11-25, can neither ask the user directly nor tell whether this client could, so it does not take a "
    "confirmation token alone as the user's consent. A client on protocol 2026-07-28 (the user is asked "
    "directly), or a server with sessions, can do it."
)
"""Why a stateless 2025-11-25 connection cannot confirm a restore or delete (unless the operator chose tokens)."""


def preview_warning(
    action: Action,
    snapshot: Snapshot,
    *,
    safety_snapshot: bool = False,
    user_will_be_asked: bool = False,
    confirmable: bool = True,
) -> str:
    """The preview's warning: the consequences, then what the model must do with them.

    `confirmable` is False where this connection cannot confirm at all (stateless HTTP on 2025-11-25).
    """
    what = consequences(action, snapshot, safety_snapshot=safety_snapshot)
    if not confirmable:
        return f"{action.upper()} WARNING: {what} {CANNOT_CONFIRM_HERE} Tell the user so."
    if user_will_be_asked:
        return (
            f"{action.upper()} WARNING: {what} To go ahead, call {action}_snapshot again with "
            f"snapshot_id={snapshot.id} and confirm=true (and this confirmation_token); the user will be asked "
            "directly and decides. Never answer for the user."
        )
    return (
        f"{action.upper()} WARNING: {what} Show this warning to the user and ask "
        f"for explicit consent. Only if the user agrees, call {action}_snapshot again with "
        f"snapshot_id={snapshot.id}, confirm=true and this confirmation_token (valid for "
        f"{TOKEN_TTL_S // 60} minutes, once)."
    )


def elicitation_message(action: Action, snapshot: Snapshot, *, safety_snapshot: bool = False) -> str:
    """The question put to the user directly when the client can ask."""
    return f"{consequences(action, snapshot, safety_snapshot=safety_snapshot)} Do you want to {action} it now?"


# --- refusals: the call's step allows no change ---------------------------------------------------


def no_token(action: Action, snapshot_id: int) -> str:
    return (
        "confirm=true needs the confirmation_token from a preview, and this client cannot ask the user "
        "directly. " + nothing_changed(action, snapshot_id)
    )


def cannot_elicit(action: Action, snapshot_id: int) -> str:
    return (
        f"this server asks the user directly before every restore and delete (consent mode elicitation), "
        f"and this client cannot ask its user (no form elicitation). Nothing was changed. Use an MCP client "
        f"that supports elicitation to {action} snapshot {snapshot_id}."
    )


def unknown_client(action: Action, snapshot_id: int) -> str:
    return (
        f"{CANNOT_CONFIRM_HERE} Nothing was changed. To {action} snapshot {snapshot_id}, connect on protocol "
        "2026-07-28 or to a server with sessions; an operator who accepts the weaker token-only consent can "
        "run the server with --consent token."
    )


def question_promised(action: Action) -> str:
    """A token whose preview promised a question, brought where nobody can be asked."""
    return (
        "the preview of this confirmation token said the user will be asked directly, and this connection "
        "cannot ask its user (it declared no form elicitation), so the token alone does not confirm it. "
        f"Call {action}_snapshot with confirm=true and this token from the client that previewed it, "
        "where the user is asked. Nothing was changed."
    )


# --- refusals: the ledger -------------------------------------------------------------------------


def already_used(action: Action, snapshot_id: int) -> str:
    return (
        "this consent was already used: each confirmation token, and each answer the user gave, authorises "
        "one change. " + nothing_changed(action, snapshot_id)
    )


def ledger_refused(why: str, action: Action, snapshot_id: int) -> str:
    """The ledger cannot prove the consent unspent; `why` is its own reason."""
    return f"{why} " + nothing_changed(action, snapshot_id)


def ledger_uncertain(why: str, action: Action, snapshot_id: int) -> str:
    """The ledger did not answer in time; `why` is its own account."""
    return f"{why}. " + nothing_changed(action, snapshot_id)


def decline_not_recorded(answer: Literal["declined", "cancelled"]) -> str:
    """The user said no, and the ledger did not confirm in time that the token they were asked about is void."""
    return (
        f"the user {answer} and nothing was changed, but the consent ledger did not confirm in time that "
        "the confirmation token they were asked about is void. Do not use that token again: preview "
        "afresh if the user changes their mind."
    )


# --- refusals: the token does not fit -------------------------------------------------------------


def token_of_another_caller(action: Action, snapshot_id: int) -> str:
    # Says nothing about the token's target: it tells another caller nothing about it.
    return (
        "this confirmation token was previewed by another caller: a token confirms only for the caller "
        "who previewed it (the same OAuth user, the same VPS_MCP_AUTH_TOKEN, or, without client "
        "authentication, the same server process). " + nothing_changed(action, snapshot_id)
    )


def token_for_another_action(issued_for: object, action: Action, snapshot_id: int) -> str:
    return f"this confirmation token was issued for {issued_for}, not {action}. " + nothing_changed(action, snapshot_id)


def token_for_another_snapshot(issued_for: object, action: Action, snapshot_id: int) -> str:
    return f"this confirmation token was issued for snapshot {issued_for}, not {snapshot_id}. " + nothing_changed(
        action, snapshot_id
    )


def token_for_other_options(with_safety_snapshot: bool, action: Action, snapshot_id: int) -> str:
    said = "with" if with_safety_snapshot else "without"
    return (
        f"this confirmation token was issued for a {action} {said} a safety snapshot, and this call asks "
        "otherwise; the user agreed to what the preview said. " + nothing_changed(action, snapshot_id)
    )


def snapshot_changed(action: Action, snapshot_id: int) -> str:
    return (
        f"snapshot {snapshot_id} has changed since the preview, so it is not what the user agreed to. "
        + nothing_changed(action, snapshot_id)
    )


def token_forged(action: Action, snapshot_id: int) -> str:
    return "the confirmation token is not valid (it was altered, or is not a token at all). " + nothing_changed(
        action, snapshot_id
    )


def token_of_another_process(action: Action, snapshot_id: int) -> str:
    return (
        "the confirmation token is not valid here: another server process issued it (this server "
        "restarted since the preview, or another instance without the same VPS_MCP_CONFIRM_SECRET "
        "answered it). " + nothing_changed(action, snapshot_id)
    )


def token_expired(expired_at: int, action: Action, snapshot_id: int) -> str:
    when = datetime.fromtimestamp(expired_at, UTC).isoformat()
    return f"the confirmation token expired at {when}. " + nothing_changed(action, snapshot_id)


# --- no room for another snapshot -----------------------------------------------------------------


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


# --- approval pages (`--consent url`): a person approves on a page the client cannot read ----------


def approval_preview_warning(
    action: Action, snapshot: Snapshot, link: str, minutes: int, *, safety_snapshot: bool = False
) -> str:
    """The preview for a client that cannot open a URL for its user: the link, and what to do with it."""
    what = consequences(action, snapshot, safety_snapshot=safety_snapshot)
    return (
        f"{action.upper()} WARNING: {what} On this server a person approves this on its approval page, signed in "
        f"as themselves; you cannot approve it. Give the user this link to open in their browser: {link} (valid "
        f"{minutes} minutes, once). Only after they approved it there, call {action}_snapshot again with "
        f"snapshot_id={snapshot.id}, confirm=true and this confirmation_token; if they declined, it does nothing."
    )


def approval_request(action: Action, snapshot: Snapshot, *, safety_snapshot: bool = False) -> str:
    """The message of a URL elicitation: what the page asks about, and that nothing runs without it."""
    return (
        f"{consequences(action, snapshot, safety_snapshot=safety_snapshot)} Open the approval page and sign in to "
        f"approve or decline this {action}; nothing happens unless it is approved there."
    )


def approval_needed(action: Action, snapshot_id: int) -> str:
    """confirm=true without an approval, where only the approval page can consent."""
    return (
        f"on this server a {action} is approved by a person on the approval page, never by a token or an answer "
        f"the client relays. Call {action}_snapshot without confirm to get the link, have the user approve it "
        f"there, then call again with confirm=true and the preview's confirmation_token. Nothing was changed."
    )


APPROVAL_REFUSED = {
    "unknown": "no such approval is held (it was never given, or was forgotten after it expired)",
    "pending": "this approval has not been given yet: open the link from the preview, approve it there, then "
    "call again",
    "declined": "this approval was declined on the approval page",
    "expired": "this approval expired before it was used",
    "used": "this approval was already used: it authorises one change",
    "decided": "this approval was already decided",
    "another_plan": "what would run now is not what was approved: the snapshot changed, was deleted or was "
    "replaced since",
    "another_caller": "this approval was asked for by another caller",
}
"""Why an approval allows no change, by the ledger's reason (and `another_caller`)."""


def approval_refused(reason: str, action: Action, snapshot_id: int) -> str:
    return f"{APPROVAL_REFUSED.get(reason, reason)}. " + _anew(action, snapshot_id)


def _anew(action: Action, snapshot_id: int) -> str:
    return (
        f"Nothing was changed. To {action} snapshot {snapshot_id}, call {action}_snapshot without confirm for a "
        "fresh preview and a new approval."
    )
