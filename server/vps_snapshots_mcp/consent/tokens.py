"""Confirmation tokens: mint and verify. No I/O; their words are in `wording.py`.

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
from typing import TYPE_CHECKING, Any

from ..errors import ConfirmationInvalidError
from . import TOKEN_TTL_S, Action, wording

if TYPE_CHECKING:  # start-up does not load the models: the server answers tools/list without them
    from ..models import Snapshot

_VERSION = "v2"


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
            raise ConfirmationInvalidError(wording.token_of_another_caller(action, snapshot.id))
        if payload.get("a") != action:
            raise ConfirmationInvalidError(wording.token_for_another_action(payload.get("a"), action, snapshot.id))
        if payload.get("s") != snapshot.id:
            raise ConfirmationInvalidError(wording.token_for_another_snapshot(payload.get("s"), action, snapshot.id))
        if bool(payload.get("f")) != safety_snapshot:
            raise ConfirmationInvalidError(wording.token_for_other_options(bool(payload.get("f")), action, snapshot.id))
        if payload.get("v") != snapshot.server_id or payload.get("c") != snapshot.created_at:
            raise ConfirmationInvalidError(wording.snapshot_changed(action, snapshot.id))
        return VerifiedToken(
            ledger_key=f"token:{payload.get('n')}",
            expires_at=float(payload["e"]),
            user_will_be_asked=payload.get("w") is True,
        )

    def _verified_payload(self, token: str, action: Action, snapshot_id: int) -> dict[str, Any]:
        forged = ConfirmationInvalidError(wording.token_forged(action, snapshot_id))
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
                raise ConfirmationInvalidError(wording.token_of_another_process(action, snapshot_id))
            raise forged
        if payload["e"] < self._wall():
            raise ConfirmationInvalidError(wording.token_expired(payload["e"], action, snapshot_id))
        return payload

    def expired(self, token: str) -> bool:
        """Whether `token` is one of ours whose time ran out (what a refusal is counted as, in the metrics)."""
        body = token.partition(".")[2].partition(".")[0]
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            return False
        signed = hmac.compare_digest(token.rpartition(".")[2].encode(), self._sign(body).encode())
        return (
            signed and isinstance(payload, dict) and isinstance(payload.get("e"), int) and payload["e"] < self._wall()
        )

    def _principal_tag(self, principal: str) -> str:
        """Names the caller in a token without revealing who it is: a digest under the server's key."""
        return _b64(hmac.new(self._key, b"principal\x00" + principal.encode(), hashlib.sha256).digest()[:12])

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())


__all__ = ["TOKEN_TTL_S", "Action", "ConfirmationTokens", "IssuedToken", "VerifiedToken"]
