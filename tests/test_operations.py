"""The operations without MCP: what a task runner or an approval page would call, each filling in its audit event."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from vps_snapshots_mcp.access import AccessPolicy
from vps_snapshots_mcp.audit import Attempt
from vps_snapshots_mcp.errors import ForbiddenError, QuotaExceededError
from vps_snapshots_mcp.operations import Operations
from vps_snapshots_mcp.provider.client import SnapshotsClient
from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.waiting import SnapshotWatches

from .support.world import SimTime, SleepRecorder, make_client

pytestmark = pytest.mark.anyio

WHO = "token:static-test"


@pytest.fixture
async def sim_client(provider: ProviderState) -> AsyncIterator[SnapshotsClient]:
    async with make_client(provider, SleepRecorder()) as client:
        yield client


def operations_on(client: SnapshotsClient, sim_time: SimTime, access: AccessPolicy | None = None) -> Operations:
    timing = sim_time.timing()
    return Operations(client, SnapshotWatches(client, timing), timing, access or AccessPolicy())


async def test_create_records_who_asked_what_was_sent_and_what_came_back(
    sim_client: SnapshotsClient, sim_time: SimTime, provider: ProviderState
) -> None:
    ops = operations_on(sim_client, sim_time)
    event = Attempt(tool="create_snapshot")
    created = await ops.create(event, WHO, 12345, "before-upgrade", "a note")
    assert not created.already_exists and created.wait is None
    assert (event.principal, event.server_id, event.snapshot_name) == (WHO, 12345, "before-upgrade")
    assert (event.change_sent, event.change_answered, event.snapshot_id) == (True, True, created.snapshot.id)
    assert (event.outcome, event.details) == ("executed", {"already_exists": False})

    again = Attempt(tool="create_snapshot")
    assert (await ops.create(again, WHO, 12345, "before-upgrade", None)).already_exists
    assert (again.change_sent, again.details) == (False, {"already_exists": True})
    assert len(provider.requests_to("POST")) == 1


async def test_a_wait_reports_progress_through_the_port_it_is_given(
    sim_client: SnapshotsClient, sim_time: SimTime
) -> None:
    reports: list[tuple[float, float | None, str]] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        reports.append((done, total, message))

    created = await operations_on(sim_client, sim_time).create(
        Attempt(tool="create_snapshot"), WHO, 12345, "waited", None, wait_s=900, progress=progress
    )
    assert created.wait is not None and not created.wait.timed_out and created.snapshot.status == "completed"
    assert reports[0] == (0.0, 900.0, f"snapshot {created.snapshot.id}: in_progress, 0s elapsed")
    assert reports[-1][2].startswith(f"snapshot {created.snapshot.id}: completed, ")


async def test_create_is_refused_before_posting_when_the_server_is_full_or_fenced_off(
    sim_client: SnapshotsClient, sim_time: SimTime, provider: ProviderState
) -> None:
    with pytest.raises(QuotaExceededError):
        await operations_on(sim_client, sim_time).create(Attempt(tool="create_snapshot"), WHO, 34567, "one-more", None)
    fenced = operations_on(sim_client, sim_time, AccessPolicy(allowed_servers=frozenset({23456})))
    with pytest.raises(ForbiddenError):
        await fenced.create(Attempt(tool="create_snapshot"), WHO, 12345, "elsewhere", None)
    assert provider.requests_to("POST") == []


async def test_restore_takes_the_safety_snapshot_first_then_posts_once(
    sim_client: SnapshotsClient, sim_time: SimTime, provider: ProviderState
) -> None:
    target = await sim_client.get_snapshot(801)
    event = Attempt(tool="restore_snapshot")
    restored = await operations_on(sim_client, sim_time).restore(
        event, WHO, target, consent="elicitation", safety_snapshot=True
    )
    assert restored.safety is not None and restored.safety.status == "completed"
    posts = [request.path for request in provider.requests_to("POST")]
    assert posts[0].endswith("/snapshots/") and posts[1:] == [posts[1]] and posts[1].endswith("/801/restore/")
    assert (event.outcome, event.consent, event.principal, event.snapshot_id) == ("executed", "elicitation", WHO, 801)
    assert event.details == {"safety_snapshot_id": restored.safety.id}


async def test_delete_records_its_consent_and_target(
    sim_client: SnapshotsClient, sim_time: SimTime, provider: ProviderState
) -> None:
    target = await sim_client.get_snapshot(798)
    event = Attempt(tool="delete_snapshot")
    await operations_on(sim_client, sim_time).delete(event, WHO, target, consent="token")
    assert 798 not in provider.snapshots
    assert (event.outcome, event.consent, event.server_id, event.snapshot_id, event.snapshot_name) == (
        "executed",
        "token",
        12345,
        798,
        "weekly-snapshot-2025-01-08",
    )
    assert (event.change_sent, event.change_answered) == (True, True)
