"""Clocks and a sample snapshot that tests of tokens and ledgers share: settable, so no test waits for real time."""

from __future__ import annotations

from datetime import UTC, datetime

from vps_snapshots_mcp.models import ServerRef, Snapshot

ME = "local:this-process"
"""The caller every token in these tests is minted for, unless a test says otherwise."""

SNAP = Snapshot(
    id=801,
    server=ServerRef(id=12345, name="web-server-01"),
    name="pre-migration-snapshot",
    status="completed",
    size_mb=5120,
    created_at="2025-01-15T18:30:00Z",
)


class WallClock:
    """A settable stand-in for the never-back wall clock (epoch seconds)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class SteppableClock:
    """A wall clock a test can move forward and set back."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now
