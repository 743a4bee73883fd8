"""Who is calling: the principal of the request in progress, derived once, in one place.

A principal is what consent, resumable streams and (later) permissions are bound
to. It is derived from how the caller authenticated:

    oauth    an OAuth access token: the issuer and the subject (`iss` + `sub`), the client id, the token's
             scopes, and the groups of the configured claim (`--oauth-groups-claim`)
    token    the static bearer token (`VPS_MCP_AUTH_TOKEN`): one identity for all who hold it, every scope;
             or a named token of the tokens file (`--auth-tokens-file`): its name, its scopes
    local    no HTTP authentication (stdio, or HTTP on loopback without a token): this server process
             (so consent stays bound to the process), run by the local OS user; every scope

`key` is the stable string compared and stored (in a confirmation token, the
event log, the ledger); it never holds a secret. The static token's identity is
a digest of the token under a fixed label, so a second static token (after a
rotation) is a different principal and the token cannot be recovered from it.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import secrets
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Final, Literal

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
    process: str | None = None
    """A local principal's server process: consent is bound to the process, not only to the OS user."""

    @property
    def key(self) -> str:
        """The stable, secret-free string a binding stores and compares."""
        if self.process is not None:
            return f"{self.kind}:{self.process}"
        return f"{self.kind}:{self.id}"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's bare uid)
        return f"uid-{os.getuid()}"


_PROCESS = Principal(kind="local", id=_os_user(), process=f"{os.getpid()}-{secrets.token_hex(8)}")
"""This server process, when nobody authenticated: the local OS user that runs it; its key is the process, so
consent stays bound to this process (each process is its own principal), as before."""

GROUPS_CLAIM: Final = "groups"
"""Where the verifier puts the caller's groups on the access token's claims (from `--oauth-groups-claim`)."""

_static_token_principal: ContextVar[Principal | None] = ContextVar("vps_snapshots_mcp_static_principal", default=None)


def named_token_principal(name: str, scopes: frozenset[str]) -> Principal:
    """The principal of a request that presented the named token `name` of the tokens file."""
    return Principal(kind="token", id=name, scopes=scopes)


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
        who = subject if subject is not None else f"client:{client_id}"
        groups = (access.claims or {}).get(GROUPS_CLAIM) or ()
        return Principal(
            kind="oauth",
            id=f"{issuer or ''}#{who}",
            client_id=client_id,
            scopes=frozenset(access.scopes),
            groups=frozenset(str(g) for g in groups),
        )
    static = _static_token_principal.get()
    if static is not None:
        return static
    return _PROCESS


__all__ = [
    "GROUPS_CLAIM",
    "Principal",
    "PrincipalKind",
    "current_principal",
    "named_token_principal",
    "reset_static_token_principal",
    "set_static_token_principal",
    "static_token_principal",
]
