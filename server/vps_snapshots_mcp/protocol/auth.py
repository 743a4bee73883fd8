"""Client authentication for the HTTP transport: a static bearer token, or OAuth 2.1 JWT access tokens.

Who may call this server over HTTP is separate from how this server calls the
provider: a client's token is checked here and goes no further. The provider
token stays server-side configuration.

- Static token (`VPS_MCP_AUTH_TOKEN`): every request but the probes' (`/healthz`, `/readyz`) must carry
  `Authorization: Bearer <token>`, compared in constant time; otherwise 401 with
  `WWW-Authenticate`.
- OAuth 2.1 resource server: JWT access tokens verified against the issuer's
  JWKS, issuer, audience (this server's public URL) and expiry. The required
  scope, the 401/403 answers and the protected-resource metadata come from the
  SDK (`AuthSettings`, `token_verifier`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import jwt
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_resource_metadata_url, create_protected_resource_routes
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl, SecretStr
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..access import ACTION_SCOPES, ACTIONS, AccessPolicy
from ..audit import Actor, AuditLog, record_denial, trace_id_of
from ..settings import Settings
from .principal import (
    GROUPS_CLAIM,
    Principal,
    current_principal,
    reset_static_token_principal,
    set_static_token_principal,
    static_token_principal,
)
from .tokens_file import TokensFile

if TYPE_CHECKING:
    from ..metrics import Metrics

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
"""Probes carry no token; they answer up/ready and where the ledger is, nothing secret."""
JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
"""Asymmetric algorithms only: a JWKS publishes public keys, and 'none' or HS* must never be accepted."""
CLOCK_SKEW_S = 30


class StaticTokenMiddleware:
    """Require `Authorization: Bearer <token>` on every HTTP request except the open paths.

    The token is the single `VPS_MCP_AUTH_TOKEN` (one principal, every scope) or a named token of the tokens
    file (`tokens_file.py`: its own principal and scopes).
    """

    def __init__(self, app: ASGIApp, token: SecretStr | None, tokens_file: TokensFile | None = None) -> None:
        self._app = app
        self._expected = token.get_secret_value().encode() if token is not None else None
        self._principal = static_token_principal(self._expected) if self._expected is not None else None
        self._tokens_file = tokens_file

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self._app(scope, receive, send)
            return
        principal = self._principal_of(scope)
        if principal is not None:
            # Everything this request does (and the messages it sends on) is this token's principal's.
            handle = set_static_token_principal(principal)
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

    def _principal_of(self, scope: Scope) -> Principal | None:
        header = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        scheme, _, presented = header.partition(b" ")
        presented = presented.strip()
        bearer = scheme.lower() == b"bearer"
        # compare_digest on every request, so timing tells nothing about how much of a guess was right.
        if self._expected is not None and hmac.compare_digest(presented, self._expected) and bearer:
            return self._principal
        if self._tokens_file is not None:
            named = self._tokens_file.principal_for(presented)
            if named is not None and bearer:
                return named
        return None


VERIFIED_FOR_S = 60.0
"""How long a verified access token is taken without checking its signature again (never past its `exp`): a key
removed from the issuer's JWKS stops its tokens within the key set's five minutes plus this minute."""
VERIFIED_KEPT = 4096
"""How many verified tokens are remembered (the least recently used are forgotten first)."""


class JwtTokenVerifier:
    """Verify JWT access tokens against a JWKS URL, the issuer and this server's URL as audience."""

    def __init__(
        self,
        *,
        jwks_url: str,
        issuer: str,
        audience: str,
        groups_claim: str = "groups",
        clock: Callable[[], float] = time.time,
    ) -> None:
        # The key set is kept five minutes (`lifespan`); no per-kid cache (`cache_keys`), which would trust a key
        # the issuer removed until the process ends.
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=False, lifespan=300, timeout=10)
        self._issuer = issuer
        self._audience = audience
        self._groups_claim = groups_claim
        self._clock = clock
        self._verified: OrderedDict[bytes, tuple[float, AccessToken]] = OrderedDict()
        """Tokens verified lately, by their digest: (until when, what they grant). A client sends the same token
        on every request; its signature is checked once a minute, not per request (`VERIFIED_FOR_S`)."""

    async def signing_keys(self) -> int:
        """How many signing keys the JWKS URL serves now (`doctor`); `jwt.PyJWKClientError` when it cannot be read
        or holds none."""
        return len(await anyio.to_thread.run_sync(self._jwks.get_signing_keys, True))

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        held = self._verified.get(digest)
        if held is not None and now < held[0]:
            self._verified.move_to_end(digest)
            return held[1]
        self._verified.pop(digest, None)
        access = await self._verify(token)
        if access is not None and access.expires_at is not None and now < access.expires_at:
            self._verified[digest] = (min(now + VERIFIED_FOR_S, float(access.expires_at)), access)
            while len(self._verified) > VERIFIED_KEPT:
                self._verified.popitem(last=False)
        return access

    async def _verify(self, token: str) -> AccessToken | None:
        try:
            claims = await verified_claims(self._jwks, token, audience=self._audience, issuer=self._issuer)
        except jwt.PyJWKClientError as exc:
            logger.warning("cannot check an access token: the JWKS is unavailable (%s)", type(exc).__name__)
            return None
        except jwt.PyJWTError as exc:
            logger.info("access token refused: %s", type(exc).__name__)
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or claims.get("sub") or "unknown"),
            scopes=scopes_of(claims),
            expires_at=int(claims["exp"]),
            resource=self._audience,
            subject=str(claims["sub"]) if "sub" in claims else None,
            # The principal (principal.py): the issuer and the subject, and the groups of the configured claim.
            claims={"iss": self._issuer, GROUPS_CLAIM: groups_of(claims.get(self._groups_claim))},
        )


async def verified_claims(
    jwks: jwt.PyJWKClient, token: str, *, audience: str, issuer: str, require: tuple[str, ...] = ("exp", "iss", "aud")
) -> dict[str, Any]:
    """The claims of `token` once its signature (a key of `jwks`, an asymmetric algorithm), issuer, audience and
    expiry hold; `jwt.PyJWKClientError` when the JWKS cannot be had, `jwt.PyJWTError` when the token is refused.
    Access tokens (here) and the approval page's ID tokens (web/oidc.py) are checked by it."""
    # PyJWKClient fetches with blocking urllib; keep it off the event loop.
    key = await anyio.to_thread.run_sync(jwks.get_signing_key_from_jwt, token)
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=JWT_ALGORITHMS,
        audience=audience,
        issuer=issuer,
        leeway=CLOCK_SKEW_S,
        options={"require": list(require)},
    )
    return claims


def groups_of(value: object) -> list[str]:
    """A groups claim: a list of names (or one space-separated string); anything else is no group."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [str(g) for g in value if isinstance(g, (str, int))]
    return []


def scopes_of(claims: dict[str, Any]) -> list[str]:
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
        required_scopes=[settings.oauth_scope],  # the connect scope; the action scopes are checked per call
        validate_token_resource=False,  # the verifier checks the audience itself
    )
    verifier = JwtTokenVerifier(
        jwks_url=settings.oauth_jwks_url,
        issuer=settings.oauth_issuer,
        audience=settings.public_url,
        groups_claim=settings.oauth_groups_claim,
    )
    return auth, verifier


def supported_scopes(settings: Settings) -> list[str]:
    """The protected-resource metadata's `scopes_supported`: the connect scope, then one scope per action."""
    return [settings.oauth_scope, *(s for s in ACTION_SCOPES if s != settings.oauth_scope)]


class ScopeGate:
    """The step-up answer, before the SDK dispatches: a `tools/call` whose tool needs an action scope the caller
    does not hold is refused with 403 `insufficient_scope`, naming the scope, and reaches nothing behind it.

    Both protocol revisions post a JSON-RPC request to /mcp (2026-07-28 also names the method and the tool in
    headers, which the SDK checks against the body): the body, already bounded, is read here once and handed
    on unchanged. A caller that holds every action scope (stdio, the single static token) passes unread.
    """

    def __init__(
        self,
        app: ASGIApp,
        access: AccessPolicy,
        *,
        max_body: int,
        connect_scope: str | None,
        metadata_url: str | None,
        audit_log: Callable[[], AuditLog | None] = lambda: None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._app = app
        self._access = access
        self._audit_log = audit_log
        self._max_body = max_body
        self._connect_scope = connect_scope
        self._metadata_url = metadata_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        caller = current_principal()
        if self._access.allowed_actions(caller) == frozenset(ACTIONS):
            await self._app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body") or size > self._max_body:
                break
        complete = messages[-1]["type"] == "http.request" and not messages[-1].get("more_body")
        missing = self._missing(b"".join(m.get("body", b"") for m in messages), caller) if complete else None
        if missing is not None:
            tool, needed, request = missing
            # A denial is audited like any other: who asked, for what, in which request and trace.
            params: dict[str, Any] = request["params"]  # a dict: the tool's name was read from it
            arguments = params.get("arguments")
            arguments = arguments if isinstance(arguments, dict) else {}
            meta = params.get("_meta")
            await record_denial(
                self._audit_log(),
                tool[:64],
                Actor.of(caller),
                "forbidden",
                request_id=request.get("id"),
                trace_id=trace_id_of(meta if isinstance(meta, dict) else None),
                server_id=_plain_id(arguments.get("server_id")),
                snapshot_id=_plain_id(arguments.get("snapshot_id")),
            )
            await self._refuse(tool, needed, scope, receive, send)
            if self._metrics is not None:  # counted as the adapter's forbidden is: a call refused for permission
                self._metrics.operation_done("tools/call", tool, "forbidden", 0.0)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self._app(scope, replay, send)

    def _missing(self, body: bytes, caller: Principal) -> tuple[str, str, dict[str, Any]] | None:
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            return None  # the SDK answers a parse error
        for request in decoded if isinstance(decoded, list) else [decoded]:
            if not isinstance(request, dict) or request.get("method") != "tools/call":
                continue
            params = request.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            if isinstance(name, str):
                needed = self._access.missing_scope(name, caller)
                if needed is not None:
                    return name, needed, request
        return None

    async def _refuse(self, tool: str, needed: str, scope: Scope, receive: Receive, send: Send) -> None:
        logger.info("%s refused: the caller lacks the scope %s", tool[:64], needed)
        scopes = f"{self._connect_scope} {needed}" if self._connect_scope else needed
        challenge = f'Bearer error="insufficient_scope", scope="{scopes}"'
        if self._metadata_url is not None:
            challenge += f', resource_metadata="{self._metadata_url}"'
        description = f"{tool[:64]} needs the scope {needed}; nothing was changed"
        challenge += f', error_description="{needed} required"'
        response = JSONResponse(
            {"error": "insufficient_scope", "error_description": description, "scope": needed},
            status_code=403,
            headers={"WWW-Authenticate": challenge},
        )
        await response(scope, receive, send)


def _plain_id(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 2**53 - 1 else None


def gate_scopes(
    app: Starlette,
    access: AccessPolicy,
    settings: Settings,
    *,
    path: str,
    audit_log: Callable[[], AuditLog | None] = lambda: None,
    metrics: Metrics | None = None,
) -> None:
    """Put the scope gate in front of the MCP endpoint of `app` (inside the SDK's OAuth middleware, so the caller
    is known) and, with OAuth, publish every action scope in the protected-resource metadata."""
    metadata_url = None
    if settings.oauth_enabled:
        assert settings.public_url is not None and settings.oauth_issuer is not None
        resource = AnyHttpUrl(settings.public_url)
        metadata_url = str(build_resource_metadata_url(resource))
        ours = create_protected_resource_routes(
            resource_url=resource,
            authorization_servers=[AnyHttpUrl(settings.oauth_issuer)],
            scopes_supported=supported_scopes(settings),
        )
        paths = {route.path for route in ours}
        app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in paths] + list(ours)
    for route in app.router.routes:
        if isinstance(route, Route) and route.path == path:
            route.app = ScopeGate(
                route.app,
                access,
                max_body=settings.max_body_bytes,
                connect_scope=settings.oauth_scope if settings.oauth_enabled else None,
                metadata_url=metadata_url,
                audit_log=audit_log,
                metrics=metrics,
            )
            return
    raise RuntimeError(f"the MCP endpoint {path} is not a route of the app")  # the SDK changed: fail at start
