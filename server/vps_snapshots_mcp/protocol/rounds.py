"""The identity of an elicitation round on 2026-07-28: a digest of the sealed `requestState` the client echoes.

The sealed form is unique to one round (a fresh nonce and timestamp each), and a
client replaying an accepted round echoes it byte for byte; its digest is the
ledger key that makes the round single-use (`consent.py` spends it). The
middleware sits just outside the SDK's requestState boundary, where the state
is still sealed (`sdk.install_before_request_state_boundary` places it, and
`sdk.check_server` checks at start that it is there and sees the sealed state).

The SDK judges a round's expiry with the system clock, which can step back; so
the middleware also reads the round's own expiry from the sealed envelope, and
the consent ledger judges it again on its clock that never steps back: a round
the ledger has forgotten is past its expiry there, and is refused, not replayed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.request_state import RequestStateSecurity

from ..consent import TOKEN_TTL_S
from .sdk import sealed_expiry


@dataclass(frozen=True)
class SealedRound:
    """One round as the client echoed it: `key` a digest of its sealed form, `expires_at` its envelope's expiry."""

    key: str
    expires_at: float


_sealed_round: ContextVar[SealedRound | None] = ContextVar("vps_snapshots_mcp_sealed_round", default=None)


class RoundMemory:
    """Middleware placed before the SDK unseals `requestState`: keep the round's digest and expiry."""

    def __init__(self, security: RequestStateSecurity) -> None:
        self.codec = security.codec

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        sealed = params.get("requestState") if ctx.method == "tools/call" else None
        found = self._read(sealed) if isinstance(sealed, str) and sealed else None
        reset = _sealed_round.set(found)
        try:
            return await call_next(ctx)
        finally:
            _sealed_round.reset(reset)

    def _read(self, sealed: str) -> SealedRound | None:
        """The round, or None when it does not unseal: the SDK's boundary refuses it next, before any tool runs."""
        expires = sealed_expiry(self.codec, sealed)  # the SDK's envelope format: the SDK seam reads it
        if expires is None:
            return None
        return SealedRound(key=hashlib.sha256(sealed.encode()).hexdigest(), expires_at=expires)


def request_state_security(secret: bytes | None) -> RequestStateSecurity:
    """Elicitation rounds (2026-07-28 request_state) live as long as a token, and survive a change of replica."""
    if secret is None:
        return RequestStateSecurity.ephemeral(ttl=TOKEN_TTL_S)  # a random key per process
    key = hmac.new(secret, b"vps-snapshots-mcp/request-state/v1", hashlib.sha256).digest()
    return RequestStateSecurity(keys=[key], ttl=TOKEN_TTL_S)


def sealed_round() -> SealedRound | None:
    """This tools/call's sealed round, if it carried one."""
    return _sealed_round.get()


__all__ = ["RoundMemory", "SealedRound", "request_state_security", "sealed_round"]
