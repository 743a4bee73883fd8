"""The streamable HTTP transport: MCP at `/mcp`, `/healthz`, `/readyz`, `/metrics`, Host/Origin checks, a body limit.

The composition root (`compose.py`) says what to serve: the routes beside
`/mcp`, the event log, and the client authentication.

The SDK serves both protocol revisions (2025-11-25 and 2026-07-28) on the same
endpoint. `--stateless` keeps no MCP session on the server, so a load balancer
may send each request to any replica.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route, request_response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..access import AccessPolicy
from ..audit import trace_id_of
from ..logs import bound_fields
from ..metrics import Metrics
from ..settings import Settings
from ..state import ConsentLedger, EventLog
from . import sdk as sdk_seam
from .streams import RETRY_MS, NoStreams, ResumableStreams

access_logger = logging.getLogger("vps_snapshots_mcp.access")
MCP_PATH = "/mcp"
METRICS_PATH = "/metrics"
READY_DEADLINE_S = 3.0
"""`/readyz` answers within this whatever the state store does (a Redis PING gives up after 2 s): a probe's
timeout must be longer."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: which Host and Origin headers are accepted.

    Loopback and the public URL are always accepted; `--allowed-hosts` and
    `--allowed-origins` add more. `--allowed-hosts '*'` turns the checks off,
    for deployments whose proxy already pins the Host.
    """
    if "*" in settings.allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts: list[str] = []
    origins: list[str] = []
    for host in LOOPBACK_HOSTS:
        hosts += [host, f"{host}:*"]
        origins += [f"http://{host}:*", f"http://{host}", f"https://{host}:*", f"https://{host}"]
    if settings.host not in ("0.0.0.0", "::", "") and settings.host not in LOOPBACK_HOSTS:  # noqa: S104 - a comparison
        hosts += [settings.host, f"{settings.host}:*"]
    if settings.public_url:
        public = urlsplit(settings.public_url)
        hosts.append(public.netloc)
        origins.append(f"{public.scheme}://{public.netloc}")
    hosts += settings.allowed_hosts
    origins += settings.allowed_origins
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


@dataclass(frozen=True)
class HttpRoute:
    """A route served beside /mcp (the composition root lists them: /healthz, /readyz, an approval page later)."""

    path: str
    methods: tuple[str, ...]
    endpoint: Callable[[Request], Awaitable[Response]]


def health_route() -> HttpRoute:
    """`GET /healthz`: the server is up, and its version (open: no client authentication, see auth.OPEN_PATHS)."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    return HttpRoute("/healthz", ("GET",), healthz)


def metrics_endpoint(metrics: Metrics) -> Callable[[Request], Awaitable[Response]]:
    """`GET /metrics`: the server's metrics in the Prometheus text format (protected as /mcp is: `http_app`)."""

    async def exposition(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return exposition


def metrics_app(metrics: Metrics) -> ASGIApp:
    """The `--metrics-port` listener: `/metrics` alone, no MCP and no client authentication (loopback unless
    `--metrics-host` says otherwise)."""
    return Starlette(routes=[Route(METRICS_PATH, metrics_endpoint(metrics), methods=["GET"])])


def ready_route(ledger: ConsentLedger, metrics: Metrics | None = None) -> HttpRoute:
    """`GET /readyz`: 200 while the consent ledger's store can be reached, 503 naming it (never its password) while
    it cannot, so a pod whose every restore would be refused `state_unavailable` takes no traffic. Open like
    `/healthz` (auth.OPEN_PATHS); cheap, bounded by `READY_DEADLINE_S`; it spends no consent."""

    async def readyz(request: Request) -> Response:
        why: str | None = f"the consent ledger ({ledger.description}) did not answer within {READY_DEADLINE_S:g} s"
        with anyio.move_on_after(READY_DEADLINE_S):
            why = await ledger.unavailable()
        if metrics is not None:
            metrics.ledger_up.set(why is None)
        if why is None:
            return JSONResponse({"status": "ready", "ledger": ledger.description})
        return JSONResponse({"status": "unavailable", "ledger": ledger.description, "reason": why}, status_code=503)

    return HttpRoute("/readyz", ("GET",), readyz)


def http_app(
    server: MCPServer[Any],
    settings: Settings,
    *,
    routes: Sequence[HttpRoute],
    events: EventLog,
    wrap: Callable[[ASGIApp], ASGIApp] | None,
    access: AccessPolicy | None = None,
    metrics: Metrics | None = None,
) -> ASGIApp:
    """The ASGI app serving `server` over streamable HTTP, with `routes` beside it, wrapped by `wrap` (client
    authentication by a static token); stateful sessions resume dropped streams from `events`. With client
    authentication, a tool call the caller holds no scope for is answered 403 by `access` (auth.ScopeGate).
    Every request has its access line (`AccessLog`)."""
    for route in routes:
        server.custom_route(route.path, methods=list(route.methods))(route.endpoint)

    # Stateful sessions resume a dropped stream from the state store's event log, each session from its own
    # events only (the SDK's one store is replaced per session, see sdk_seam); stateless ones have no session
    # to resume.
    resumable = None
    if not settings.stateless:
        sdk_seam.self_check()
        resumable = ResumableStreams(events, metrics)
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=settings.stateless,
        event_store=NoStreams() if resumable is not None else None,
        retry_interval=RETRY_MS if resumable is not None else None,
        max_request_body_size=settings.max_body_bytes,
        transport_security=transport_security(settings),
        host=settings.host,
    )
    if metrics is not None:
        assert isinstance(app, Starlette)
        app.router.routes.insert(0, guarded_like_mcp(server, METRICS_PATH, metrics_endpoint(metrics)))
    if resumable is not None:
        sdk_seam.store_events_per_session(server.session_manager, resumable.for_session)
    if access is not None and settings.client_auth_enabled:
        from .auth import gate_scopes

        assert isinstance(app, Starlette)
        audit_log = lambda: getattr(server, "audit_log", None)  # noqa: E731 - read when a call is refused
        gate_scopes(app, access, settings, path=MCP_PATH, audit_log=audit_log, metrics=metrics)
    assert isinstance(app, Starlette)
    served = app.routes
    if wrap is not None:
        app = wrap(app)
    return AccessLog(app, served)  # outermost: a request refused by the client authentication has its line too


class AccessLog:
    """One line per HTTP request on the `vps_snapshots_mcp.access` logger (INFO), when its answer has gone:
    method, the route's path template (never a query; `*` for a path no route serves: anyone's text),
    status, duration in ms, and the request's own id (`http_request_id`, also bound to every record logged
    while it is served, and sent back as `X-Request-Id`); the trace id of a valid `traceparent` header.
    No header, cookie, query or body is logged."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    def _template(self, scope: Scope) -> str:
        for route in self.routes:
            if route.matches(scope)[0] is not Match.NONE and isinstance(getattr(route, "path", None), str):
                return str(getattr(route, "path"))  # noqa: B009 - BaseRoute declares no path
        return "*"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        started = time.perf_counter()
        status = 500  # an app that fails before answering: the server answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            with bound_fields(http_request_id=request_id):
                await self.app(scope, receive, send_with_id)
        finally:
            headers = dict(scope.get("headers") or [])
            raw_trace = headers.get(b"traceparent", b"").decode("latin-1")
            fields = {
                "method": str(scope.get("method", "")),
                "path": self._template(scope),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "http_request_id": request_id,
                "trace_id": trace_id_of({"traceparent": raw_trace}),
            }
            access_logger.info(
                "%s %s %d %.1f ms", fields["method"], fields["path"], status, fields["duration_ms"], extra=fields
            )


def guarded_like_mcp(server: MCPServer[Any], path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> Route:
    """`GET path` answered by `endpoint` behind the OAuth check the SDK puts before /mcp (the same scopes and
    WWW-Authenticate); with a static token, `StaticTokenMiddleware` guards every path but `auth.OPEN_PATHS`."""
    auth = server.settings.auth  # set with OAuth (compose.client_authentication), with its token verifier
    if auth is None:
        return Route(path, endpoint, methods=["GET"])
    from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
    from mcp.server.auth.routes import build_resource_metadata_url

    metadata = build_resource_metadata_url(auth.resource_server_url) if auth.resource_server_url else None
    guarded = RequireAuthMiddleware(request_response(endpoint), auth.required_scopes or [], metadata)
    return Route(path, guarded, methods=["GET"])


def serve_http(app: ASGIApp, settings: Settings, metrics: ASGIApp | None = None) -> None:
    """Serve `app` until interrupted; and `metrics` on `--metrics-host`:`--metrics-port` when given. uvicorn's own
    records go to the root logger (`log_config=None`), in the format the command line set up."""

    def config(app: ASGIApp, host: str, port: int, lifespan: str) -> uvicorn.Config:
        return uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            log_config=None,  # no handlers of its own: its records propagate to ours (one format, redacted)
            access_log=False,  # ours instead (AccessLog): uvicorn's would carry the query string
            server_header=False,
            lifespan=lifespan,  # type: ignore[arg-type]
        )

    main = uvicorn.Server(config(app, settings.host, settings.port, "on"))
    if metrics is None or settings.metrics_port is None:
        main.run()
        return
    side = uvicorn.Server(config(metrics, settings.metrics_host, settings.metrics_port, "off"))

    async def serve(server: uvicorn.Server, other: uvicorn.Server) -> None:
        await server.serve()
        other.should_exit = True  # either one stopping (a signal reaches one of them) stops both

    async def both() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(serve, side, main)
            await serve(main, side)

    anyio.run(both)


__all__ = [
    "LOOPBACK_HOSTS",
    "MCP_PATH",
    "METRICS_PATH",
    "READY_DEADLINE_S",
    "ASGIApp",
    "AccessLog",
    "HttpRoute",
    "health_route",
    "http_app",
    "metrics_app",
    "ready_route",
    "serve_http",
    "transport_security",
]
