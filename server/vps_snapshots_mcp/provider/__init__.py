"""The provider port: what the server asks of a snapshot provider, and what the provider promises.

The code above the provider (the protocol layer, the waits) depends on `SnapshotsProvider`, never on
a concrete client. The current provider's client (`client.py`: endpoints, pagination, parsing, on the
request path in `http.py`) implements it; the provider's facts (`facts.py`) are re-exported here.
Provider errors are the `ProviderError` branch of the error tree (`errors.py`): they carry the HTTP
status, the provider's own message, the wait it asked for, and advice that the protocol layer words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .facts import (
    DESCRIPTION_MAX,
    NAME_MAX,
    NAME_PATTERN,
    RESTORE_TAKES,
    SNAPSHOT_TAKES,
    SNAPSHOTS_PER_SERVER,
    Duration,
)

if TYPE_CHECKING:  # the records load with the client, at the first call, not at start
    from ..models import CreatedSnapshot, RestoreStarted, Snapshot
    from .changes import ChangeObserver

__all__ = [
    "DESCRIPTION_MAX",
    "NAME_MAX",
    "NAME_PATTERN",
    "RESTORE_TAKES",
    "SNAPSHOTS_PER_SERVER",
    "SNAPSHOT_TAKES",
    "Duration",
    "SnapshotsProvider",
]


class SnapshotsProvider(Protocol):
    """A snapshot provider, as the server uses it. Every failure is a `ProviderError`."""

    async def list_snapshots(self, server_id: int | None = None, *, fresh: bool = False) -> list[Snapshot]:
        """Every snapshot (of one server when `server_id` is given), only that server's records.

        Reads may be shared with identical reads in flight, unless `fresh`: then the state as it is now.
        """
        ...

    async def get_snapshot(self, snapshot_id: int, *, fresh: bool = False) -> Snapshot:
        """One snapshot; `NotFoundError` when there is none. `fresh` as for `list_snapshots`."""
        ...

    async def create_snapshot(
        self, server_id: int, name: str, description: str | None = None, *, observe: ChangeObserver = ...
    ) -> CreatedSnapshot:
        """Start a snapshot of the server (it runs on at the provider); sent at most once.

        Every change method tells `observe` when its request is sent and when it is answered 2xx.
        """
        ...

    async def restore_snapshot(self, snapshot_id: int, *, observe: ChangeObserver = ...) -> RestoreStarted:
        """Start restoring the snapshot's server to it, overwriting the server; sent at most once."""
        ...

    async def delete_snapshot(self, snapshot_id: int, *, observe: ChangeObserver = ...) -> None:
        """Delete the snapshot for good; sent at most once."""
        ...

    async def aclose(self) -> None:
        """Release what the provider holds open (connections)."""
        ...
