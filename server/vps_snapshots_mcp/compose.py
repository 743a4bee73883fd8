"""The composition root: everything the server is made of, built from `Settings` once.

    state           the consent ledger and the stream event log, over one connection (`state.open_state`)
    tokens          confirmation tokens, keyed by the confirmation secret
    audit           the audit log the settings name (opened by the lifespan, closed with it)
    provider        the provider client factory: a client is made at the first call that needs one, one per
                    provider credential (the server's token, or a token file a `--policy` rule names)
    client auth     HTTP only: a static bearer token (middleware) or an OAuth verifier (the SDK's auth)
    metrics         HTTP only: the server's instruments in a registry of its own (`metrics.py`), served at /metrics
                    (guarded like /mcp) and on --metrics-port; fed by an MCP middleware and the rooms that count
    routes          HTTP routes beside /mcp: /healthz, /readyz (the ledger); an approval page joins the list
    server          the protocol adapter (`protocol/server.py`), with the SDK seam checked (`protocol/sdk.py`)

`check_start(settings)` is what can be found wrong before serving (one line each, exit 2 in the CLI);
`compose(settings)` returns the whole; `build_server` is its server alone. Only
this module and `cli.py` import this module; the protocol adapter knows neither.
"""

from __future__ import annotations

import errno
import functools
import importlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from . import __version__
from .access import EVERYONE, AccessPolicy
from .audit import AuditLog
from .errors import ForbiddenError, SnapshotsError
from .protocol import host_logging as client_logging
from .protocol import sdk
from .protocol.app_context import AppContext
from .protocol.instructions import instructions_for
from .protocol.principal import current_principal
from .protocol.prompts import register_completion
from .protocol.published import published_tools
from .protocol.rounds import RoundMemory, request_state_security, sealed_round
from .protocol.server import SERVER_NAME, SnapshotsServer
from .protocol.streams import EVENT_TTL_S
from .provider.changes import ENDPOINTS
from .settings import Settings, SettingsError
from .state import ConsentLedger, State, open_state, sqlite_path
from .state.traced import traced
from .timing import Timing

if TYPE_CHECKING:
    from .consent.approvals import Approvals
    from .consent.tokens import ConfirmationTokens
    from .metrics import Metrics
    from .protocol.http import ASGIApp, HttpRoute
    from .protocol.web.signin import SignIn
    from .provider.client import SnapshotsClient, Transport


@dataclass(frozen=True)
class ClientAuth:
    """How HTTP clients authenticate: OAuth through the SDK (`sdk_options`), or a static token (`wrap`)."""

    sdk_options: dict[str, Any] = field(default_factory=dict)
    wrap: Callable[[ASGIApp], ASGIApp] | None = None


@dataclass(frozen=True)
class Composition:
    """What `compose` built: the server, the state it shares with the HTTP transport, and the HTTP extras."""

    settings: Settings
    server: SnapshotsServer
    state: State
    client_auth: ClientAuth
    access: AccessPolicy
    ledger: ConsentLedger
    """The consent ledger the server spends consents in (the state's, or the one `compose` was given)."""
    signin: SignIn | None = None
    """The approval page's sign-in (`--approval-client-id`), its sessions in `ledger`; None without it."""
    running: Callable[[], AppContext | None] = lambda: None
    """The running lifespan's context (None before it starts and after it ends)."""

    def approvals(self) -> Approvals | None:
        """The approval service of the running server, for the approval page (None while it is not running)."""
        app = self.running()
        return app.approvals if app is not None else None

    metrics: Metrics | None = None
    """The server's instruments: on the HTTP transport only (stdio has nowhere to serve them)."""

    def http_routes(self) -> list[HttpRoute]:
        """The HTTP routes beside /mcp (the place for an approval page); /metrics is added by `http_app`."""
        from .protocol.http import health_route, ready_route

        pages: list[HttpRoute] = []
        if self.signin is not None:
            from .protocol.web.pages import ApprovalPages

            assert self.settings.site_url is not None
            pages = [
                *self.signin.routes(),
                *ApprovalPages(self.signin, self.approvals, site_url=self.settings.site_url).routes(),
            ]
        return [health_route(), ready_route(self.ledger, self.metrics), *pages]

    def metrics_app(self) -> ASGIApp | None:
        """The `--metrics-port` listener's app (/metrics alone), or None without metrics."""
        from .protocol.http import metrics_app

        return metrics_app(self.metrics) if self.metrics is not None else None

    def http_app(self) -> ASGIApp:
        """The ASGI app serving the server over streamable HTTP, client authentication included."""
        from .protocol.http import http_app

        return http_app(
            self.server,
            self.settings,
            routes=self.http_routes(),
            events=self.state.events,
            wrap=self.client_auth.wrap,
            access=self.access,
            metrics=self.metrics,
        )


REDIS_EXTRA = "pip install -e '.[redis]' in the clone (uvx: --with redis)"
"""How to install the redis extra where the server is installed today (from a clone, or with uvx)."""


def check_start(settings: Settings) -> None:
    """What would stop the server after it started, found before: `SettingsError`, one line naming the fix.

    The extras the settings need are installed, the SQLite ledger's directory exists, and the HTTP port is free
    (`START_CHECKS`, which `doctor` runs one by one too).
    """
    for _, check in START_CHECKS:
        check(settings)


def check_extras(settings: Settings) -> None:
    """`SettingsError` when the settings need an extra that is not installed (redis:// without `redis`)."""
    url = settings.state_url
    if url is not None and urlsplit(url).scheme in ("redis", "rediss"):
        try:
            importlib.import_module("redis.asyncio")
        except ImportError:
            raise SettingsError(
                f"VPS_MCP_STATE_URL names Redis, but the redis extra is not installed: {REDIS_EXTRA}"
            ) from None


def check_state_directory(settings: Settings) -> None:
    """`SettingsError` when a SQLite ledger's directory does not exist."""
    url = settings.state_url
    if url is not None and urlsplit(url).scheme == "sqlite":
        directory = os.path.dirname(sqlite_path(url))
        if not os.path.isdir(directory):
            raise SettingsError(
                f"VPS_MCP_STATE_URL: the directory {directory} does not exist; create it (mkdir -p {directory}) "
                "or name another"
            )


def check_http_port(settings: Settings) -> None:
    """`SettingsError` when the HTTP port cannot be listened on now (port 0 picks a free one)."""
    if settings.transport == "http" and settings.port != 0:
        check_port(settings.host, settings.port)


START_CHECKS: tuple[tuple[str, Callable[[Settings], None]], ...] = (
    ("extras", check_extras),
    ("state directory", check_state_directory),
    ("port", check_http_port),
)
"""What `check_start` checks, by the name `doctor` prints."""


def check_port(host: str, port: int) -> None:
    """`SettingsError` unless `host:port` can be listened on now (bound and let go, as the server will bind it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            fix = "; stop what is using it, or choose another --port (VPS_MCP_PORT)"
            why = exc.strerror or str(exc)
            raise SettingsError(
                f"cannot listen on {host}:{port}: {why}{fix if exc.errno == errno.EADDRINUSE else ''}"
            ) from None


def compose(
    settings: Settings,
    transport: Transport | None = None,
    *,
    timing: Timing | None = None,
    ledger: ConsentLedger | None = None,
) -> Composition:
    """Everything for `settings`, talking to the provider through `transport` (default: the network).

    `timing` is every clock and sleep (tests inject one); `ledger` overrides the one `settings.state_url` names.
    """
    timing = timing or Timing()
    secret = settings.confirm_secret.get_secret_value().encode() if settings.confirm_secret else None

    @functools.cache  # one for the composition, whichever lifespan asks first
    def tokens() -> ConfirmationTokens:  # made at the first call that needs them: a start-up loads no consent
        from .consent.tokens import ConfirmationTokens

        return ConfirmationTokens(secret, wall=timing.wall)

    assert settings.api_token is not None, "Settings guarantees a token"
    state = open_state(settings.state_url, wall=timing.wall, event_ttl_s=EVENT_TTL_S)
    access = AccessPolicy.from_settings(settings)
    published = published_tools(access, EVERYONE)
    metrics = None
    if settings.transport == "http":  # stdio keeps none, and never loads the metrics library
        from .metrics import Metrics

        metrics = Metrics(tools=(tool["name"] for tool in published), endpoints=ENDPOINTS.values())
    open_client = provider_factory(settings, settings.api_token, transport, timing, metrics)
    live: list[AppContext] = []  # the running lifespan's context, for handlers that get no request context

    @asynccontextmanager
    async def lifespan(server: object) -> AsyncIterator[AppContext]:
        consent_ledger = traced(ledger or state.ledger)  # its spending calls in spans (no-op ones untraced)
        await consent_ledger.prepare()  # best effort: marks a new ledger's birth, names a Redis that may evict
        audit_log = AuditLog(settings.audit_log, now=timing.now) if settings.audit_log else None
        assert isinstance(server, SnapshotsServer)
        server.audit_log = audit_log

        def approvals() -> Approvals:  # made at the first call or page that needs it
            from .consent.approvals import Approvals
            from .webhook import Webhooks

            return Approvals(
                consent_ledger,
                access,
                wall=timing.wall,
                site_url=settings.site_url,
                expiry_s=settings.approval_expiry,
                audit=audit_log,
                notify=Webhooks(access),
            )

        app = AppContext(
            settings=settings,
            timing=timing,
            tokens=tokens,
            ledger=consent_ledger,
            access=access,
            open_client=open_client,
            approvals=approvals,
            metrics=metrics,
        )
        live.append(app)
        try:
            yield app
        finally:
            live.remove(app)
            try:
                await app.aclose_clients()
            finally:
                server.audit_log = None
                if audit_log is not None:
                    audit_log.close()
                await state.aclose()  # the ledger's and the event log's one connection (reopened if used again)

    async def list_servers() -> list[tuple[int, str | None]]:
        """Servers seen in the snapshot list (the API has no server list), for argument completion."""
        if not live:
            return []
        try:
            snapshots = await live[-1].client.list_snapshots()
        except SnapshotsError:
            return []  # completion is a convenience; a provider failure just means no suggestions
        seen = {(s.server.id, s.server.name) for s in snapshots if s.server is not None}
        return sorted(access.visible(seen, lambda server: server[0], current_principal()))

    auth = client_authentication(settings, timing)
    security = request_state_security(secret)
    server = SnapshotsServer(
        SERVER_NAME,
        published=published,
        access=access,
        title="VPS Snapshots",
        version=__version__,
        instructions=instructions_for(access, EVERYONE, frozenset(tool["name"] for tool in published)),
        lifespan=lifespan,
        log_level=settings.log_level,
        request_state_security=security,
        **auth.sdk_options,
    )
    if metrics is not None:
        from .protocol.metered import MeteredRequests

        server.middleware.insert(0, MeteredRequests(metrics))  # outermost: it times what the others do too
    register_completion(server, list_servers)
    sdk.install_before_request_state_boundary(server, RoundMemory(security))
    client_logging.install(server, settings.log_level, *settings.secrets())
    sdk.check_server(
        server,
        schema_lookup=server.input_schema,
        round_memory=RoundMemory,
        codec=security.codec,
        seen_round=sealed_round,
    )
    return Composition(
        settings=settings,
        server=server,
        state=state,
        client_auth=auth,
        access=access,
        ledger=ledger or state.ledger,
        signin=signin_for(settings, ledger or state.ledger),
        running=lambda: live[-1] if live else None,
        metrics=metrics,
    )


def signin_for(settings: Settings, ledger: ConsentLedger) -> SignIn | None:
    """The approval page's sign-in when the settings name its OpenID Connect client (HTTP with OAuth only)."""
    if settings.transport != "http" or not settings.signin_enabled:
        return None
    from .protocol.web.signin import SignIn

    return SignIn(settings, ledger)


def build_server(
    settings: Settings,
    transport: Transport | None = None,
    *,
    timing: Timing | None = None,
    ledger: ConsentLedger | None = None,
) -> SnapshotsServer:
    """The MCP server for `settings` (see `compose`)."""
    return compose(settings, transport, timing=timing, ledger=ledger).server


def provider_factory(
    settings: Settings,
    api_token: SecretStr,
    transport: Transport | None,
    timing: Timing,
    metrics: Metrics | None = None,
) -> Callable[[str | None], SnapshotsClient]:
    """Makes the provider client the settings describe, with `api_token` or the token in the file `credential`
    (a policy's rule names it); called at the first call that needs one for that credential (see app_context)."""

    def open_client(credential: str | None = None) -> SnapshotsClient:
        from .provider.client import SERVER_RETRY_POLICY, SnapshotsClient  # with the provider's records: not at start

        return SnapshotsClient(
            base_url=settings.api_url,
            token=api_token if credential is None else credential_token(credential),
            timeout_s=settings.timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
            transport=transport,
            timing=timing,
            retry=SERVER_RETRY_POLICY,
            max_concurrency=settings.max_concurrency,
            max_response_bytes=settings.max_response_bytes,
            max_records=settings.max_records,
            metrics=metrics,
        )

    return open_client


def credential_token(path: str) -> SecretStr:
    """The provider token in the file `path` (a policy rule's credential); forbidden when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as exc:
        token, why = "", exc.strerror
    else:
        why = "it is empty"
    if not token:
        raise ForbiddenError(
            f"the provider credential file {path} that the policy names for this caller cannot be used ({why}), so "
            "no call of this caller is sent with any other. Nothing was sent. Ask the operator to fix the file."
        )
    return SecretStr(token)


def client_authentication(settings: Settings, timing: Timing | None = None) -> ClientAuth:
    """Who may call over HTTP: a static bearer token checked by our middleware, or OAuth checked by the SDK."""
    sdk_options: dict[str, Any] = {}
    if settings.transport == "http" and settings.oauth_enabled:
        from .protocol.auth import oauth_for  # PyJWT is needed only for OAuth

        sdk_options["auth"], sdk_options["token_verifier"] = oauth_for(settings)
    wrap = None
    if settings.auth_token is not None or settings.auth_tokens_file is not None:
        from .protocol.tokens_file import TokensFile

        token = settings.auth_token
        # Read at start: a broken tokens file stops the server here (SettingsError), before it serves.
        tokens_file = settings.auth_tokens_file if settings.transport == "http" else None
        monotonic = (timing or Timing()).monotonic  # how often the file is looked at
        named = TokensFile(tokens_file, monotonic=monotonic) if tokens_file is not None else None

        def wrap(app: ASGIApp) -> ASGIApp:
            from .protocol.auth import StaticTokenMiddleware

            return StaticTokenMiddleware(app, token, named)

    return ClientAuth(sdk_options=sdk_options, wrap=wrap)


__all__ = [
    "START_CHECKS",
    "ClientAuth",
    "Composition",
    "build_server",
    "check_port",
    "check_start",
    "client_authentication",
    "compose",
    "provider_factory",
]
