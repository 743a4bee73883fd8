"""Command line: argv + environment → Settings → serve | sandbox | demo | doctor | audit verify.

    vps-snapshots-mcp [serve] [options]     the MCP server on stdio (the default)
    vps-snapshots-mcp sandbox [--port N]    the provider simulator on a loopback port
    vps-snapshots-mcp demo                  a scripted runbook against the sandbox
    vps-snapshots-mcp doctor [options]      check what a first call would need (the serve options)
    vps-snapshots-mcp audit verify FILE     check an audit trail's hash chain

The serve options come from the settings' own declarations (`settings.py`).
Logs go to stderr only: on stdio, stdout carries the protocol and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from . import __version__
from .access import EVERYONE
from .logs import LogFormat, formatter
from .policy import PolicyError
from .provider.text import RedactingFilter, redact
from .settings import Settings, SettingsError, add_arguments, env_only_help, from_sources, is_loopback_host
from .start import collector_paused

if TYPE_CHECKING:
    from .provider.client import Transport

PROG = "vps-snapshots-mcp"
COMMANDS = ("serve", "sandbox", "demo", "doctor", "audit")
SECRET_ENV_VARS = ("VPS_API_TOKEN", "VPS_MCP_AUTH_TOKEN", "VPS_MCP_CONFIRM_SECRET")
"""The secrets the server reads from its environment (deployment manifests may reference no others)."""
EXIT_USAGE = 2
EXIT_BROKEN = 1
"""`audit verify`: a line was changed, removed or reordered, or the last one is cut short."""

logger = logging.getLogger("vps_snapshots_mcp")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one parser, a subcommand each for serve, sandbox and demo."""
    parser = argparse.ArgumentParser(prog=PROG, description="MCP server for VPS snapshots.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{serve,sandbox,demo,doctor,audit}")
    add_serve_arguments(
        commands.add_parser(
            "serve",
            prog=PROG,
            help="the MCP server (the default command)",
            description="MCP server for VPS snapshots: list, create, restore and delete, with confirmation. "
            "The default command: 'vps-snapshots-mcp --sandbox' is 'vps-snapshots-mcp serve --sandbox'.",
            epilog=f"Each option also reads the environment variable in brackets; a flag wins. Read only from "
            f"the environment: {env_only_help()}. Every setting: docs/configuration.md (in the repository and the "
            f"source distribution). Other commands: '{PROG} sandbox' serves the provider simulator; "
            f"'{PROG} demo' plays a runbook; '{PROG} doctor' "
            "checks these settings (the token, the URL, the ledger, the audit trail) before you serve.",
        )
    )
    sandbox = commands.add_parser(
        "sandbox", help="the provider simulator on a loopback port", description="Serve the provider simulator."
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    sandbox.add_argument("--token", default=None, help="token the simulator accepts (default: a random one)")
    sandbox.add_argument("--snapshot-seconds", type=float, default=30.0, help="how long a snapshot takes")
    sandbox.add_argument("--restore-seconds", type=float, default=60.0, help="how long a restore takes")
    sandbox.add_argument("--latency-ms", type=float, default=0.0, help="add this delay to every answer")
    demo = commands.add_parser(
        "demo",
        help="a scripted runbook against the sandbox",
        description="Play a snapshot runbook against the sandbox through a real MCP client.",
    )
    demo.add_argument("--sandbox-seconds", type=float, default=4.0, help="how long a simulated snapshot takes")
    add_serve_arguments(
        commands.add_parser(
            "doctor",
            help="check everything a first call would need, one line each",
            description="Check, with the settings serve would use (the same flags and variables), everything a "
            "first call would need: the provider token and URL (one GET), the consent ledger (a test redemption), "
            "the audit trail, HTTP client authentication, the extras, the port. One line per check, ok or FAIL "
            "with what to do; exit 0 only when every check passes.",
        )
    )
    audit = commands.add_parser("audit", help="the audit trail", description="Work with an audit trail.")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="{verify}", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="check an audit trail's hash chain",
        description="Check an audit trail's hash chain: exit 0 with a summary (the last line's number and hash, "
        "to keep elsewhere), or 1 naming the first line changed, removed or reordered, or a last line cut short.",
    )
    verify.add_argument("file", help="the audit trail (--audit-log)")
    return parser


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    add_arguments(parser)
    return parser


def serve_parser() -> argparse.ArgumentParser:
    """The serve command's parser alone (for tests and manifests that check server arguments)."""
    return add_serve_arguments(argparse.ArgumentParser(prog=PROG))


def settings_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """Flags win over environment variables, which win over defaults."""
    return from_sources(vars(args), os.environ if environ is None else environ)


def configure_logging(level: str, *secrets: str, log_format: LogFormat = "text") -> None:
    """Everything to stderr, never a secret, in one format (uvicorn's own records too: they propagate here).
    Set up before the SDK's own basicConfig, which then does nothing."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RedactingFilter(*secrets))
    handler.setLevel(level)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Our own records are made from this level up (a record nobody reads costs a call its making); a session
    # that asks for more through logging/setLevel lowers the package logger's level (client_logging).
    # httpx-style libraries log full URLs and headers at DEBUG; ours logs what matters without them.
    for noisy in ("httpx2", "httpcore", "httpcore2", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_USAGE


def serve(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except SettingsError as exc:
        return _fail(str(exc))
    if settings.audit_log:
        from .audit import open_audit_file

        try:
            os.close(open_audit_file(settings.audit_log))  # refuse at start, not at the first change
        except OSError as exc:
            return _fail(f"cannot open the audit log {settings.audit_log}: {exc.strerror}")
    configure_logging(settings.log_level, *settings.secrets(), log_format=settings.log_format)
    if settings.confirm_secret is not None and settings.state_url is None:
        logger.warning(
            "VPS_MCP_CONFIRM_SECRET is set but consent is recorded in memory: another server process with the "
            "same secret would accept a token this one has spent. Set --state-url sqlite:///PATH to share it."
        )

    with collector_paused():  # the SDK's modules and ours load, and the server is built (see start.py)
        from .compose import check_start, compose

        try:
            check_start(settings)  # an extra not installed, a ledger's missing directory, a port in use: one line
        except SettingsError as exc:
            return _fail(str(exc))
        from .tracing import configure as configure_tracing

        configure_tracing(os.environ, version=__version__)  # the `otel` extra, when OTEL_* variables ask for traces
        transport: Transport | None = None
        if settings.sandbox:
            transport = sandbox_transport(settings, seconds=settings.sandbox_seconds)
        try:
            composed = compose(settings, transport=transport)
        except (
            PolicyError,
            SettingsError,
        ) as exc:  # a permissions or tokens file that cannot be used: one line, where, why
            return _fail(str(exc))
    ledger = settings.state_url.split("://")[0] if settings.state_url else "memory"
    mode = composed.access.summary(EVERYONE)
    if settings.transport == "http":
        from .protocol.http import MCP_PATH, serve_http

        static = settings.auth_token or settings.auth_tokens_file
        auth = "static token" if static else "OAuth" if settings.oauth_enabled else "none (loopback)"
        logger.info(
            "vps-snapshots-mcp %s on http://%s:%d%s (client auth: %s%s; consent ledger: %s); mode: %s",
            __version__, settings.host, settings.port, MCP_PATH, auth,
            ", stateless" if settings.stateless else "", ledger, mode,
        )  # fmt: skip
        serve_http(composed.http_app(), settings, composed.metrics_app())
        return 0
    logger.info("vps-snapshots-mcp %s on stdio (consent ledger: %s); mode: %s", __version__, ledger, mode)
    composed.server.run("stdio")
    return 0


def doctor(args: argparse.Namespace) -> int:
    from .settings import api_token_source

    try:
        settings = settings_from(args)
        source = api_token_source(vars(args), os.environ)
    except SettingsError as exc:
        print(redact(f"FAIL settings: {exc}", *_given_secrets()), flush=True)
        return EXIT_BROKEN
    # A store's own complaints go to stderr; the doctor's lines to stdout.
    configure_logging("WARNING", *settings.secrets(), log_format=settings.log_format)
    from .doctor import run

    transport = sandbox_transport(settings, seconds=settings.sandbox_seconds) if settings.sandbox else None
    return run(settings, source, transport, lambda line: print(line, flush=True))


def _given_secrets() -> tuple[str, ...]:
    """The secrets in the environment, to keep out of a message about settings that could not be read."""
    return tuple(os.environ[name] for name in SECRET_ENV_VARS if os.environ.get(name))


def sandbox_transport(settings: Settings, *, seconds: float) -> Transport:
    """An in-process transport to a freshly seeded simulator that accepts the settings' token."""
    from .provider.client import asgi_transport
    from .simulator import create_app, seeded_state

    assert settings.api_token is not None
    state = seeded_state(snapshot_seconds=seconds, restore_seconds=seconds * 2)
    return asgi_transport(create_app(state, token=settings.api_token.get_secret_value()))


def sandbox(args: argparse.Namespace) -> int:
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


def demo(args: argparse.Namespace) -> int:
    configure_logging("WARNING")
    from .demo import run_demo

    return run_demo(sandbox_seconds=args.sandbox_seconds)


def audit(args: argparse.Namespace) -> int:
    from .audit_chain import verify

    try:
        with open(args.file, "rb") as trail:
            data = trail.read()
    except OSError as exc:
        return _fail(f"cannot read the audit trail {args.file}: {exc.strerror}")
    verdict = verify(data)
    print(f"{args.file}: {'ok' if verdict.ok else 'BROKEN'}: {verdict.message}", flush=True)
    return 0 if verdict.ok else EXIT_BROKEN


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        args.insert(0, "serve")  # the server is the default command, with its own --help and --version
    parsed = build_parser().parse_args(args)
    if parsed.command == "sandbox":
        return sandbox(parsed)
    if parsed.command == "demo":
        return demo(parsed)
    if parsed.command == "audit":
        return audit(parsed)
    if parsed.command == "doctor":
        return doctor(parsed)
    return serve(parsed)
