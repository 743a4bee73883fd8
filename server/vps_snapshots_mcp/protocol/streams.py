"""Resumable HTTP streams: the SDK's `EventStore`, one per MCP session, backed by the state store's event log.

On a stateful HTTP session (2025-11-25), every SSE event carries an id and the
first one a `retry` hint. A client whose connection dropped during a long call
(`create_snapshot` with `wait: true`) reconnects with `Last-Event-ID` and gets
the progress it missed and the final result.

A stream belongs to its session and its caller, nobody else's. Each session's
transport gets its own `SessionStreams` when the session opens (`sdk_seam`):
its events are kept under a key derived from the session id and the principal
who opened it, and a replay looks the `Last-Event-ID` up under that key only.
An id from another session, another replica's session, or a guess replays
nothing; a replay asked by another principal than the session's replays
nothing. Event ids are random (about 144 bits), not a sequence.

Events are kept in memory for one process, or in the `--state-url` store
(SQLite, Redis) when there is one, bounded in bytes per session and in total,
for the longest wait plus a margin (`EVENT_TTL_S`) at most, and dropped when
their session ends. In Redis they can never crowd out spent consents: their
bytes are capped far below the memory the ledger needs, and no event is
written while Redis is more than half full (see `state.redis_events.RedisEventLog`).
In Redis they are written behind the stream, a batch every 50 ms at most
(`state.behind`): no call waits on Redis for its events. An event log that
fails is logged and skipped: the stream goes on, only its resumption is lost.

The 2026-07-28 revision has no stream resumption: there a client repeats the
call, and `create_snapshot` with the same name waits on the same snapshot.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage, jsonrpc_message_adapter

from ..state import MARGIN_S, EventLog
from .principal import current_principal
from .schemas import MAX_WAIT_S

if TYPE_CHECKING:
    from ..metrics import Metrics

logger = logging.getLogger(__name__)

EVENT_TTL_S = MAX_WAIT_S + MARGIN_S
"""How long a stream's events are kept at most: the longest wait a call may ask for, plus a margin."""
RETRY_MS = 3000
"""The `retry` hint: how soon a client should reconnect after losing the stream."""
MAX_EVENT_ID_CHARS = 64
"""A `Last-Event-ID` longer than any id this server gives is not looked up."""


def new_event_id() -> str:
    """A random event id: nothing about it tells another one."""
    return secrets.token_urlsafe(18)


class SessionStreams(EventStore):
    """The event store of one MCP session, opened by one principal: it keeps and replays that session's events."""

    def __init__(
        self, log: EventLog, *, session_id: str, principal: str, ended: Callable[[], None] = lambda: None
    ) -> None:
        self._ended = ended
        self._log = log
        self._principal = principal
        digest = hashlib.sha256(b"vps-snapshots-mcp/stream-session/v1\x00" + principal.encode() + b"\x00")
        digest.update(session_id.encode())
        self._key = digest.hexdigest()

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = new_event_id()
        payload = (
            None if message is None else jsonrpc_message_adapter.dump_json(message, by_alias=True, exclude_none=True)
        )
        try:
            kept = await self._log.append(
                self._key, event_id, stream_id, payload.decode() if payload is not None else None
            )
        except Exception as exc:
            logger.warning("could not keep an SSE event for resumption (%s); the stream goes on", type(exc).__name__)
            return event_id
        if not kept:
            logger.warning("an SSE event was too large or the event store too full to keep it; the stream goes on")
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        if not 0 < len(last_event_id) <= MAX_EVENT_ID_CHARS or current_principal().key != self._principal:
            return None
        try:
            found = await self._log.after(self._key, last_event_id)
        except Exception as exc:
            logger.warning("could not read SSE events to resume a stream (%s)", type(exc).__name__)
            return None
        if found is None:
            return None
        stream_id, events = found
        for event_id, payload in events:
            if payload is not None:  # priming events carry no message
                await send_callback(EventMessage(jsonrpc_message_adapter.validate_json(payload), event_id))
        return stream_id

    async def forget(self) -> None:
        """The session ended: nobody can resume its streams any more, so its events go."""
        self._ended()
        try:
            await self._log.forget(self._key)
        except Exception as exc:
            logger.warning("could not drop an ended session's SSE events (%s); they expire", type(exc).__name__)


class ResumableStreams:
    """The event log shared by every session, and a `SessionStreams` for each session as it opens."""

    def __init__(self, log: EventLog, metrics: Metrics | None = None) -> None:
        self._log = log
        self._metrics = metrics
        """Counts the sessions open (`mcp_server_sessions_open`): each opens here and ends in its store's forget."""

    def for_session(self, session_id: str) -> SessionStreams:
        """The store of a session being opened, for the principal of the request opening it."""
        if self._metrics is None:
            return SessionStreams(self._log, session_id=session_id, principal=current_principal().key)
        self._metrics.sessions.inc()
        ended = self._metrics.sessions.dec
        return SessionStreams(self._log, session_id=session_id, principal=current_principal().key, ended=ended)


class NoStreams(EventStore):
    """What the SDK holds before a session's own store replaces it: it keeps nothing and replays nothing."""

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        return new_event_id()

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        return None
