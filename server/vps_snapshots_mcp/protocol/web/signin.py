"""Sign-in for the approval page: the deployment's OpenID Connect issuer, server-side sessions, CSRF, headers.

    GET  /approve/login?next=/approve/...   start: state, nonce and PKCE verifier kept in the ledger (10 min),
                                            bound to this browser by a login cookie; off to the issuer
    GET  /approve/callback                  the issuer's answer: the login taken once, the code exchanged,
                                            the ID token checked (oidc.py); a session opened; back to `next`
    POST /approve/logout                    (CSRF token) the session ended in the ledger, for every replica

The session is a random 256-bit id in a cookie (HttpOnly, SameSite=Lax, Path=/; Secure with the `__Host-` prefix
when the public URL is https); the ledger keeps only its digest, with an idle (30 min) and an absolute (8 h)
expiry on the ledger's clock, so every replica sharing the ledger accepts it and a sign-out ends it everywhere.
A CSRF token is an HMAC of the session id: bound to the session, never stored. `next` is only ever a path under
/approve/. Pages carry a strict Content-Security-Policy and refuse framing (`security_headers`).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ...errors import StateUnavailableError
from ...person import Person
from ...settings import Settings
from ...state import ConsentLedger
from ..http import HttpRoute
from ..principal import Principal
from .oidc import LoginStart, OidcClient, SignInFailed

logger = logging.getLogger(__name__)

PREFIX = "/approve"
SESSION_IDLE_S = 30 * 60.0
SESSION_LIFETIME_S = 8 * 3600.0
LOGIN_TTL_S = 10 * 60.0
MAX_FORM_BYTES = 16 * 1024
_NEXT = re.compile(r"/approve/[A-Za-z0-9_\-./]*")
_COOKIE = re.compile(r"[A-Za-z0-9_\-]{20,100}")
Endpoint = Callable[[Request], Awaitable[Response]]


def security_headers(style_nonce: str | None = None) -> dict[str, str]:
    """The headers of every page: a strict Content-Security-Policy (nothing but our own forms and one nonced
    style), no framing, no referrer, no caching, no sniffing."""
    style = f"'nonce-{style_nonce}'" if style_nonce else "'none'"
    policy = (
        f"default-src 'none'; style-src {style}; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }


STYLE = "body{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;line-height:1.5}"


def html_page(title: str, body: str, *, status: int = 200, style: str = STYLE) -> HTMLResponse:
    """A page with the security headers. `title` is escaped here; `body` is HTML the caller built and escaped."""
    nonce = secrets.token_urlsafe(16)
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width"><style nonce="{nonce}">{style}</style></head>'
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=security_headers(nonce))


async def form_of(request: Request, *, limit: int = MAX_FORM_BYTES) -> dict[str, str] | None:
    """An urlencoded form's fields (the first value of each); None when the body is larger than `limit`."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50)
    return {name: values[0] for name, values in fields.items()}


def safe_next(value: str | None) -> str | None:
    """`value` when it is a path under /approve/ (so a sign-in can never send the browser elsewhere), else None."""
    if value is None:
        return f"{PREFIX}/"
    if not _NEXT.fullmatch(value) or "//" in value or "/." in value:
        return None
    return value


def _digest(kind: str, value: str) -> str:
    return hashlib.sha256(f"vps-snapshots-mcp/signin/{kind}\x00{value}".encode()).hexdigest()


def person_principal(person: Person) -> Principal:
    """The principal an MCP call by this person would have (its key is `person.principal_key`)."""
    return Principal(kind="oauth", id=f"{person.issuer}#{person.subject}", scopes=person.scopes, groups=person.groups)


class SignIn:
    """The approval page's sign-in; the composition root builds one and hands it to the pages."""

    def __init__(self, settings: Settings, ledger: ConsentLedger, oidc: OidcClient | None = None) -> None:
        assert settings.signin_enabled and settings.site_url and settings.signin_issuer
        assert settings.approval_client_id and settings.approval_client_secret
        self._ledger = ledger
        self._issuer = settings.signin_issuer
        self.secure = settings.site_url.startswith("https://")
        prefix = "__Host-" if self.secure else ""
        self.session_cookie = f"{prefix}vps-approve"
        self.login_cookie = f"{prefix}vps-approve-login"
        self.callback_url = f"{settings.site_url}{PREFIX}/callback"
        self._oidc = oidc or OidcClient(
            issuer=settings.signin_issuer,
            client_id=settings.approval_client_id,
            client_secret=settings.approval_client_secret,
            redirect_uri=self.callback_url,
            groups_claim=settings.oauth_groups_claim,
        )

    # --- what the pages ask -----------------------------------------------------------------------------

    async def signed_in(self, request: Request) -> Person | None:
        """The person whose session cookie `request` carries, or None. `StateUnavailableError` when the ledger
        cannot be read."""
        cookie = self._cookie(request, self.session_cookie)
        if cookie is None:
            return None
        record = await self._ledger.session(_digest("session", cookie))
        if record is None:
            return None
        held = json.loads(record)
        held["scopes"], held["groups"] = frozenset(held["scopes"]), frozenset(held["groups"])
        return Person(**held)

    def csrf_token(self, request: Request, person: Person) -> str:
        """The CSRF token of the session `request` carries (an HMAC of its id: bound to it, stored nowhere)."""
        cookie = self._cookie(request, self.session_cookie)
        assert cookie is not None, "a CSRF token is for a signed-in request"
        return hmac.new(cookie.encode(), f"csrf\x00{person.principal_key}".encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, request: Request, person: Person, form_value: str | None) -> bool:
        """Whether `form_value` is the CSRF token of the session `request` carries, for `person`."""
        if not form_value or self._cookie(request, self.session_cookie) is None:
            return False
        return hmac.compare_digest(form_value.encode(), self.csrf_token(request, person).encode())

    def login_url(self, next_path: str) -> str:
        """Where a page sends a person who is not signed in (`next_path`: a path under /approve/)."""
        return f"{PREFIX}/login?next={quote(next_path, safe='/')}"

    def routes(self) -> list[HttpRoute]:
        return [
            HttpRoute(f"{PREFIX}/login", ("GET",), self.guarded(self.login)),
            HttpRoute(f"{PREFIX}/callback", ("GET",), self.guarded(self.callback)),
            HttpRoute(f"{PREFIX}/logout", ("POST",), self.guarded(self.logout)),
        ]

    # --- the routes -------------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        target = safe_next(request.query_params.get("next"))
        if target is None:
            return html_page(
                "Sign-in refused", "<p>A sign-in may only lead back to a page under /approve/.</p>", status=400
            )
        start = LoginStart.new()
        login_id = secrets.token_urlsafe(32)
        record = json.dumps({"state": start.state, "nonce": start.nonce, "verifier": start.verifier, "next": target})
        await self._ledger.open_session(_digest("login", login_id), record, idle_s=LOGIN_TTL_S, lifetime_s=LOGIN_TTL_S)
        response = RedirectResponse(await self._oidc.authorization_url(start), status_code=302)
        response.headers.update(security_headers())
        self._set_cookie(response, self.login_cookie, login_id, LOGIN_TTL_S)
        return response

    async def callback(self, request: Request) -> Response:
        cookie = self._cookie(request, self.login_cookie)
        key = _digest("login", cookie) if cookie else None
        record = await self._ledger.session(key) if key else None
        if key is None or record is None:
            return self._failed("This sign-in was not started in this browser, or it expired (10 minutes).")
        held = json.loads(record)
        state = request.query_params.get("state", "")
        if not hmac.compare_digest(state.encode(), str(held["state"]).encode()):
            return self._failed("This answer from the identity provider is not for this sign-in.")
        if not await self._ledger.end_session(key):  # taken once: a replayed answer finds nothing
            return self._failed("This sign-in was already used.")
        code = request.query_params.get("code")
        if not code or "error" in request.query_params:
            return self._failed("The identity provider did not sign you in.")
        start = LoginStart(held["state"], held["nonce"], held["verifier"])
        try:
            identity = await self._oidc.identity(code, start)
        except SignInFailed as exc:
            return self._failed(str(exc))
        person = Person(
            issuer=self._issuer,
            subject=identity.subject,
            name=identity.name,
            principal_key=Principal(kind="oauth", id=f"{self._issuer}#{identity.subject}").key,
            scopes=identity.scopes,
            groups=identity.groups,
        )
        previous = self._cookie(request, self.session_cookie)
        if previous is not None:  # a new sign-in in this browser: the session it had ends (no fixation, no orphan)
            await self._ledger.end_session(_digest("session", previous))
        session_id = secrets.token_urlsafe(32)
        fields = asdict(person) | {"scopes": sorted(person.scopes), "groups": sorted(person.groups)}
        await self._ledger.open_session(
            _digest("session", session_id), json.dumps(fields), idle_s=SESSION_IDLE_S, lifetime_s=SESSION_LIFETIME_S
        )
        logger.info("signed in on the approval page: %s", person.principal_key)
        response = RedirectResponse(held["next"], status_code=303)
        response.headers.update(security_headers())
        self._set_cookie(response, self.session_cookie, session_id, SESSION_LIFETIME_S)
        self._clear_cookie(response, self.login_cookie)
        return response

    async def logout(self, request: Request) -> Response:
        person = await self.signed_in(request)
        form = await form_of(request)
        if person is None or form is None or not self.check_csrf(request, person, form.get("csrf")):
            return html_page(
                "Not signed out", "<p>This sign-out did not come from a page of this server.</p>", status=403
            )
        cookie = self._cookie(request, self.session_cookie)
        assert cookie is not None
        await self._ledger.end_session(_digest("session", cookie))
        response = html_page("Signed out", f'<p>You are signed out.</p><p><a href="{PREFIX}/login">Sign in</a></p>')
        self._clear_cookie(response, self.session_cookie)
        return response

    # --- helpers ----------------------------------------------------------------------------------------

    def guarded(self, endpoint: Endpoint) -> Endpoint:
        """`endpoint` answering 503 when the ledger is unreachable, 502 when the identity provider is."""

        async def guarded(request: Request) -> Response:
            try:
                return await endpoint(request)
            except StateUnavailableError:
                logger.warning("the approval page cannot reach the consent ledger")
                return html_page(
                    "Unavailable", "<p>The approval service cannot reach its state; try again.</p>", status=503
                )
            except SignInFailed as exc:  # the identity provider cannot be reached (or is misconfigured)
                return html_page("Sign-in unavailable", f"<p>{html.escape(str(exc))}</p>", status=502)

        return guarded

    def _failed(self, why: str) -> Response:
        body = f'<p>{html.escape(why)}</p><p><a href="{PREFIX}/login">Sign in again</a></p>'
        response = html_page("Sign-in failed", body, status=400)
        self._clear_cookie(response, self.login_cookie)
        return response

    @staticmethod
    def _cookie(request: Request, name: str) -> str | None:
        value = request.cookies.get(name)
        return value if value is not None and _COOKIE.fullmatch(value) else None

    def _set_cookie(self, response: Response, name: str, value: str, max_age: float) -> None:
        response.set_cookie(
            name, value, max_age=int(max_age), path="/", secure=self.secure, httponly=True, samesite="lax"
        )

    def _clear_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="lax")


__all__ = [
    "PREFIX",
    "SignIn",
    "form_of",
    "html_page",
    "person_principal",
    "safe_next",
    "security_headers",
]
