"""Who is calling: the principal of the request in progress, derived once, in one place.

A principal is what consent, resumable streams and (later) permissions are bound
to. It is derived from how the caller authenticated:

    oauth    an OAuth access token: the issuer and the subject (`iss` + `sub`)
    token    the static bearer token (`VPS_MCP_AUTH_TOKEN`): one identity for all who hold it
    local    no HTTP authentication (stdio, or HTTP on loopback without a token): this server process

`key` is the stable string compared and stored (in a confirmation token, the
event log, the ledger); it never holds a secret. The static token's identity is
a digest of the token under a fixed label, so a second static token (after a
rotation) is a different principal and the token cannot be recovered from it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Literal

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import principal_components

PrincipalKind = Literal["oauth", "token", "local"]


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: str
    """The OAuth issuer and subject, the static token's identity, or the local process."""
    client_id: str | None = None
    scopes: frozenset[str] | None = None
    """The scopes the caller was granted; None: every scope (stdio, and the single static token)."""
    groups: frozenset[str] = frozenset()
    """The groups the caller belongs to (an OAuth claim), for a policy's rules."""

    @property
    def key(self) -> str:
        """The stable, secret-free string a binding stores and compares."""
        return f"{self.kind}:{self.id}"


_PROCESS = Principal(kind="local", id=f"{os.getpid()}-{secrets.token_hex(8)}")
"""This server process, when nobody authenticated: each process is its own principal."""

_static_token_principal: ContextVar[Principal | None] = ContextVar("vps_snapshots_mcp_static_principal", default=None)


def static_token_principal(token: bytes) -> Principal:
    """The principal of a request that presented the static bearer token `token`."""
    digest = hashlib.sha256(b"vps-snapshots-mcp/static-token-principal/v1\x00" + token).hexdigest()[:16]
    return Principal(kind="token", id=f"static-{digest}")


def set_static_token_principal(principal: Principal) -> Token[Principal | None]:
    """Called by the static-token middleware for an authenticated request; returns the reset handle."""
    return _static_token_principal.set(principal)


def reset_static_token_principal(handle: Token[Principal | None]) -> None:
    _static_token_principal.reset(handle)


def current_principal() -> Principal:
    """The principal of the request in progress (the local process when nobody authenticated)."""
    access = get_access_token()
    if access is not None:
        client_id, issuer, subject = principal_components(access)
        if subject is not None:
            return Principal(kind="oauth", id=f"{issuer or ''}#{subject}", client_id=client_id)
        return Principal(kind="oauth", id=f"{issuer or ''}#client:{client_id}", client_id=client_id)
    static = _static_token_principal.get()
    if static is not None:
        return static
    return _PROCESS


__all__ = [
    "Principal",
    "PrincipalKind",
    "current_principal",
    "reset_static_token_principal",
    "set_static_token_principal",
    "static_token_principal",
]
