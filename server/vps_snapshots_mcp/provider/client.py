"""SnapshotsClient: the provider's Snapshots API, its endpoints, pagination and records.

It implements the provider port (`provider/__init__.py`). Every request goes
through the one request path (`http.py`: authentication, timeouts, retries,
bounded reads, errors), so every endpoint behaves the same way under failure;
this module knows the endpoints and what their answers mean.

Endpoints
    The exact documented paths (docs/provider-api.md), with their trailing
    slash. There is no single-snapshot endpoint: `get_snapshot` reads the list.

Pagination
    `next` links are followed on the API's own origin only, up to `MAX_PAGES`
    pages, with loop detection. A list over `max_records` records across its
    pages is an `upstream_error`.

Distrust
    Records of another server than the one asked about are dropped (and
    logged): the provider's filter is not trusted. A record without a usable
    id is skipped with a warning. A create answered for another server is an
    `upstream_error`.

Reads in flight are shared
    Concurrent identical reads (the list, for one server or all) share one GET
    in flight (`single_flight.py`). A caller that must see the state as it is
    now, such as the look-up before a restore or delete, asks with
    `fresh=True` and always sends its own.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from ..errors import NotFoundError, UpstreamError
from ..models import CreatedSnapshot, RestoreStarted, ServerRef, Snapshot
from ..settings import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RECORDS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT_S,
)
from ..timing import Timing
from .changes import ChangeEvent, ChangeObserver, unobserved
from .failures import advice
from .http import (
    SERVER_RETRY_POLICY,
    ProviderHttp,
    RetryPolicy,
    Transport,
    asgi_transport,
)
from .single_flight import SingleFlight

if TYPE_CHECKING:
    from ..metrics import Metrics

logger = logging.getLogger(__name__)

__all__ = [  # the request path's names its users know from here
    "SERVER_RETRY_POLICY",
    "ChangeEvent",
    "RetryPolicy",
    "SnapshotsClient",
    "Transport",
    "asgi_transport",
]

MAX_PAGES = 100
"""Pagination stops here: 100 pages is far beyond the snapshots a server may hold (`SNAPSHOTS_PER_SERVER`) on any
real account."""


class SnapshotsClient:
    """Async client for the provider's Snapshots API. Use as an async context manager."""

    def __init__(
        self,
        *,
        base_url: str,
        token: SecretStr,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        transport: Transport | None = None,
        retry: RetryPolicy | None = None,
        timing: Timing | None = None,
        rand: Callable[[], float] = random.random,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_records: int = DEFAULT_MAX_RECORDS,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._http = ProviderHttp(
            metrics=metrics,
            base_url=base_url,
            token=token,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            transport=transport,
            retry=retry,
            timing=timing,
            rand=rand,
            max_concurrency=max_concurrency,
            max_response_bytes=max_response_bytes,
        )
        self._snapshots_url = f"{self._http.base_url}/snapshots/"
        self._max_records = max_records
        self._lists: SingleFlight[int | None, list[Snapshot]] = SingleFlight()

    async def __aenter__(self) -> SnapshotsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- endpoints -------------------------------------------------------------------------------

    async def list_snapshots(self, server_id: int | None = None, *, fresh: bool = False) -> list[Snapshot]:
        """All snapshots (of one server when `server_id` is given), following `next` links.

        Concurrent calls share one request in flight, unless `fresh`: then this call sends its own.
        """
        if fresh:
            return await self._list(server_id)
        snapshots, shared = await self._lists.run_telling(server_id, lambda: self._list(server_id))
        if shared and self._metrics is not None:
            self._metrics.shared_reads.inc()
        return list(snapshots)

    async def _list(self, server_id: int | None) -> list[Snapshot]:
        url = self._snapshots_url
        params: dict[str, Any] | None = {"server_id": server_id} if server_id is not None else None
        snapshots: list[Snapshot] = []
        read = 0
        visited: set[str] = set()
        for _ in range(MAX_PAGES):
            visited.add(url)
            response = await self._http.send("GET", url, params=params, operation="list")
            items, next_link, count = self._parse_page(self._http.read_json(response))
            read += count
            if read > self._max_records:
                head = (
                    f"the provider's snapshot list has more than {self._max_records} records, the most this "
                    "server reads"
                )
                raise UpstreamError(head + ". Nothing was changed.", advice=advice("max_records", head))
            snapshots.extend(self._of_server(items, server_id))
            if not next_link:
                return snapshots
            url = self._http.follow(next_link, current=response)
            if url in visited:
                raise UpstreamError("the provider's pagination links loop back on themselves")
            params = None  # the next link carries the query itself
        raise UpstreamError(f"the provider returned more than {MAX_PAGES} pages of snapshots")

    async def first_page(self) -> int:
        """One GET of the snapshot list's first page, no link followed: how many records it held.

        What `doctor` asks: the token is accepted and the URL answers like the API (a client made with
        `RetryPolicy(max_attempts=1)` sends exactly one request)."""
        response = await self._http.send("GET", self._snapshots_url, operation="list")
        return self._parse_page(self._http.read_json(response))[2]

    @staticmethod
    def _of_server(items: list[Snapshot], server_id: int | None) -> list[Snapshot]:
        """The records of the server asked about: the provider's filter is checked, not trusted."""
        if server_id is None:
            return items
        kept = [s for s in items if s.server_id == server_id]
        if len(kept) < len(items):
            logger.warning(
                "dropped %d snapshot records that the provider returned for server %d but that belong to "
                "another server (or name none)",
                len(items) - len(kept),
                server_id,
            )
        return kept

    async def get_snapshot(self, snapshot_id: int, *, fresh: bool = False) -> Snapshot:
        """One snapshot, found through the list endpoint (the API has no single-snapshot endpoint)."""
        for snapshot in await self.list_snapshots(fresh=fresh):
            if snapshot.id == snapshot_id:
                return snapshot
        head = f"snapshot {snapshot_id} does not exist"
        raise NotFoundError(head + ". Nothing was changed.", advice=advice("see_list", head))

    async def create_snapshot(
        self, server_id: int, name: str, description: str | None = None, *, observe: ChangeObserver = unobserved
    ) -> CreatedSnapshot:
        """Start a snapshot of `server_id`. The provider answers 201 with status `in_progress`.

        `observe` (each change method takes one) is told when the change is sent and when it is answered.
        """
        body: dict[str, Any] = {"server_id": server_id, "name": name}
        if description is not None:
            body["description"] = description
        response = await self._http.send(
            "POST", self._snapshots_url, json=body, operation="create", target=f"server {server_id}", observe=observe
        )
        status = response.status_code
        try:
            data = self._http.cleaned_json(response)
            created = CreatedSnapshot(snapshot=Snapshot.model_validate(data), message=_optional_str(data, "message"))
        except (ValueError, UnicodeDecodeError):  # ValidationError is a ValueError too
            observe(ChangeEvent("POST", "answered", operation="create"))
            # A 2xx means the provider took it; only its answer is unreadable.
            head = (
                f"the provider accepted the snapshot (HTTP {status}) but its answer could not be read, so the new "
                "snapshot's id is unknown."
            )
            raise UpstreamError(head, status=status, advice=advice("find_created", head, server_id=server_id)) from None
        observe(ChangeEvent("POST", "answered", created.snapshot.id, operation="create"))
        if created.snapshot.server_id not in (None, server_id):
            head = (
                f"the provider accepted the snapshot of server {server_id} but answered with snapshot "
                f"{created.snapshot.id} of server {created.snapshot.server_id}, so what it made is uncertain."
            )
            raise UpstreamError(head, status=status, advice=advice("list_server", head, server_id=server_id))
        if created.snapshot.server is None:
            # The provider left the server out: it is the one asked for (and the allowed-server checks need it).
            created = created.model_copy(
                update={"snapshot": created.snapshot.model_copy(update={"server": ServerRef(id=server_id)})}
            )
        return created

    async def restore_snapshot(self, snapshot_id: int, *, observe: ChangeObserver = unobserved) -> RestoreStarted:
        """Start restoring the snapshot's server to it. Overwrites the server; cannot be undone."""
        response = await self._http.send(
            "POST",
            f"{self._snapshots_url}{snapshot_id}/restore/",
            operation="restore",
            target=f"snapshot {snapshot_id}",
            observe=observe,
        )
        observe(ChangeEvent("POST", "answered", snapshot_id, operation="restore"))
        try:
            return RestoreStarted.model_validate(self._http.cleaned_json(response))
        except (ValueError, UnicodeDecodeError):
            # The provider said 2xx: the restore has started, whatever the body looks like.
            logger.warning("restore of snapshot %s started, but the provider's answer was unreadable", snapshot_id)
            return RestoreStarted(status="success")

    async def delete_snapshot(self, snapshot_id: int, *, observe: ChangeObserver = unobserved) -> None:
        """Delete the snapshot for good. The provider answers 204. Sent once, never retried."""
        url = f"{self._snapshots_url}{snapshot_id}/"
        await self._http.send("DELETE", url, operation="delete", target=f"snapshot {snapshot_id}", observe=observe)
        observe(ChangeEvent("DELETE", "answered", snapshot_id, operation="delete"))

    # --- parsing ---------------------------------------------------------------------------------

    @staticmethod
    def _parse_page(data: Any) -> tuple[list[Snapshot], str | None, int]:
        """The page's snapshots, its `next` link, and how many records it held (valid or not)."""
        if isinstance(data, list):  # an unpaginated provider that returns a bare array
            raw_items, next_link = data, None
        elif isinstance(data, dict) and isinstance(data.get("results"), list):
            raw_items = data["results"]
            next_link = data.get("next") if isinstance(data.get("next"), str) else None
        else:
            raise UpstreamError("the provider's snapshot list has an unexpected shape (no 'results' list)")
        snapshots: list[Snapshot] = []
        for raw in raw_items:
            try:
                snapshots.append(Snapshot.model_validate(raw))
            except ValidationError:
                # A record without a usable id cannot be shown or acted on; skip it loudly.
                logger.warning("skipping a snapshot record the provider sent without a valid id")
        return snapshots, next_link, len(raw_items)


def _optional_str(data: Any, key: str) -> str | None:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
