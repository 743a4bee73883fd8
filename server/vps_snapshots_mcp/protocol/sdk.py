"""Every use of a private name of the MCP SDK, in one place, checked against the installed SDK at start.

The SDK's session manager hands ONE event store to every session's transport,
and the store is never told which session an event belongs to. To keep each
session's stream events apart, the transport of each new session gets its own
store instead, and that store's events go when the session ends:

    StreamableHTTPSessionManager._admit_session   creates and registers a new session's transport
    StreamableHTTPServerTransport._event_store     the store that transport keeps and replays events with

`self_check()` runs when the HTTP app is built: an SDK without these hooks
stops the server with a message naming the SDK version and the missing hook,
rather than letting sessions share one store.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version

from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import EventCallback, EventId, EventStore, StreamableHTTPServerTransport, StreamId
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import JSONRPCMessage


class _Probe(EventStore):
    """A store handed to a transport only to see where the transport keeps it."""

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        raise AssertionError("the probe stores nothing")

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        raise AssertionError("the probe replays nothing")


def self_check() -> None:
    """Raise RuntimeError when the installed SDK lacks a hook this module relies on."""
    sdk = f"mcp {version('mcp')}"
    if not callable(getattr(StreamableHTTPSessionManager, "_admit_session", None)):
        raise RuntimeError(f"{sdk} has no StreamableHTTPSessionManager._admit_session: resumable streams cannot be "
                           "kept per session. Install the mcp version this server was released with.")  # fmt: skip
    probe = _Probe()
    transport = StreamableHTTPServerTransport(mcp_session_id="self-check", event_store=probe)
    if getattr(transport, "_event_store", None) is not probe:
        raise RuntimeError(f"{sdk} has no StreamableHTTPServerTransport._event_store: resumable streams cannot be "
                           "kept per session. Install the mcp version this server was released with.")  # fmt: skip


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
