"""A change crossing the wire, told to the one caller that asked for it (no HTTP here: it loads at start)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Operation = Literal["list", "create", "restore", "delete"]

ENDPOINTS: dict[Operation, str] = {
    "list": "/snapshots/",
    "create": "/snapshots/",
    "restore": "/snapshots/{id}/restore/",
    "delete": "/snapshots/{id}/",
}
"""Each operation's endpoint as a template (what metrics label a request with: never the path with its ids)."""


@dataclass(frozen=True)
class ChangeEvent:
    """A change crossing the wire: `sent` before the request goes out, `answered` once the provider said 2xx.

    The operation that asks for a change observes its own (`observe=` on each change method), so its audit
    event records a call cancelled mid-change as what it was (sent, or done), never as "nothing happened".
    """

    method: str
    stage: Literal["sent", "answered"]
    snapshot_id: int | None = None
    operation: Operation | None = None
    """Which change it is; the observer a change method is given hears only that call's change."""


ChangeObserver = Callable[[ChangeEvent], None]
"""Told of one call's change as it crosses the wire; the caller that asked for the change passes it."""


def unobserved(event: ChangeEvent) -> None:
    """The observer of a change nobody asked to hear of."""
