"""The simulated provider's state machine, independent of HTTP.

Time comes from an injected clock, and state changes are computed lazily from
it on every access: a snapshot created at T is `in_progress` until
T + `snapshot_seconds`, then `completed` with a size. A restore marks the server
`restoring` until T + `restore_seconds`. Tests advance a `ManualClock` instead
of sleeping.

This module deliberately shares no code with the client: a parsing bug must not
be able to hide on both sides.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .faults import Fault

Clock = Callable[[], datetime]

SNAPSHOT_LIMIT = 5
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
NAME_MAX = 100
DESCRIPTION_MAX = 1000


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class SimServer:
    id: int
    name: str
    disk_mb: int
    status: str = "running"
    restoring_until: datetime | None = None


@dataclass
class SimSnapshot:
    id: int
    server_id: int
    name: str
    created_at: datetime
    description: str | None = None
    status: str = "completed"
    size_mb: int | None = None
    completes_at: datetime | None = None
    will_fail: bool = False
    sent_as: dict[str, Any] = field(default_factory=dict)
    """Fields sent as given here instead of as computed: hostile strings, wrong types."""


@dataclass(frozen=True)
class RecordedRequest:
    """What reached the simulator, for tests to assert on."""

    method: str
    path: str
    query: str
    body: Any
    authorized: bool
    bearer: str | None = None
    """The bearer token presented (a test double may keep it; the real provider's logs are not ours)."""
    content_type: str | None = None
    fault: str | None = None


class ProviderError(Exception):
    """An error answer: HTTP status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def _detail(status: int, text: str) -> ProviderError:
    return ProviderError(status, {"detail": text})


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass
class ProviderState:
    """All servers and snapshots of one simulated account, plus its faults and request log."""

    clock: Clock = system_clock
    snapshot_seconds: float = 240.0
    restore_seconds: float = 600.0
    servers: dict[int, SimServer] = field(default_factory=dict)
    snapshots: dict[int, SimSnapshot] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    page_size: int | None = None
    """When set, the list endpoint paginates with `next`/`previous` links."""
    latency_s: float = 0.0
    """Real time every request takes before it is answered (benchmarks, concurrency tests)."""
    fail_next_snapshots: int = 0
    """The next N snapshots created end `failed` instead of `completed`."""
    next_id: int = 802
    echo_authorization: bool = False
    """Hostile: every error message and success message carries the Authorization header it was sent."""
    ignore_filters: bool = False
    """Hostile: the list ignores `?server_id=` and answers with every server's snapshots."""

    # --- faults and bookkeeping ------------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.matches(method, path):
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)
                return fault
        return None

    def requests_to(self, method: str, path_suffix: str = "") -> list[RecordedRequest]:
        """The recorded requests with this method whose path ends with `path_suffix`."""
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    @property
    def mutations(self) -> list[RecordedRequest]:
        """Every POST and DELETE that reached the simulator (whatever its outcome)."""
        return [r for r in self.requests if r.method in ("POST", "DELETE")]

    # --- the clock-driven state machine ----------------------------------------------------------

    def _tick(self) -> None:
        now = self.clock()
        for snap in self.snapshots.values():
            if snap.status == "in_progress" and snap.completes_at is not None and snap.completes_at <= now:
                if snap.will_fail:
                    snap.status = "failed"
                else:
                    snap.status = "completed"
                    snap.size_mb = self.servers[snap.server_id].disk_mb if snap.server_id in self.servers else 1024
        for server in self.servers.values():
            if server.status == "restoring" and server.restoring_until is not None and server.restoring_until <= now:
                server.status = "running"
                server.restoring_until = None

    def snapshot_json(self, snap: SimSnapshot) -> dict[str, Any]:
        server = self.servers.get(snap.server_id)
        return {
            "id": snap.id,
            "server": {"id": snap.server_id, "name": server.name if server else None},
            "name": snap.name,
            "status": snap.status,
            "size_mb": snap.size_mb,
            "created_at": _iso(snap.created_at),
            "description": snap.description,
        } | snap.sent_as

    # --- the four operations ---------------------------------------------------------------------

    def list(self, server_id: int | None) -> list[dict[str, Any]]:
        self._tick()
        chosen = [s for s in self.snapshots.values() if server_id is None or s.server_id == server_id]
        chosen.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        return [self.snapshot_json(s) for s in chosen]

    def create(self, body: Any) -> dict[str, Any]:
        self._tick()
        if not isinstance(body, dict):
            raise _detail(400, "Invalid parameters: expected a JSON object.")
        errors: dict[str, list[str]] = {}
        server_id = body.get("server_id")
        name = body.get("name")
        description = body.get("description")
        if server_id is None:
            errors["server_id"] = ["This field is required."]
        elif not isinstance(server_id, int) or isinstance(server_id, bool):
            errors["server_id"] = ["A valid integer is required."]
        if name is None:
            errors["name"] = ["This field is required."]
        elif not isinstance(name, str) or not NAME_PATTERN.match(name):
            errors["name"] = ["Invalid parameters: use only letters, digits, hyphens and underscores."]
        elif len(name) > NAME_MAX:
            errors["name"] = [f"Ensure this field has no more than {NAME_MAX} characters."]
        if description is not None and (not isinstance(description, str) or len(description) > DESCRIPTION_MAX):
            errors["description"] = [f"Must be a string of at most {DESCRIPTION_MAX} characters."]
        if errors:
            raise ProviderError(400, errors)
        assert isinstance(server_id, int) and isinstance(name, str)
        server = self.servers.get(server_id)
        if server is None:
            raise _detail(404, "Server not found.")
        if server.status == "restoring":
            raise _detail(400, "Server is not in a valid state for a snapshot: a restore is in progress.")
        if sum(1 for s in self.snapshots.values() if s.server_id == server_id) >= SNAPSHOT_LIMIT:
            raise _detail(400, f"Snapshot limit reached: a server can have at most {SNAPSHOT_LIMIT} snapshots.")
        now = self.clock()
        while self.next_id in self.snapshots:
            self.next_id += 1
        snap = SimSnapshot(
            id=self.next_id,
            server_id=server_id,
            name=name,
            description=description,
            created_at=now,
            status="in_progress",
            completes_at=now + timedelta(seconds=self.snapshot_seconds),
            will_fail=self.fail_next_snapshots > 0,
        )
        self.fail_next_snapshots = max(0, self.fail_next_snapshots - 1)
        self.snapshots[snap.id] = snap
        self.next_id += 1
        return self.snapshot_json(snap) | {
            "message": "Snapshot is being created. This may take 3-10 minutes depending on server size."
        }

    def restore(self, snapshot_id: int) -> dict[str, Any]:
        self._tick()
        snap = self.snapshots.get(snapshot_id)
        if snap is None:
            raise _detail(404, "Snapshot not found.")
        server = self.servers.get(snap.server_id)
        if server is None:
            raise _detail(404, "Server not found.")
        if server.status == "restoring":
            raise _detail(400, "Server is not in a valid state for restoration: a restore is already in progress.")
        if snap.status != "completed":
            raise _detail(400, f"Snapshot is not completed and cannot be restored (status: {snap.status}).")
        server.status = "restoring"
        server.restoring_until = self.clock() + timedelta(seconds=self.restore_seconds)
        return {
            "status": "success",
            "message": "Server is being restored from snapshot. This may take 5-15 minutes.",
            "snapshot": {"id": snap.id, "name": snap.name, "created_at": _iso(snap.created_at)},
            "server": {"id": server.id, "name": server.name, "status": server.status},
        }

    def delete(self, snapshot_id: int) -> None:
        self._tick()
        if self.snapshots.pop(snapshot_id, None) is None:
            raise _detail(404, "Snapshot not found.")


def seeded_state(
    *, clock: Clock = system_clock, snapshot_seconds: float = 240.0, restore_seconds: float = 600.0
) -> ProviderState:
    """The documented example (server 12345 with snapshots 801 and 798) plus two more servers.

    Server 34567 is at the 5-snapshot limit, and 23456 has a failed snapshot, so
    quota and odd statuses can be tried without setting anything up.
    """
    state = ProviderState(clock=clock, snapshot_seconds=snapshot_seconds, restore_seconds=restore_seconds)
    for server in (
        SimServer(12345, "web-server-01", disk_mb=5120),
        SimServer(23456, "db-server-01", disk_mb=20480),
        SimServer(34567, "staging-01", disk_mb=2048),
    ):
        state.servers[server.id] = server
    seeds: list[tuple[int, int, str, str, str | None, str, int | None]] = [
        (
            801,
            12345,
            "pre-migration-snapshot",
            "2025-01-15T18:30:00Z",
            "Before major migration",
            "completed",
            5120,
        ),
        (
            798,
            12345,
            "weekly-snapshot-2025-01-08",
            "2025-01-08T12:00:00Z",
            "Weekly snapshot",
            "completed",
            4856,
        ),
        (810, 23456, "nightly-2025-01-20", "2025-01-20T02:00:00Z", "Nightly snapshot", "completed", 19876),
        (
            811,
            23456,
            "pre-upgrade-pg16",
            "2025-01-21T09:00:00Z",
            "Before PostgreSQL 16 upgrade",
            "failed",
            None,
        ),
    ]
    seeds += [
        (
            790 + i,
            34567,
            f"staging-build-{i + 1}",
            f"2025-01-0{i + 1}T08:00:00Z",
            None,
            "completed",
            1900 + i * 10,
        )
        for i in range(SNAPSHOT_LIMIT)
    ]
    for sid, server_id, name, created, description, status, size in seeds:
        state.snapshots[sid] = SimSnapshot(
            id=sid,
            server_id=server_id,
            name=name,
            created_at=_at(created),
            description=description,
            status=status,
            size_mb=size,
        )
    return state
