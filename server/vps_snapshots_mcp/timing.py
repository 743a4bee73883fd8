"""Timing: the one source of "now", monotonic time and sleep for the whole server.

Tokens, the consent ledger, the provider client's retries, waiting and the
audit trail all take their time from one `Timing`, so a test replaces time in
one place and nothing waits for real. The provider simulator keeps a clock of
its own: it plays another party, and shares no code with the server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio


def _utc_now() -> datetime:
    return datetime.now(UTC)


class HighWaterMark:
    """The latest wall-clock time seen so far: it never goes back, even when the system clock does.

    Consent expiry is judged against it, so a clock stepped back cannot revive a
    token that has already expired, nor one whose use was already forgotten.
    """

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now
        self._highest = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        seen = self._now().timestamp()
        with self._lock:
            self._highest = max(self._highest, seen)
            return self._highest


@dataclass(frozen=True, kw_only=True)
class Timing:
    """Every source of time the server uses, in one place so tests can replace them."""

    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = _utc_now
    first_poll_s: float = 2.0
    max_poll_s: float = 15.0
    growth: float = 1.5
    wall: HighWaterMark = field(init=False, repr=False, compare=False)
    """Epoch seconds from `now` that never step back: for expiry decisions."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "wall", HighWaterMark(self.now))

    def poll_intervals(self) -> Iterator[float]:
        """2, 3, 4.5, 6.75, 10.1, 15, 15, ... seconds."""
        interval = self.first_poll_s
        while True:
            yield interval
            interval = min(self.max_poll_s, interval * self.growth)
