"""Command line: argv + environment → Settings → serve | sandbox | demo.

    vps-snapshots-mcp [serve] [options]     the MCP server on stdio (the default)
    vps-snapshots-mcp sandbox [--port N]    the provider simulator on a loopback port
    vps-snapshots-mcp demo                  a scripted runbook against the sandbox

Logs go to stderr only: on stdio, stdout carries the protocol and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast, get_args

from pydantic import SecretStr

from . import __version__
from .settings import (
    DEFAULT_API_URL,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_HTTP_PORT,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_OAUTH_SCOPE,
    DEFAULT_TIMEOUT_S,
    LogLevel,
    Settings,
    SettingsError,
    parse_server_ids,
)

if TYPE_CHECKING:
    from .client import Transport

PROG = "vps-snapshots-mcp"
SECRET_ENV_VARS = ("VPS_API_TOKEN", "VPS_MCP_AUTH_TOKEN", "VPS_MCP_CONFIRM_SECRET")
"""The secrets the server reads from its environment (deployment manifests may reference no others)."""
SANDBOX_URL = "https://sandbox.invalid/api/v1"
"""The sandbox never touches the network: requests go to an in-process ASGI app."""
EXIT_USAGE = 2

logger = logging.getLogger("vps_snapshots_mcp")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None


def _log_level(raw: str) -> LogLevel:
    level = raw.strip().upper()
    if level not in get_args(LogLevel):
        raise SettingsError(f"VPS_MCP_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR; got {raw!r}")
    return cast(LogLevel, level)


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="MCP server for VPS snapshots: list, create, restore and delete, with confirmation.",
        epilog="Commands: 'sandbox' serves the provider simulator; 'demo' plays a runbook. "
        "Every option also reads the environment variable shown.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--api-url", default=None, help=f"provider API base URL [VPS_API_URL] (default {DEFAULT_API_URL})"
    )
    parser.add_argument(
        "--api-token",
        default=None,
        help="provider API token [VPS_API_TOKEN]; prefer the environment variable, as flags show in ps",
    )
    parser.add_argument(
        "--api-token-file",
        default=None,
        metavar="PATH",
        help="read the provider API token from this file [VPS_API_TOKEN_FILE], so configs reference it",
    )
    parser.add_argument("--timeout", type=float, default=None, help="request timeout in seconds [VPS_API_TIMEOUT]")
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=None,
        help="connect timeout in seconds [VPS_API_CONNECT_TIMEOUT]",
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="use the built-in provider simulator; no token needed [VPS_MCP_SANDBOX]",
    )
    parser.add_argument(
        "--sandbox-seconds",
        type=float,
        default=6.0,
        help="in the sandbox, how long a snapshot takes (a restore takes twice as long)",
    )
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="offer only list_snapshots and get_snapshot [VPS_MCP_READ_ONLY]",
    )
    parser.add_argument(
        "--no-destructive",
        action="store_true",
        help="leave out restore_snapshot and delete_snapshot [VPS_MCP_NO_DESTRUCTIVE]",
    )
    parser.add_argument(
        "--allowed-servers",
        default=None,
        metavar="IDS",
        help="comma-separated server ids; calls touching other servers are refused [VPS_MCP_ALLOWED_SERVERS]",
    )
    parser.add_argument(
        "--audit-log", default=None, metavar="PATH", help="append a JSON line per change attempt [VPS_MCP_AUDIT_LOG]"
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="provider requests in flight at once (default 100) [VPS_MCP_MAX_CONCURRENCY]",
    )
    http = parser.add_argument_group("HTTP transport")
    http.add_argument(
        "--transport", choices=["stdio", "http"], default=None, help="stdio (default) or http [VPS_MCP_TRANSPORT]"
    )
    http.add_argument("--host", default=None, help="address to bind (default 127.0.0.1) [VPS_MCP_HOST]")
    http.add_argument("--port", type=int, default=None, help="port (default 8000) [VPS_MCP_PORT]")
    http.add_argument(
        "--stateless", action="store_true", help="no server-side sessions, for replicas [VPS_MCP_STATELESS]"
    )
    http.add_argument("--public-url", default=None, help="this server's MCP URL as clients see it [VPS_MCP_PUBLIC_URL]")
    http.add_argument(
        "--allowed-hosts", default=None, help="extra Host values, comma-separated; '*' = any [VPS_MCP_ALLOWED_HOSTS]"
    )
    http.add_argument(
        "--allowed-origins", default=None, help="extra Origin values, comma-separated [VPS_MCP_ALLOWED_ORIGINS]"
    )
    http.add_argument("--max-body-bytes", type=int, default=None, help="request body limit [VPS_MCP_MAX_BODY_BYTES]")
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="stderr log level [VPS_MCP_LOG_LEVEL] (default INFO)",
    )
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Flags win over environment variables, which win over defaults."""
    env = os.environ
    sandbox = bool(args.sandbox) or _env_flag("VPS_MCP_SANDBOX")
    token = args.api_token or env.get("VPS_API_TOKEN") or _read_token_file(args.api_token_file)
    api_url = args.api_url or env.get("VPS_API_URL") or DEFAULT_API_URL
    if sandbox:
        # The sandbox's token is made up per process; the real token is not needed, nor sent anywhere.
        token, api_url = secrets.token_urlsafe(24), SANDBOX_URL
    allowed_raw = args.allowed_servers or env.get("VPS_MCP_ALLOWED_SERVERS")
    confirm_secret = env.get("VPS_MCP_CONFIRM_SECRET")
    return Settings(
        api_token=SecretStr(token) if token else None,
        api_url=api_url,
        timeout_s=args.timeout if args.timeout is not None else _env_float("VPS_API_TIMEOUT", DEFAULT_TIMEOUT_S),
        connect_timeout_s=(
            args.connect_timeout
            if args.connect_timeout is not None
            else _env_float("VPS_API_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT_S)
        ),
        sandbox=sandbox,
        read_only=bool(args.read_only) or _env_flag("VPS_MCP_READ_ONLY"),
        no_destructive=bool(args.no_destructive) or _env_flag("VPS_MCP_NO_DESTRUCTIVE"),
        allowed_servers=parse_server_ids(allowed_raw) if allowed_raw else None,
        confirm_secret=SecretStr(confirm_secret) if confirm_secret else None,
        log_level=_log_level(args.log_level or env.get("VPS_MCP_LOG_LEVEL", "INFO")),
        audit_log=args.audit_log or env.get("VPS_MCP_AUDIT_LOG") or None,
        max_concurrency=(
            args.max_concurrency
            if args.max_concurrency is not None
            else _env_int("VPS_MCP_MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY)
        ),
        transport="http" if (args.transport or env.get("VPS_MCP_TRANSPORT", "stdio")) == "http" else "stdio",
        host=args.host or env.get("VPS_MCP_HOST") or "127.0.0.1",
        port=args.port if args.port is not None else _env_int("VPS_MCP_PORT", DEFAULT_HTTP_PORT),
        stateless=bool(args.stateless) or _env_flag("VPS_MCP_STATELESS"),
        public_url=args.public_url or env.get("VPS_MCP_PUBLIC_URL") or None,
        auth_token=SecretStr(auth_token) if (auth_token := env.get("VPS_MCP_AUTH_TOKEN")) else None,
        oauth_jwks_url=env.get("VPS_MCP_OAUTH_JWKS_URL") or None,
        oauth_issuer=env.get("VPS_MCP_OAUTH_ISSUER") or None,
        oauth_scope=env.get("VPS_MCP_OAUTH_SCOPE") or DEFAULT_OAUTH_SCOPE,
        allowed_hosts=_csv(args.allowed_hosts or env.get("VPS_MCP_ALLOWED_HOSTS")),
        allowed_origins=_csv(args.allowed_origins or env.get("VPS_MCP_ALLOWED_ORIGINS")),
        max_body_bytes=(
            args.max_body_bytes
            if args.max_body_bytes is not None
            else _env_int("VPS_MCP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
        ),
    )


def _csv(raw: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    if not raw.strip().isdigit():
        raise SettingsError(f"{name} must be a whole number, got {raw!r}")
    return int(raw)


def _read_token_file(path: str | None) -> str | None:
    path = path or os.environ.get("VPS_API_TOKEN_FILE")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().strip() or None
    except OSError as exc:
        raise SettingsError(f"cannot read the API token file {path}: {exc.strerror}") from None


def configure_logging(level: str) -> None:
    """Everything to stderr. Set up before the SDK's own basicConfig, which then does nothing."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx-style libraries log full URLs and headers at DEBUG; ours logs what matters without them.
    for noisy in ("httpx2", "httpcore", "httpcore2", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_USAGE


def serve(argv: Sequence[str]) -> int:
    args = _serve_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except SettingsError as exc:
        return _fail(str(exc))
    configure_logging(settings.log_level)

    from .tools import build_server

    transport: Transport | None = None
    if settings.sandbox:
        transport = sandbox_transport(settings, seconds=args.sandbox_seconds)
    try:
        server = build_server(settings, transport=transport)
    except OSError as exc:
        return _fail(f"cannot open the audit log {settings.audit_log}: {exc.strerror}")
    if settings.transport == "http":
        from .http_app import MCP_PATH, serve_http

        auth = "static token" if settings.auth_token else "OAuth" if settings.oauth_enabled else "none (loopback)"
        logger.info(
            "vps-snapshots-mcp %s on http://%s:%d%s (client auth: %s%s); mode: %s",
            __version__, settings.host, settings.port, MCP_PATH, auth,
            ", stateless" if settings.stateless else "", settings.mode_summary(),
        )  # fmt: skip
        serve_http(server, settings)
        return 0
    logger.info("vps-snapshots-mcp %s on stdio; mode: %s", __version__, settings.mode_summary())
    server.run("stdio")
    return 0


def sandbox_transport(settings: Settings, *, seconds: float) -> Transport:
    """An in-process transport to a freshly seeded simulator that accepts the settings' token."""
    from .client import asgi_transport
    from .simulator import create_app, seeded_state

    assert settings.api_token is not None
    state = seeded_state(snapshot_seconds=seconds, restore_seconds=seconds * 2)
    return asgi_transport(create_app(state, token=settings.api_token.get_secret_value()))


def sandbox(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} sandbox", description="Serve the provider simulator on a loopback address."
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    parser.add_argument("--token", default=None, help="token the simulator accepts (default: a random one)")
    parser.add_argument("--snapshot-seconds", type=float, default=30.0, help="how long a snapshot takes")
    parser.add_argument("--restore-seconds", type=float, default=60.0, help="how long a restore takes")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="add this delay to every answer")
    args = parser.parse_args(argv)
    from .settings import is_loopback_host

    if not is_loopback_host(args.host):
        return _fail(f"the sandbox serves loopback addresses only, not {args.host!r}")
    configure_logging("WARNING")

    from .simulator import API_PREFIX, create_app, seeded_state
    from .simulator.serve import bind_socket, serve_forever

    token = args.token or secrets.token_urlsafe(24)
    state = seeded_state(snapshot_seconds=args.snapshot_seconds, restore_seconds=args.restore_seconds)
    state.latency_s = args.latency_ms / 1000
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror}")
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}{API_PREFIX}"
    print(f"Provider simulator listening on {url}", flush=True)
    print(f"  export VPS_API_URL={url}", flush=True)
    print(f"  export VPS_API_TOKEN={token}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        serve_forever(create_app(state, token=token), sock)
    return 0


def demo(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} demo",
        description="Play a snapshot runbook against the sandbox through a real MCP client.",
    )
    parser.add_argument("--sandbox-seconds", type=float, default=4.0, help="how long a simulated snapshot takes")
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    from .demo import run_demo

    return run_demo(sandbox_seconds=args.sandbox_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args and not args[0].startswith("-") else "serve"
    rest = args[1:] if args and args[0] == command else args
    if command == "serve":
        return serve(rest)
    if command == "sandbox":
        return sandbox(rest)
    if command == "demo":
        return demo(rest)
    return _fail(f"unknown command {command!r}; use serve (the default), sandbox or demo. See --help.")
