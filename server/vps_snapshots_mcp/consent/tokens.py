"""Confirmation tokens and the words of consent: mint, verify, warn. No I/O.

A token is `v2.<payload>.<signature>`: the payload (base64url JSON) names the
action, snapshot id, server id, the snapshot's `created_at` and the options the
user saw (a safety snapshot first, or not), who previewed it (a keyed digest of
the caller's principal, `principal.py`: it names nobody to whoever reads the
token), whether the preview said the user will be asked directly, an expiry,
the issuing key's fingerprint and a random nonce; the signature is HMAC-SHA256
under a server secret. `verify` checks all of it against the snapshot as it is
now and against the caller, and returns the key under which the consent ledger
(`state/`) spends it, once. A `v1` token (from before callers were bound) is
not valid.

Expiry is judged on a clock that never steps back (`Timing.wall`), so setting
the system clock back cannot revive a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfirmationInvalidError
from ..provider.facts import SNAPSHOTS_PER_SERVER
from ..provider.text import date_label, quoted, server_label

if TYPE_CHECKING:  # start-up does not load the models: the server answers tools/list without them
    from ..models import Snapshot

Action = Literal["restore", "delete"]
TOKEN_TTL_S = 600
_VERSION = "v2"


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


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class VerifiedToken:
    """A token that fits its target; `ledger_key` is what the consent ledger spends, once."""

    ledger_key: str
    expires_at: float
    user_will_be_asked: bool = False
    """The preview said the user will be asked directly: only that question can confirm it."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ConfirmationTokens:
    """Mints and verifies target-bound, expiring confirmation tokens. Single use is the ledger's job."""

    def __init__(self, secret: bytes | None = None, *, wall: Callable[[], float], ttl_s: int = TOKEN_TTL_S) -> None:
        self._key = hashlib.sha256(b"vps-snapshots-mcp/confirm/v1\x00" + (secret or secrets.token_bytes(32))).digest()
        # Names the key without revealing it, so a token from another process can be told from a forgery.
        self._issuer = _b64(hmac.new(self._key, b"issuer", hashlib.sha256).digest()[:6])
        self._wall = wall
        self._ttl_s = ttl_s

    def mint(
        self,
        action: Action,
        snapshot: Snapshot,
        *,
        principal: str,
        safety_snapshot: bool = False,
        user_will_be_asked: bool = False,
    ) -> IssuedToken:
        """A token for this action on this snapshot, redeemable only by `principal` (a `Principal.key`)."""
        expires = int(self._wall()) + self._ttl_s
        payload = {
            "a": action,
            "f": safety_snapshot,
            "s": snapshot.id,
            "v": snapshot.server_id,
            "c": snapshot.created_at,
            "p": self._principal_tag(principal),
            "w": user_will_be_asked,
            "e": expires,
            "i": self._issuer,
            "n": _b64(secrets.token_bytes(12)),
        }
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        token = f"{_VERSION}.{body}.{self._sign(body)}"
        return IssuedToken(token=token, expires_at=datetime.fromtimestamp(expires, UTC))

    def verify(
        self, token: str, action: Action, snapshot: Snapshot, *, principal: str, safety_snapshot: bool = False
    ) -> VerifiedToken:
        """Check the token against the caller and the snapshot as it is now; raise if it does not fit."""
        payload = self._verified_payload(token, action, snapshot.id)
        tag = payload.get("p")
        if not isinstance(tag, str) or not hmac.compare_digest(tag.encode(), self._principal_tag(principal).encode()):
            # Said before anything about the token's target: it tells another caller nothing about it.
            raise ConfirmationInvalidError(
                "this confirmation token was previewed by another caller: a token confirms only for the caller "
                "who previewed it (the same OAuth user, the same VPS_MCP_AUTH_TOKEN, or, without client "
                "authentication, the same server process). " + nothing_changed(action, snapshot.id)
            )
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
        return VerifiedToken(
            ledger_key=f"token:{payload.get('n')}",
            expires_at=float(payload["e"]),
            user_will_be_asked=payload.get("w") is True,
        )

    def _verified_payload(self, token: str, action: Action, snapshot_id: int) -> dict[str, Any]:
        forged = ConfirmationInvalidError(
            "the confirmation token is not valid (it was altered, or is not a token at all). "
            + nothing_changed(action, snapshot_id)
        )
        version, _, rest = token.partition(".")
        body, _, signature = rest.partition(".")
        if version != _VERSION or not body or not signature:
            raise forged
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            raise forged from None
        if not isinstance(payload, dict) or not isinstance(payload.get("e"), int):
            raise forged
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            if isinstance(payload.get("i"), str) and payload["i"] != self._issuer:
                raise ConfirmationInvalidError(
                    "the confirmation token is not valid here: another server process issued it (this server "
                    "restarted since the preview, or another instance without the same VPS_MCP_CONFIRM_SECRET "
                    "answered it). " + nothing_changed(action, snapshot_id)
                )
            raise forged
        if payload["e"] < self._wall():
            expired_at = datetime.fromtimestamp(payload["e"], UTC).isoformat()
            raise ConfirmationInvalidError(
                f"the confirmation token expired at {expired_at}. " + nothing_changed(action, snapshot_id)
            )
        return payload

    def _principal_tag(self, principal: str) -> str:
        """Names the caller in a token without revealing who it is: a digest under the server's key."""
        return _b64(hmac.new(self._key, b"principal\x00" + principal.encode(), hashlib.sha256).digest()[:12])

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
