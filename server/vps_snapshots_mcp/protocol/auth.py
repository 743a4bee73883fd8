"""Client authentication for the HTTP transport: a static bearer token, or OAuth 2.1 JWT access tokens.

Who may call this server over HTTP is separate from how this server calls the
provider: a client's token is checked here and goes no further. The provider
token stays server-side configuration.

- Static token (`VPS_MCP_AUTH_TOKEN`): every request but `/healthz` must carry
  `Authorization: Bearer <token>`, compared in constant time; otherwise 401 with
  `WWW-Authenticate`.
- OAuth 2.1 resource server: JWT access tokens verified against the issuer's
  JWKS, issuer, audience (this server's public URL) and expiry. The required
  scope, the 401/403 answers and the protected-resource metadata come from the
  SDK (`AuthSettings`, `token_verifier`).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import anyio.to_thread
import jwt
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl, SecretStr
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..settings import Settings
from .principal import reset_static_token_principal, set_static_token_principal, static_token_principal

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz"})
JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
"""Asymmetric algorithms only: a JWKS publishes public keys, and 'none' or HS* must never be accepted."""
CLOCK_SKEW_S = 30


class StaticTokenMiddleware:
    """Require `Authorization: Bearer <token>` on every HTTP request except the open paths."""

    def __init__(self, app: ASGIApp, token: SecretStr) -> None:
        self._app = app
        self._expected = token.get_secret_value().encode()
        self._principal = static_token_principal(self._expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self._app(scope, receive, send)
            return
        if self._authorized(scope):
            # Everything this request does (and the messages it sends on) is this token's principal's.
            handle = set_static_token_principal(self._principal)
            try:
                await self._app(scope, receive, send)
            finally:
                reset_static_token_principal(handle)
            return
        response = JSONResponse(
            {"error": "invalid_token", "error_description": "Send Authorization: Bearer <VPS_MCP_AUTH_TOKEN>."},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="vps-snapshots-mcp", error="invalid_token"'},
        )
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        header = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        scheme, _, presented = header.partition(b" ")
        # compare_digest on every request, so timing tells nothing about how much of a guess was right.
        return hmac.compare_digest(presented.strip(), self._expected) and scheme.lower() == b"bearer"


class JwtTokenVerifier:
    """Verify JWT access tokens against a JWKS URL, the issuer and this server's URL as audience."""

    def __init__(self, *, jwks_url: str, issuer: str, audience: str) -> None:
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=10)
        self._issuer = issuer
        self._audience = audience

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            # PyJWKClient fetches with blocking urllib; keep it off the event loop.
            key = await anyio.to_thread.run_sync(self._jwks.get_signing_key_from_jwt, token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=JWT_ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                leeway=CLOCK_SKEW_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientError as exc:
            logger.warning("cannot check an access token: the JWKS is unavailable (%s)", type(exc).__name__)
            return None
        except jwt.PyJWTError as exc:
            logger.info("access token refused: %s", type(exc).__name__)
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or claims.get("sub") or "unknown"),
            scopes=_scopes(claims),
            expires_at=int(claims["exp"]),
            resource=self._audience,
            subject=str(claims["sub"]) if "sub" in claims else None,
            claims={"iss": self._issuer},  # the principal is the issuer and the subject (principal.py)
        )


def _scopes(claims: dict[str, Any]) -> list[str]:
    """`scope` is a space-separated string (RFC 9068); some issuers send `scp` as a list."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return scope.split()
    scp = claims.get("scp")
    if isinstance(scp, list):
        return [str(s) for s in scp]
    return scp.split() if isinstance(scp, str) else []


def oauth_for(settings: Settings) -> tuple[AuthSettings, JwtTokenVerifier]:
    """The SDK's resource-server settings and our verifier, from the OAuth settings."""
    assert settings.oauth_jwks_url and settings.oauth_issuer and settings.public_url
    auth = AuthSettings(
        issuer_url=AnyHttpUrl(settings.oauth_issuer),
        resource_server_url=AnyHttpUrl(settings.public_url),
        required_scopes=[settings.oauth_scope],
        validate_token_resource=False,  # the verifier checks the audience itself
    )
    verifier = JwtTokenVerifier(
        jwks_url=settings.oauth_jwks_url, issuer=settings.oauth_issuer, audience=settings.public_url
    )
    return auth, verifier
