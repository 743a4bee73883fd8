"""How many polls one waiter makes: the yardstick for 'one provider GET per poll interval'."""

from __future__ import annotations

from vps_snapshots_mcp.timing import Timing


def polls_within(seconds: float) -> int:
    """How many polls one waiter's schedule (Timing.poll_intervals) makes until `seconds` have passed."""
    elapsed = 0.0
    for count, interval in enumerate(Timing().poll_intervals(), start=1):
        elapsed += interval
        if elapsed >= seconds:
            return count
    raise AssertionError("poll_intervals never ends")  # pragma: no cover
