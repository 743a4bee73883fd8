"""What the provider promises, declared once: every number in prose, docstrings, prompts and published
descriptions reads it from here (docs/provider-api.md is the source)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Duration:
    """A typical duration in minutes, as the provider states it."""

    low_min: int
    high_min: int

    @property
    def text(self) -> str:
        """`3-10 min`: for tight descriptions."""
        return f"{self.low_min}-{self.high_min} min"

    @property
    def words(self) -> str:
        """`3-10 minutes`: for sentences."""
        return f"{self.low_min}-{self.high_min} minutes"


SNAPSHOTS_PER_SERVER = 5
"""The most snapshots one server may hold."""
SNAPSHOT_TAKES = Duration(3, 10)
"""How long a snapshot takes to complete."""
RESTORE_TAKES = Duration(5, 15)
"""How long a restore takes; the server is down meanwhile."""
NAME_MAX = 64
"""The longest snapshot name this server sends."""
NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
"""The snapshot names this server sends: letters, digits, hyphens and underscores."""
DESCRIPTION_MAX = 500
"""The longest snapshot description this server sends."""

__all__ = [
    "DESCRIPTION_MAX",
    "NAME_MAX",
    "NAME_PATTERN",
    "RESTORE_TAKES",
    "SNAPSHOTS_PER_SERVER",
    "SNAPSHOT_TAKES",
    "Duration",
]
