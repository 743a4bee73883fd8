"""Every use of a private name of the MCP SDK, or of a position in its middleware chain, in one place.

Each hook below is something this server needs and the SDK (pinned `mcp>=2.3,<3`)
offers no public way to do; docs/sdk-compatibility.md says why, hook by hook,
and names the test that guards it (tests/test_sdk_seam.py).

    lowlevel server      MCPServer._lowlevel_server: its public handler table, capabilities and input-schema lookup
    input schema         Server.get_tool_input_schema, set on it: Mcp-Param-* headers checked against tools.json
    log connection       ServerSession._connection: what lives as long as a 2025-11-25 client's session
    logging setup        mcp.server.mcpserver.server.configure_logging: skipped when logging is configured
    round position       our middleware just before RequestStateBoundary, where requestState is still sealed
    sealed envelope      the boundary's claims envelope, JSON with an `exp` (epoch seconds)
    session admission    StreamableHTTPSessionManager._admit_session: a new session's transport is made
    session event store  StreamableHTTPServerTransport._event_store: the store a transport keeps events in
    request context      Context._request_context, read from the instance's private-attribute dict

`self_check()` (the SDK's classes) and `check_server()` (a built server) run
when the server is built, for stdio and HTTP alike: an SDK without a hook stops
the server with a RuntimeError naming the installed `mcp` version and the hook,
rather than letting a protection (replay, header validation, stream isolation)
go quietly off. The request context is the one hook whose absence costs only
time: without it the public property answers, the same object, more slowly.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from importlib.metadata import version
from types import ModuleType
from typing import Any, cast

import mcp.server.mcpserver.server as sdk_server_module
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.context import HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.lowlevel import Server as LowLevelServer
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.request_state import InvalidRequestState, RequestStateBoundary, RequestStateCodec
from mcp.server.session import ServerSession
from mcp.server.streamable_http import EventCallback, EventId, EventStore, StreamableHTTPServerTransport, StreamId
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import JSONRPCMessage

Middleware = ServerMiddleware[Any]

INSTALL_HINT = "Install the mcp version this server was released with (see pyproject.toml)."


def _missing(hook: str, consequence: str) -> RuntimeError:
    return RuntimeError(f"mcp {version('mcp')} has no {hook}: {consequence}. {INSTALL_HINT}")


# --- the low-level server, and the input-schema lookup it holds ----------------------------------------------


def lowlevel_of(server: MCPServer[Any]) -> LowLevelServer[Any]:
    """The low-level server an MCPServer wraps (its handler table, capabilities, input-schema lookup)."""
    found = getattr(server, "_lowlevel_server", None)
    if not isinstance(found, LowLevelServer):
        raise _missing("MCPServer._lowlevel_server", "logging/setLevel and the input-schema lookup cannot be set")
    return found


def answer_input_schema(server: MCPServer[Any], lookup: Callable[[str], Mapping[str, Any] | None]) -> None:
    """Let `lookup` answer the SDK's question "what is tool NAME's input schema?" (Mcp-Param-* on 2026-07-28).

    The SDK asks before it dispatches a call; a lookup that answers None skips the header validation.
    """
    lowlevel = lowlevel_of(server)
    if not hasattr(lowlevel, "get_tool_input_schema"):
        raise _missing("Server.get_tool_input_schema", "Mcp-Param-* headers would not be checked against tools.json")
    lowlevel.get_tool_input_schema = lookup


# --- a tool's Context: its request context, read at the cost of a dict look-up -------------------------------


def request_context_of(ctx: Context[Any, Any]) -> ServerRequestContext[Any, Any]:
    """`ctx.request_context`, the same object, without the property's cost; ValueError outside a request.

    Context keeps it as a pydantic private attribute, which the property reaches through pydantic's
    `__getattr__` (an AttributeError raised and caught on the way): about 5 µs a read, several reads a call.
    Where the SDK keeps it elsewhere, the property answers: the same object, at its own cost.
    """
    private = ctx.__pydantic_private__
    found = private.get("_request_context") if private else None
    return cast("ServerRequestContext[Any, Any]", found) if found is not None else ctx.request_context


# --- logging: the session a 2025-11-25 log level belongs to, and the SDK's own log set-up ---------------------


def connection_of(session: ServerSession) -> object:
    """What lives as long as the client's session: the SDK makes a ServerSession per request, over one connection."""
    try:
        return cast(object, session._connection)
    except AttributeError:
        raise _missing("ServerSession._connection", "a session's log level cannot be kept") from None


class _ConnectionProbe:
    protocol_version = "2025-11-25"
    client_params = None
    client_capabilities = None


def check_session_connection(session_type: type[ServerSession] = ServerSession) -> None:
    probe = _ConnectionProbe()
    session = session_type(cast(Any, None), cast(Any, probe))
    if getattr(session, "_connection", None) is not probe:
        raise _missing(f"{session_type.__name__}._connection", "a session's log level cannot be kept")


@contextmanager
def sdk_logging_setup_skipped(module: ModuleType = sdk_server_module) -> Iterator[None]:
    """MCPServer's constructor imports rich for a log handler (15 ms of every start) and hands it to
    logging.basicConfig, which does nothing once the root logger has a handler, as the command line's has.
    Skipped only then, so nothing changes but the start-up time (the constructor calls it by module name).
    """
    if not logging.getLogger().handlers:
        yield
        return
    check_logging_setup(module)
    original = vars(module)["configure_logging"]
    setattr(module, "configure_logging", lambda level="INFO": None)  # noqa: B010 - not re-exported
    try:
        yield
    finally:
        setattr(module, "configure_logging", original)  # noqa: B010


def check_logging_setup(module: ModuleType = sdk_server_module) -> None:
    if not callable(vars(module).get("configure_logging")):
        raise _missing(f"{module.__name__}.configure_logging", "the SDK's log set-up cannot be skipped")


# --- elicitation rounds (2026-07-28): our middleware where requestState is still sealed -----------------------


def install_before_request_state_boundary(server: MCPServer[Any], middleware: Middleware) -> None:
    """Put `middleware` just outside the SDK's requestState boundary, where it sees the sealed state."""
    chain = server.middleware
    boundaries = [i for i, m in enumerate(chain) if isinstance(m, RequestStateBoundary)]
    if len(boundaries) != 1:
        raise _missing("RequestStateBoundary in the middleware chain", "rounds could be replayed")
    chain.insert(boundaries[0], middleware)


def sealed_expiry(codec: RequestStateCodec, sealed: str) -> float | None:
    """The expiry (epoch seconds) in a sealed requestState's envelope; None when it does not unseal or has none."""
    try:
        expires = json.loads(codec.unseal(sealed)).get("exp")
    except (InvalidRequestState, ValueError, AttributeError):
        return None
    if not isinstance(expires, int | float) or not math.isfinite(expires):
        return None
    return float(expires)


def check_round_position(
    chain: Sequence[Middleware], ours: type, codec: RequestStateCodec, *, seen_round: Callable[[], object | None]
) -> None:
    """Our round middleware sits before the one RequestStateBoundary, sees a sealed state it can read the expiry
    of, and the boundary unseals it after us. Driven through the real chain slice, synchronously (nothing in it
    awaits anything but the next middleware)."""
    hook = "RequestStateBoundary where this server expects it"
    boundaries = [i for i, m in enumerate(chain) if isinstance(m, RequestStateBoundary)]
    mine = [i for i, m in enumerate(chain) if isinstance(m, ours)]
    if len(boundaries) != 1 or len(mine) != 1 or mine[0] > boundaries[0]:
        raise _missing(hook, "replay protection of elicitation rounds would be silently off")
    params = {"name": "self-check", "arguments": {}}
    ctx: ServerRequestContext[Any, Any] = ServerRequestContext(
        session=cast(Any, None), lifespan_context=None, protocol_version="2026-07-28", method="tools/call",
        params=params,
    )  # fmt: skip
    boundary = chain[boundaries[0]]

    async def ask(_: ServerRequestContext[Any, Any]) -> HandlerResult:
        return {"resultType": "input_required", "requestState": "self-check"}

    sealed = _run(boundary(ctx, ask))
    state = sealed.get("requestState") if isinstance(sealed, Mapping) else None
    if not isinstance(state, str) or state == "self-check" or sealed_expiry(codec, state) is None:
        raise _missing("a sealed requestState envelope with an `exp`", "round expiry could not be read")
    seen: list[object] = []

    async def answer(inner: ServerRequestContext[Any, Any]) -> HandlerResult:
        seen.append((seen_round() is not None, (inner.params or {}).get("requestState")))
        return {}

    async def through(i: int, c: ServerRequestContext[Any, Any]) -> HandlerResult:
        if i > boundaries[0]:
            return await answer(c)
        return await chain[i](c, lambda n: through(i + 1, n))

    _run(through(mine[0], replace(ctx, params={**params, "requestState": state})))
    if seen != [(True, "self-check")]:
        raise _missing(hook, "replay protection of elicitation rounds would be silently off")


def _run(coroutine: Awaitable[HandlerResult]) -> HandlerResult:
    step = coroutine.__await__()
    try:
        step.send(None)
    except StopIteration as done:
        return cast(HandlerResult, done.value)
    step.close()
    raise RuntimeError("the requestState boundary awaited something: the self-check cannot drive it")


# --- resumable streams: one event store per session --------------------------------------------------------


class _Probe(EventStore):
    """A store handed to a transport only to see where the transport keeps it."""

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        raise AssertionError("the probe stores nothing")

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        raise AssertionError("the probe replays nothing")


def check_session_admission(manager_type: type = StreamableHTTPSessionManager) -> None:
    if not callable(getattr(manager_type, "_admit_session", None)):
        raise _missing(f"{manager_type.__name__}._admit_session", "resumable streams cannot be kept per session")


def check_session_event_store(transport_type: type = StreamableHTTPServerTransport) -> None:
    probe = _Probe()
    transport = transport_type(mcp_session_id="self-check", event_store=probe)
    if getattr(transport, "_event_store", None) is not probe:
        raise _missing(f"{transport_type.__name__}._event_store", "resumable streams cannot be kept per session")


def store_events_per_session(
    manager: StreamableHTTPSessionManager, store_for: Callable[[str], EventStore | None]
) -> None:
    """Give the transport of every session `manager` opens its own store, `store_for(session id)`.

    `store_for` is called while the request opening the session is being served (its principal is known);
    None leaves the session without resumption. The store's `forget()`, when it has one, runs when the
    session ends (DELETE, idle timeout, shutdown).
    """
    admit = manager._admit_session

    def admit_with_own_store(requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        transport = admit(requestor)
        if transport is None or transport.mcp_session_id is None:
            return transport
        store = store_for(transport.mcp_session_id)
        transport._event_store = store
        forget = getattr(store, "forget", None)
        if forget is not None:
            terminate = transport.terminate

            async def terminate_and_forget() -> None:
                try:
                    await terminate()
                finally:
                    await forget()

            transport.terminate = terminate_and_forget  # type: ignore[method-assign]
        return transport

    manager._admit_session = admit_with_own_store  # type: ignore[method-assign]


# --- the checks, at start ----------------------------------------------------------------------------------


def self_check() -> None:
    """Raise RuntimeError when the installed SDK's classes lack a hook this module relies on."""
    check_logging_setup()
    check_session_connection()
    check_session_admission()
    check_session_event_store()


def check_server(
    server: MCPServer[Any],
    *,
    schema_lookup: Callable[[str], Mapping[str, Any] | None],
    round_memory: type,
    codec: RequestStateCodec,
    seen_round: Callable[[], object | None],
) -> None:
    """Raise RuntimeError when a built server's hooks are not where they were put (the SDK moved something)."""
    self_check()
    if lowlevel_of(server).get_tool_input_schema is not schema_lookup:
        raise _missing("Server.get_tool_input_schema", "Mcp-Param-* headers would not be checked against tools.json")
    check_round_position(server.middleware, round_memory, codec, seen_round=seen_round)
