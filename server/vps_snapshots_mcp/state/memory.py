"""In this process only: the ledger (single use within one process) and the event log."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from . import MARGIN_S, ConsentRefused, expired_by_the_ledger


class MemoryLedger:
    def __init__(self, *, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._entries: dict[str, float] = {}  # key -> when it may be forgotten
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        return False

    @property
    def description(self) -> str:
        return "memory (this process only)"

    async def prepare(self) -> None:
        return None

    async def redeem(self, key: str, *, expires_at: float, issued_at: float | None = None) -> bool:
        now = self._wall()  # one clock, never back, for pruning and for judging expiry
        with self._lock:
            self._entries = {k: until for k, until in self._entries.items() if until >= now}
            if key in self._entries:
                return False
            if expires_at < now:
                raise ConsentRefused(expired_by_the_ledger(expires_at, now, self.description))
            self._entries[key] = expires_at + MARGIN_S
            return True

    async def aclose(self) -> None:
        return None


MAX_EVENTS = 20_000
"""The most events kept at once, whatever their age: memory stays bounded under any flood."""


class MemoryEventLog:
    def __init__(self, *, ttl_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._next_id = 0
        # event id -> (stream, payload, when kept), oldest first; streams -> their event ids
        self._events: OrderedDict[int, tuple[str, str | None, float]] = OrderedDict()
        self._streams: dict[str, list[int]] = {}

    async def append(self, stream_id: str, payload: str | None) -> str:
        now = self._monotonic()
        self._forget(now)
        self._next_id += 1
        self._events[self._next_id] = (stream_id, payload, now)
        self._streams.setdefault(stream_id, []).append(self._next_id)
        return str(self._next_id)

    async def after(self, event_id: str) -> tuple[str, list[tuple[str, str | None]]] | None:
        self._forget(self._monotonic())
        found = self._events.get(int(event_id)) if event_id.isdigit() else None
        if found is None:
            return None
        stream_id = found[0]
        later = [i for i in self._streams[stream_id] if i > int(event_id)]
        return stream_id, [(str(i), self._events[i][1]) for i in later]

    def _forget(self, now: float) -> None:
        while self._events:
            oldest, (stream_id, _, kept_at) = next(iter(self._events.items()))
            if kept_at >= now - self._ttl_s and len(self._events) < MAX_EVENTS:
                return
            del self._events[oldest]
            ids = self._streams[stream_id]
            ids.remove(oldest)  # the oldest of its stream: first in the list
            if not ids:
                del self._streams[stream_id]

    async def aclose(self) -> None:
        return None
