"""Waiting for a snapshot to finish: a growing poll interval, progress, a deadline.

Snapshots take 3-10 minutes, and MCP clients give up on a silent call after
about a minute, so a wait reports progress after every poll. The interval grows
from about 2 s to about 15 s, which keeps a long wait cheap while a short one
still answers soon. Every clock and sleep comes from `Timing` (`timing.py`), so
tests advance time instead of waiting for it.

A wait holds no resources but the call itself. Cancelling the call stops it at
the next await, and nothing is left half-done on this side: the provider carries
on with the snapshot on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .client import SnapshotsClient
from .errors import ProviderConnectionError, ProviderTimeoutError, RateLimitedError, UpstreamError
from .models import Snapshot
from .timing import Timing

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


async def wait_for_snapshot(
    client: SnapshotsClient, snapshot: Snapshot, *, timeout_s: float, timing: Timing, report: Report
) -> WaitOutcome:
    """Poll until the snapshot leaves its running status or `timeout_s` passes; report after each poll.

    A poll that fails transiently (rate limited, 5xx, timeout, connection) is
    logged and the wait goes on: the snapshot is still being made. Any other
    error (the snapshot vanished, the token was revoked) ends the wait.
    """
    started = timing.monotonic()
    current = snapshot
    await report(0.0, timeout_s, f"{current.status}, 0s elapsed")
    for interval in timing.poll_intervals():
        elapsed = timing.monotonic() - started
        if not is_running(current):
            return WaitOutcome(current, timed_out=False, waited_s=elapsed)
        remaining = timeout_s - elapsed
        if remaining <= 0:
            return WaitOutcome(current, timed_out=True, waited_s=elapsed)
        await timing.sleep(min(interval, remaining))
        try:
            current = await client.get_snapshot(current.id)
        except (RateLimitedError, UpstreamError, ProviderTimeoutError, ProviderConnectionError) as exc:
            logger.info("polling snapshot %s: %s; will poll again", current.id, exc.code)
        elapsed = timing.monotonic() - started
        await report(elapsed, timeout_s, f"{current.status}, {format_duration(elapsed)} elapsed")
    raise AssertionError("poll_intervals never ends")  # pragma: no cover
