"""A person signed in on the approval page: who they are at the deployment's OpenID Connect issuer.

A leaf (it imports nothing of the package), so the approval service below the protocol can take one. The sign-in
(`protocol/web/signin.py`) makes it from a verified ID token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Person:
    issuer: str
    """The issuer the person signed in with (the configured one, as the MCP verifier names it)."""
    subject: str
    """Their `sub` at the issuer."""
    name: str
    """What to call them on a page (`name`, else `preferred_username`, else the subject): shown, never compared."""
    principal_key: str
    """EXACTLY the key `protocol/principal.py` derives for an OAuth MCP caller with the same issuer and subject, so
    "the person who asked" can be compared with the person signed in."""
    scopes: frozenset[str] = frozenset()
    """The scopes the issuer granted at sign-in (`snapshots:approve` when it grants the approve permission)."""
    groups: frozenset[str] = frozenset()
    """The groups of the configured claim (`--oauth-groups-claim`), for a policy's rules."""


APPROVE_SCOPE = "snapshots:approve"
"""The scope that grants approving someone else's change on a protected server."""

__all__ = ["APPROVE_SCOPE", "Person"]
