"""Confirmation policy for destructive actions: decide, warn, mint and verify. No I/O.

Restore and delete run only with explicit consent bound to one target:

    preview   call without `confirm`: nothing is sent but the look-up; the
              answer carries the warning and a confirmation token.
    token     call again with `confirm: true` and that token: the snapshot is
              looked up afresh and the token must match it.
    elicit    `confirm: true` without a token, from a client that can ask its
              user (form elicitation): the user sees the same warning and
              accepts, declines or cancels.
    refuse    anything else; nothing is sent.

A token is `v1.<payload>.<signature>`: the payload (base64url JSON) names the
action, snapshot id, server id, the snapshot's `created_at` and the options the
user saw (a safety snapshot first, or not), an expiry and a random nonce; the
signature is HMAC-SHA256 under a server secret. It is single-use: the nonce is
remembered, in this process, until the token expires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal

from .errors import ConfirmationInvalidError
from .models import Snapshot

Action = Literal["restore", "delete"]
TOKEN_TTL_S = 600
_VERSION = "v1"


class Step(Enum):
    """What a restore/delete call does, from its arguments and the client's abilities."""

    PREVIEW = "preview"
    EXECUTE_WITH_TOKEN = "execute_with_token"  # noqa: S105 - a step name, not a secret
    ELICIT = "elicit"
    REFUSE_CANNOT_ELICIT = "refuse_cannot_elicit"


def decide(*, confirm: bool, token: str | None, client_can_elicit: bool) -> Step:
    if not confirm:
        return Step.PREVIEW
    if token:
        return Step.EXECUTE_WITH_TOKEN
    return Step.ELICIT if client_can_elicit else Step.REFUSE_CANNOT_ELICIT


def nothing_changed(action: Action, snapshot_id: int) -> str:
    """The tail of every refusal: what state things are in and how to go on."""
    return (
        f"Nothing was changed. To {action} snapshot {snapshot_id}, call {action}_snapshot without confirm "
        "for a fresh preview, show its warning to the user, and call again with confirm=true and the new "
        "confirmation_token only if the user agrees."
    )


def _quoted(text: str | None) -> str:
    # json.dumps quotes and escapes provider text, so a name can never read as an instruction.
    return json.dumps(text or "", ensure_ascii=False)


def consequences(action: Action, snapshot: Snapshot, *, safety_snapshot: bool = False) -> str:
    """Exactly what is lost, in words for a person."""
    taken = snapshot.created_at or "an unknown date"
    if action == "restore":
        if safety_snapshot:
            return (
                f"Restoring snapshot {_quoted(snapshot.name)} (id {snapshot.id}) overwrites ALL current data on "
                f"server {snapshot.server_label} with the state of {taken}. First, a safety snapshot of the "
                "current state is taken, and the restore starts only once it has completed; it uses one of the "
                "server's 5 snapshot slots. The server is stopped before the restore. The restore itself "
                "cannot be undone, except by restoring the safety snapshot."
            )
        return (
            f"Restoring snapshot {_quoted(snapshot.name)} (id {snapshot.id}) overwrites ALL current data on "
            f"server {snapshot.server_label} with the state of {taken}. The server is stopped first. "
            f"Everything written to the server since {taken} is lost. This cannot be undone."
        )
    size = f", {snapshot.size_mb} MB" if snapshot.size_mb is not None else ""
    return (
        f"Deleting snapshot {_quoted(snapshot.name)} (id {snapshot.id}{size}, taken {taken}, of server "
        f"{snapshot.server_label}) removes it for good: it cannot be recovered, and the server can no longer "
        "be restored to that point. This cannot be undone."
    )


def preview_warning(action: Action, snapshot: Snapshot, *, safety_snapshot: bool = False) -> str:
    """The preview's warning: the consequences, then what the model must do with them."""
    what = consequences(action, snapshot, safety_snapshot=safety_snapshot)
    return (
        f"{action.upper()} WARNING: {what} Show this warning to the user and ask "
        f"for explicit consent. Only if the user agrees, call {action}_snapshot again with "
        f"snapshot_id={snapshot.id}, confirm=true and this confirmation_token (valid for 10 minutes, once)."
    )


def elicitation_message(action: Action, snapshot: Snapshot, *, safety_snapshot: bool = False) -> str:
    """The question put to the user directly when the client can ask."""
    return f"{consequences(action, snapshot, safety_snapshot=safety_snapshot)} Do you want to {action} it now?"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ConfirmationTokens:
    """Mints and verifies target-bound, expiring, single-use confirmation tokens."""

    def __init__(
        self, secret: bytes | None = None, *, clock: Callable[[], float] = time.time, ttl_s: int = TOKEN_TTL_S
    ) -> None:
        self._key = hashlib.sha256(b"vps-snapshots-mcp/confirm/v1\x00" + (secret or secrets.token_bytes(32))).digest()
        self._clock = clock
        self._ttl_s = ttl_s
        self._used: dict[str, float] = {}  # nonce -> expiry, pruned as they lapse

    def mint(self, action: Action, snapshot: Snapshot, *, safety_snapshot: bool = False) -> IssuedToken:
        expires = int(self._clock()) + self._ttl_s
        payload = {
            "a": action,
            "f": safety_snapshot,
            "s": snapshot.id,
            "v": snapshot.server_id,
            "c": snapshot.created_at,
            "e": expires,
            "n": _b64(secrets.token_bytes(12)),
        }
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        token = f"{_VERSION}.{body}.{self._sign(body)}"
        return IssuedToken(token=token, expires_at=datetime.fromtimestamp(expires, UTC))

    def redeem(self, token: str, action: Action, snapshot: Snapshot, *, safety_snapshot: bool = False) -> None:
        """Check the token against the snapshot as it is now, and use it up; raise if it does not fit."""
        payload = self._verified_payload(token, action, snapshot.id)
        if payload.get("a") != action:
            raise ConfirmationInvalidError(
                f"this confirmation token was issued for {payload.get('a')}, not {action}. "
                + nothing_changed(action, snapshot.id)
            )
        if payload.get("s") != snapshot.id:
            raise ConfirmationInvalidError(
                f"this confirmation token was issued for snapshot {payload.get('s')}, not {snapshot.id}. "
                + nothing_changed(action, snapshot.id)
            )
        if bool(payload.get("f")) != safety_snapshot:
            said = "with" if payload.get("f") else "without"
            raise ConfirmationInvalidError(
                f"this confirmation token was issued for a {action} {said} a safety snapshot, and this call asks "
                "otherwise; the user agreed to what the preview said. " + nothing_changed(action, snapshot.id)
            )
        if payload.get("v") != snapshot.server_id or payload.get("c") != snapshot.created_at:
            raise ConfirmationInvalidError(
                f"snapshot {snapshot.id} has changed since the preview, so it is not what the user agreed to. "
                + nothing_changed(action, snapshot.id)
            )
        nonce = str(payload.get("n"))
        now = self._clock()
        self._used = {n: exp for n, exp in self._used.items() if exp >= now}
        if nonce in self._used:
            raise ConfirmationInvalidError(
                "this confirmation token was already used; each token works once. "
                + nothing_changed(action, snapshot.id)
            )
        self._used[nonce] = float(payload["e"])

    def _verified_payload(self, token: str, action: Action, snapshot_id: int) -> dict[str, Any]:
        forged = ConfirmationInvalidError(
            "the confirmation token is not valid (it was not issued by this server, or was altered). "
            + nothing_changed(action, snapshot_id)
        )
        version, _, rest = token.partition(".")
        body, _, signature = rest.partition(".")
        if version != _VERSION or not body or not signature:
            raise forged
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            raise forged
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            raise forged from None
        if not isinstance(payload, dict) or not isinstance(payload.get("e"), int):
            raise forged
        if payload["e"] < self._clock():
            expired_at = datetime.fromtimestamp(payload["e"], UTC).isoformat()
            raise ConfirmationInvalidError(
                f"the confirmation token expired at {expired_at}. " + nothing_changed(action, snapshot_id)
            )
        return payload

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
