"""Resumable HTTP streams: the SDK's `EventStore`, backed by the state store's event log.

On a stateful HTTP session (2025-11-25), every SSE event carries an id and the
first one a `retry` hint. A client whose connection dropped during a long call
(`create_snapshot` with `wait: true`) reconnects with `Last-Event-ID` and gets
the progress it missed and the final result. Events are kept for the longest
wait plus a margin (`EVENT_TTL_S`), in memory for one process, or in the
`--state-url` store (SQLite, Redis) when there is one. An event log that fails
is logged and skipped: the stream goes on, only its resumption is lost.

The 2026-07-28 revision has no stream resumption: there a client repeats the
call, and `create_snapshot` with the same name waits on the same snapshot.
"""

from __future__ import annotations

import logging
import secrets

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage, jsonrpc_message_adapter

from .schemas import MAX_WAIT_S
from .state import MARGIN_S, EventLog

logger = logging.getLogger(__name__)

EVENT_TTL_S = MAX_WAIT_S + MARGIN_S
"""How long a stream's events are kept: the longest wait a call may ask for, plus a margin."""
RETRY_MS = 3000
"""The `retry` hint: how soon a client should reconnect after losing the stream."""


class ResumableStreams(EventStore):
    def __init__(self, log: EventLog) -> None:
        self._log = log

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        payload = (
            None if message is None else jsonrpc_message_adapter.dump_json(message, by_alias=True, exclude_none=True)
        )
        try:
            return await self._log.append(stream_id, payload.decode() if payload is not None else None)
        except Exception as exc:
            logger.warning("could not keep an SSE event for resumption (%s); the stream goes on", type(exc).__name__)
            return f"unkept-{secrets.token_hex(8)}"

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        try:
            found = await self._log.after(last_event_id)
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
