"""The identity of an elicitation round on 2026-07-28: a digest of the sealed `requestState` the client echoes.

The sealed form is unique to one round (a fresh nonce and timestamp each), and a
client replaying an accepted round echoes it byte for byte; its digest is the
ledger key that makes the round single-use (`consent.py` spends it). The
middleware sits just outside the SDK's requestState boundary, where the state
is still sealed (`server.py` places it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

_sealed_round: ContextVar[str | None] = ContextVar("vps_snapshots_mcp_sealed_round", default=None)


async def remember_sealed_round(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Middleware placed before the SDK unseals `requestState`: keep a digest of the sealed form."""
    params = ctx.params if isinstance(ctx.params, Mapping) else {}
    sealed = params.get("requestState") if ctx.method == "tools/call" else None
    digest = hashlib.sha256(sealed.encode()).hexdigest() if isinstance(sealed, str) and sealed else None
    reset = _sealed_round.set(digest)
    try:
        return await call_next(ctx)
    finally:
        _sealed_round.reset(reset)


def sealed_round() -> str | None:
    """The digest of this tools/call's sealed requestState, if it carried one."""
    return _sealed_round.get()


__all__ = ["remember_sealed_round", "sealed_round"]
