"""Waiting for a snapshot to finish: a growing poll interval, progress, a deadline.

Snapshots take minutes (`provider/facts.py`: SNAPSHOT_TAKES), and MCP clients
give up on a silent call after about a minute, so a wait reports progress after
every poll. The interval grows
from about 2 s to about 15 s, which keeps a long wait cheap while a short one
still answers soon. Every clock and sleep comes from `Timing` (`timing.py`), so
tests advance time instead of waiting for it.

A wait holds no resources but the call itself. Cancelling the call stops it at
the next await, and nothing is left half-done on this side: the provider carries
on with the snapshot on its own.

Calls waiting on the same snapshot share one poller (`SnapshotWatches`), and
each poll is a list read that concurrent reads share (`single_flight.py`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from .errors import ProviderConnectionError, ProviderTimeoutError, RateLimitedError, SnapshotsError, UpstreamError
from .models import Snapshot
from .provider import SnapshotsProvider
from .provider.text import plain_or_quoted
from .timing import Timing

if TYPE_CHECKING:
    from .metrics import Metrics

logger = logging.getLogger(__name__)

RUNNING_STATUSES = frozenset({"in_progress", "pending", "queued", "creating"})
"""Statuses that mean "not finished yet". The API documents only in_progress; the rest are common synonyms."""

Report = Callable[[float, float | None, str], Awaitable[None]]


@dataclass(frozen=True)
class WaitOutcome:
    snapshot: Snapshot
    timed_out: bool
    waited_s: float


def is_running(snapshot: Snapshot) -> bool:
    return snapshot.status in RUNNING_STATUSES


def format_duration(seconds: float) -> str:
    """`2m10s`, `45s`, `1h02m`."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class SnapshotWatches:
    """Waiting on snapshots, with one poller per snapshot however many calls wait on it.

    Every call waiting on the same snapshot joins one watch. One of them at a
    time (the leader) sleeps to the next poll, polls, and publishes what it saw;
    the others wake on it, report it, and go on waiting. If the leader's call
    ends (done, timed out, cancelled), the next waiter takes over. So 300 calls
    waiting on one snapshot cost one GET per poll interval, and each call still
    ends at its own deadline: the leader also wakes at the earliest deadline of
    the watch.
    """

    def __init__(self, client: SnapshotsProvider, timing: Timing, metrics: Metrics | None = None) -> None:
        self._metrics = metrics
        self._client = client
        self._timing = timing
        self._watches: dict[int, _Watch] = {}

    async def wait(self, snapshot: Snapshot, *, timeout_s: float, report: Report) -> WaitOutcome:
        """Poll until the snapshot leaves its running status or `timeout_s` passes; report after each poll.

        A poll that fails transiently (rate limited, 5xx, timeout, connection) is
        logged and the wait goes on: the snapshot is still being made. Any other
        error (the snapshot vanished, the token was revoked) ends the wait.
        """
        watch = self._watches.get(snapshot.id)
        if watch is None:
            watch = self._watches[snapshot.id] = _Watch(snapshot, self._timing)
            self._count(pollers=1)
        self._count(waits=1)
        started = self._timing.monotonic()
        deadline = started + timeout_s
        watch.deadlines.append(deadline)
        try:
            return await self._wait(watch, snapshot, started, deadline, report)
        finally:
            watch.deadlines.remove(deadline)
            if not watch.deadlines:
                del self._watches[snapshot.id]
                self._count(pollers=-1)
            self._count(waits=-1)

    def _count(self, *, waits: int = 0, pollers: int = 0) -> None:
        if self._metrics is not None:
            self._metrics.waits.inc(waits)
            self._metrics.pollers.inc(pollers)

    async def _wait(
        self, watch: _Watch, snapshot: Snapshot, started: float, deadline: float, report: Report
    ) -> WaitOutcome:
        timeout_s = deadline - started
        seen = watch.version
        current = watch.latest if watch.version else snapshot
        await report(0.0, timeout_s, f"{plain_or_quoted(current.status)}, 0s elapsed")
        while True:
            elapsed = self._timing.monotonic() - started
            if not is_running(current):
                return WaitOutcome(current, timed_out=False, waited_s=elapsed)
            if elapsed >= timeout_s:
                return WaitOutcome(current, timed_out=True, waited_s=elapsed)
            if watch.version > seen:
                seen = watch.version
                if watch.failure is not None:
                    raise copy.copy(watch.failure)  # each waiter its own: errors are annotated on the way out
                current = watch.latest
                await report(
                    elapsed, timeout_s, f"{plain_or_quoted(current.status)}, {format_duration(elapsed)} elapsed"
                )
            elif watch.leading:
                await watch.changed.wait()
            else:
                await self._lead(watch)

    async def _lead(self, watch: _Watch) -> None:
        """Sleep to the next poll (or the earliest deadline, if sooner); poll if it is due; wake the others."""
        watch.leading = True
        try:
            wake = min(watch.next_poll_at, min(watch.deadlines))
            now = self._timing.monotonic()
            if wake > now:
                await self._timing.sleep(wake - now)
            if self._timing.monotonic() >= watch.next_poll_at:
                await self._poll(watch)
        finally:
            watch.leading = False
            watch.changed.set()
            watch.changed = anyio.Event()

    async def _poll(self, watch: _Watch) -> None:
        watch.failure = None
        try:
            watch.latest = await self._client.get_snapshot(watch.latest.id)
        except (RateLimitedError, UpstreamError, ProviderTimeoutError, ProviderConnectionError) as exc:
            logger.info("polling snapshot %s: %s; will poll again", watch.latest.id, exc.code)
        except SnapshotsError as exc:
            watch.failure = exc
        watch.version += 1
        watch.next_poll_at = self._timing.monotonic() + next(watch.intervals)


class _Watch:
    """The shared state of everyone waiting on one snapshot."""

    def __init__(self, snapshot: Snapshot, timing: Timing) -> None:
        self.latest = snapshot
        self.version = 0
        """Bumped by every poll: a waiter reports each version it has not seen."""
        self.failure: SnapshotsError | None = None
        self.leading = False
        self.changed = anyio.Event()
        self.deadlines: list[float] = []
        self.intervals = timing.poll_intervals()
        self.next_poll_at = timing.monotonic() + next(self.intervals)
