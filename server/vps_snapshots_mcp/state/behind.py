"""Events written behind the stream: an SSE event goes to its client without waiting on a store across the network.

A stateful session stores every event of its streams before the SDK sends it (the priming event before the
call even starts, the answer before the client sees it). With the event log in Redis that is a round trip on
the path of every call, twice, and on a busy machine even a round trip off the call's path costs the call
(measured: about 0.9 ms a call for two plain `RPUSH`es written behind, on two cores). `WriteBehindEventLog`
takes the event, answers at once, and a writer task keeps the events in order, batched: it lingers up to
`linger_s` for more to join (less when a batch is full, at once when someone waits for them), then writes
them in one round trip (`append_many`). A session's calls cost Redis a round trip every `linger_s`, not two
a call.

What it keeps true:

- the store's order is the order events were handed in (one queue, one writer);
- a replay (`after`) and a session's end (`forget`) first wait for every event handed in before them, so a
  client that resumes with the id of an event it saw finds it; a session is served by one replica only (the
  SDK keeps it in that process), so its replay always runs where its events wait;
- the queue is bounded, in events (`max_pending`) and in bytes (`max_pending_bytes`), and so is a batch
  (`MAX_BATCH`, `MAX_BATCH_BYTES`): when the store falls behind, `append` waits for room, as it waited for the
  store before, and a frozen Redis holds at most the bounded bytes in this process;
- an event the store refuses or fails to keep loses only its resumption, as before: the writer says so in one
  warning line and goes on;
- every wait has a deadline (`settle_s`); a store that answers nothing cannot hold a replay or a shutdown;
- a replica that dies loses what it had not written yet, which nobody could have resumed: its sessions, and
  so their streams, die with it.

It runs on asyncio (the only loop the Redis client runs on).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from . import MAX_SESSION_BYTES, EventLog, event_bytes

logger = logging.getLogger(__name__)

MAX_PENDING = 1024
"""Events handed in and not yet written, at most; past it `append` waits for the writer."""
MAX_PENDING_BYTES = 16 * 1024 * 1024
"""Bytes of events handed in and not yet written, at most (as counted against the stores' bounds)."""
MAX_BATCH = 64
"""Events written in one round trip, at most."""
MAX_BATCH_BYTES = 1024 * 1024
"""Bytes written in one round trip, at most, but for a single larger event."""
LINGER_S = 0.05
"""How long the writer waits for more events to join a batch, at most."""
SETTLE_S = 10.0
"""How long a replay, a session's end or a shutdown waits for the events before it, at most."""

Event = tuple[str, str, str, str | None]
"""(session, event id, stream id, payload): one `EventLog.append`."""


class BatchEventLog(EventLog, Protocol):
    async def append_many(self, events: Sequence[Event]) -> list[bool]:
        """Keep each event, in order; whether each was kept."""
        ...


class WriteBehindEventLog:
    """`inner`, with its appends written behind: see the module's text."""

    def __init__(
        self,
        inner: BatchEventLog,
        *,
        max_pending: int = MAX_PENDING,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        max_batch: int = MAX_BATCH,
        max_session_bytes: int = MAX_SESSION_BYTES,
        settle_s: float = SETTLE_S,
        linger_s: float = LINGER_S,
    ) -> None:
        self._inner = inner
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        self._pending_bytes = 0  # of the events handed in and not yet written
        self._max_batch = max_batch
        self._max_session_bytes = max_session_bytes
        self._settle_s = settle_s
        self._linger_s = linger_s
        self._wanted = 0  # the most events any waiter needs written
        self._wake: asyncio.Event | None = None  # set to end the writer's linger early
        self._pending: deque[tuple[Event, int]] = deque()  # each with its size
        self._handed = 0  # events handed in, ever
        self._written = 0  # of those, events the writer is done with (kept, refused or failed)
        self._progress: asyncio.Event | None = None  # set (and replaced) whenever `_written` moves
        self._writer: asyncio.Task[None] | None = None

    async def append(self, session: str, event_id: str, stream_id: str, payload: str | None) -> bool:
        """Hand the event to the writer: True, or False for one larger than a session may ever hold."""
        size = event_bytes(event_id, stream_id, payload)
        if size > self._max_session_bytes:
            return False
        while self.pending and (  # the store is behind: wait for room, as for the store
            self.pending >= self._max_pending or self._pending_bytes + size > self._max_pending_bytes
        ):
            await self._settled(self._written + 1)
        self._pending.append(((session, event_id, stream_id, payload), size))
        self._pending_bytes += size
        self._handed += 1
        if len(self._pending) >= self._max_batch:
            self._hurry()
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return True

    async def after(self, session: str, event_id: str) -> tuple[str, list[tuple[str, str | None]]] | None:
        await self._settled(self._handed)
        return await self._inner.after(session, event_id)

    async def forget(self, session: str) -> None:
        await self._settled(self._handed)
        await self._inner.forget(session)

    async def aclose(self) -> None:
        try:
            await self._settled(self._handed)
        finally:
            if self._writer is not None:
                self._writer.cancel()
            await self._inner.aclose()

    @property
    def pending(self) -> int:
        """Events handed in and not yet written."""
        return self._handed - self._written

    async def _settled(self, upto: int) -> None:
        """Until the writer is done with the first `upto` events handed in, or `settle_s` has passed."""
        self._wanted = max(self._wanted, upto)
        self._hurry()
        try:
            async with asyncio.timeout(self._settle_s):
                while self._written < upto:
                    if self._progress is None:
                        self._progress = asyncio.Event()
                    await self._progress.wait()
        except TimeoutError:
            logger.warning("SSE events are still being kept after %.0f s; going on without them", self._settle_s)

    async def _write(self) -> None:
        try:
            while self._pending:
                await self._linger()
                batch, size = self._take()
                try:
                    kept = await self._inner.append_many(batch)
                except Exception as exc:
                    logger.warning(
                        "could not keep %d SSE event(s) for resumption (%s); the streams go on",
                        len(batch),
                        type(exc).__name__,
                    )
                else:
                    if not all(kept):
                        logger.warning(
                            "%d SSE event(s) were too large or the event store too full to keep; the streams go on",
                            kept.count(False),
                        )
                self._moved(len(batch), size)
        finally:
            self._writer = None
            if self.pending:  # cancelled (a shutdown): what was not written is given up, and not waited for
                self._pending.clear()
                self._moved(self.pending, self._pending_bytes)

    async def _linger(self) -> None:
        """Up to `linger_s` for more events to join the batch, unless one is full or someone waits for them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger_s
        while len(self._pending) < self._max_batch and self._wanted <= self._written:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake = asyncio.Event()
            try:
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                return
            finally:
                self._wake = None

    def _hurry(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _take(self) -> tuple[list[Event], int]:
        """The next batch: up to `max_batch` events and `MAX_BATCH_BYTES` (one event at least); its bytes."""
        batch: list[Event] = []
        size = 0
        while self._pending and len(batch) < self._max_batch:
            event, event_size = self._pending[0]
            if batch and size + event_size > MAX_BATCH_BYTES:
                break
            self._pending.popleft()
            batch.append(event)
            size += event_size
        return batch, size

    def _moved(self, count: int, size: int) -> None:
        self._written += count
        self._pending_bytes -= size
        if self._progress is not None:
            self._progress.set()
            self._progress = None
