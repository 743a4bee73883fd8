"""Our log records, forwarded to the client as `notifications/message`, where the revision has logging.

Hosts (the MCP Inspector, VS Code) show a server's log only through
`notifications/message`. On 2025-11-25 sessions this server declares the
`logging` capability, honours `logging/setLevel` per session (until then it
forwards at the server's own `--log-level`), and forwards each record a
request of that session logs, at or above that level: logger name, level and
the one-line message, through the same redaction as stderr (no secret, no
`Bearer` credential, no request header). The 2026-07-28 revision deprecates
logging and has no `logging/setLevel`: there the capability is not advertised
and nothing is forwarded. Stderr logging is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, get_args

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import EmptyResult, LoggingLevel, ServerCapabilities, SetLevelRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ..provider.text import RedactingFilter
from . import sdk

PACKAGE_LOGGER = "vps_snapshots_mcp"

_TO_PYTHON: dict[LoggingLevel, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO + 5,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL + 5,
    "emergency": logging.CRITICAL + 10,
}
assert set(_TO_PYTHON) == set(get_args(LoggingLevel))


def _to_mcp(levelno: int) -> LoggingLevel:
    chosen: LoggingLevel = "debug"
    for name, number in _TO_PYTHON.items():
        if levelno >= number:
            chosen = name
    return chosen


class _Request:
    """The request in progress, and the log lines it has sent (awaited before its answer, so they precede it)."""

    def __init__(self, ctx: ServerRequestContext[Any, Any]) -> None:
        self.ctx = ctx
        self.sending: list[asyncio.Task[None]] = []


_request: ContextVar[_Request | None] = ContextVar("vps_snapshots_mcp_request", default=None)


class ClientLogForwarder(logging.Handler):
    """Sends the package's log records to the client whose request logged them."""

    def __init__(self, default_level: int, *secrets: str) -> None:
        super().__init__(level=logging.DEBUG)
        self.addFilter(RedactingFilter(*secrets))
        self.default_level = default_level
        self._levels: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()

    def set_level(self, session: object, level: LoggingLevel) -> None:
        self._levels[session] = _TO_PYTHON[level]

    def emit(self, record: logging.LogRecord) -> None:
        request = _request.get()
        if request is None or record.levelno < self._levels.get(_connection_of(request.ctx), self.default_level):
            return
        ctx = request.ctx
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # logged from a worker thread: stderr has it
        with warnings.catch_warnings():
            # Deprecated by 2026-07-28, which is why only 2025-11-25 sessions get here: the warning is noise.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            send = ctx.session.send_log_message(
                _to_mcp(record.levelno), record.getMessage(), logger=record.name, related_request_id=ctx.request_id
            )
        request.sending.append(loop.create_task(_quietly(send)))  # logging is synchronous; sending is not


def _connection_of(ctx: ServerRequestContext[Any, Any]) -> object:
    """What lives as long as the client's session (no public accessor: the SDK seam reads it)."""
    return sdk.connection_of(ctx.session)


async def _quietly(send: Any) -> None:
    try:
        await send
    except Exception:
        return


def install(server: MCPServer[Any], default_level: str, *secrets: str) -> ClientLogForwarder:
    """Declare logging on 2025-11-25, handle logging/setLevel, and forward the package's records."""
    forwarder = ClientLogForwarder(logging.getLevelName(default_level), *secrets)
    package = logging.getLogger(PACKAGE_LOGGER)
    for old in [h for h in package.handlers if isinstance(h, ClientLogForwarder)]:
        package.removeHandler(old)  # one forwarder per process: the last server built owns it
    package.addHandler(forwarder)

    _make_records_from(package, forwarder.default_level)

    async def set_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        forwarder.set_level(_connection_of(ctx), params.level)
        _make_records_from(package, _TO_PYTHON[params.level])
        return EmptyResult()

    async def remember_request(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return await call_next(ctx)
        request = _Request(ctx)
        reset = _request.set(request)
        try:
            return await call_next(ctx)
        finally:
            _request.reset(reset)
            for task in request.sending:
                await task  # never raises: _quietly

    # The SDK registers logging/setLevel only through the low-level server (no public way: the SDK seam).
    lowlevel = sdk.lowlevel_of(server)
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    lowlevel.get_capabilities = _without_logging_when_modern(lowlevel.get_capabilities)  # type: ignore[method-assign]
    server.middleware.append(remember_request)
    return forwarder


def _make_records_from(logger: logging.Logger, level: int) -> None:
    """Lower the logger's level so that it makes records at `level`; never raise it, as another sink may need more.

    Records are made only from the lowest level a sink asked for (stderr, the server's default, a session), so a
    call whose debug lines nobody reads does not pay for making and filtering them.
    """
    if not logger.isEnabledFor(level):
        logger.setLevel(level)


def _without_logging_when_modern(
    get_capabilities: Callable[..., ServerCapabilities],
) -> Callable[..., ServerCapabilities]:
    """The capabilities, without `logging` on revisions that deprecate it (2026-07-28)."""

    def capabilities(*args: Any, protocol_version: str | None = None, **kwargs: Any) -> ServerCapabilities:
        found = get_capabilities(*args, protocol_version=protocol_version, **kwargs)
        if protocol_version in MODERN_PROTOCOL_VERSIONS:
            return found.model_copy(update={"logging": None})
        return found

    return capabilities
