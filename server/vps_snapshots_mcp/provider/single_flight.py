"""Single-flight: concurrent identical reads share one request in flight.

A hundred calls asking the same question at the same moment (a burst of
`list_snapshots`, or many waiters polling one snapshot) cost the provider one
request: the first caller sends it; callers that arrive while it is in flight
wait for its answer, or for a copy of its error. Nothing is cached: once the
answer is in, the next caller sends a new request.

If the caller that sent the request is cancelled, its waiters do not inherit
the cancellation: the next of them sends the request again. That is right for
a read, and for a fetch cancelled before its change was sent; a fetch whose
change may land once sent (a create's POST) shields that change from its
caller's cancellation, so the change's outcome is stored here and shared, and
no waiter sends it a second time. (Cancellation is only delivered at a
checkpoint: the value a shielded fetch returns reaches `_InFlight` first.)
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar, cast

import anyio

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _InFlight(Generic[V]):
    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: V | None = None
        self.error: Exception | None = None
        self.answered = False


class SingleFlight(Generic[K, V]):
    """One call of `fetch` at a time per key; concurrent callers share its outcome."""

    def __init__(self) -> None:
        self._in_flight: dict[K, _InFlight[V]] = {}

    async def run(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        return (await self.run_telling(key, fetch))[0]

    async def run_telling(self, key: K, fetch: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """The outcome, and whether it was another caller's (True) or this caller's own call (False)."""
        while (call := self._in_flight.get(key)) is not None:
            await call.done.wait()
            if call.answered:
                if call.error is not None:
                    # Each caller gets its own copy: callers annotate errors (target, details) as they go.
                    raise copy.copy(call.error)
                return cast(V, call.value), True
            # The caller that sent it was cancelled: go round, and send it ourselves if nobody else has.
        call = cast("_InFlight[V]", _InFlight())  # not _InFlight[V](): a generic alias call costs microseconds
        self._in_flight[key] = call
        try:
            call.value = await fetch()
            call.answered = True
            return call.value, False
        except Exception as exc:
            call.error, call.answered = exc, True
            raise
        finally:
            del self._in_flight[key]
            call.done.set()
