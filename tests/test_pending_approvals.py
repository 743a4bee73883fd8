"""Pending approvals in the consent ledger: proposed, approved or declined by a person, redeemed at most once.

Every store, real: memory, SQLite files, a redis-server each test starts. Expiry
is judged on the ledger's own clock, as for consents.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from vps_snapshots_mcp.state import ApprovalRefused, ConsentLedger, open_ledger
from vps_snapshots_mcp.timing import Timing

from .support.clocks import SteppableClock
from .support.redis_server import RedisServer

pytestmark = pytest.mark.anyio

PLAN = "sha256:restore-801-with-safety-snapshot"
OTHER_PLAN = "sha256:delete-798"


@asynccontextmanager
async def opened(url: str | None, timing: Timing | None = None) -> AsyncIterator[ConsentLedger]:
    ledger = open_ledger(url, wall=(timing or Timing()).wall)
    try:
        yield ledger
    finally:
        await ledger.aclose()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    return {"memory": None, "sqlite": f"sqlite:///{tmp_path}/state.db"}[request.param]


async def refused(reason: str, attempt: Awaitable[object]) -> ApprovalRefused:
    with pytest.raises(ApprovalRefused) as caught:
        await attempt
    assert caught.value.reason == reason, caught.value
    return caught.value


def soon() -> float:
    return time.time() + 600


async def test_propose_approve_redeem_once(state_url: str | None) -> None:
    async with opened(state_url) as ledger:
        approval = await ledger.propose(PLAN, expires_at=soon())
        await ledger.approve(approval, by="oauth:https://id.example#alice")
        assert await ledger.redeem_approval(approval, plan_digest=PLAN) == "oauth:https://id.example#alice"
        again = await refused("used", ledger.redeem_approval(approval, plan_digest=PLAN))
    assert "already used" in str(again)


async def test_the_id_is_opaque_and_unguessable(state_url: str | None) -> None:
    async with opened(state_url) as ledger:
        first, second = await ledger.propose(PLAN, expires_at=soon()), await ledger.propose(PLAN, expires_at=soon())
        assert first != second and len(first) >= 43 and PLAN not in first
        await refused("unknown", ledger.approve(first[:-1] + ("A" if first[-1] != "A" else "B"), by="alice"))
        await refused("unknown", ledger.redeem_approval("not-an-approval", plan_digest=PLAN))


async def test_nothing_is_redeemed_before_it_is_approved(state_url: str | None) -> None:
    async with opened(state_url) as ledger:
        approval = await ledger.propose(PLAN, expires_at=soon())
        await refused("pending", ledger.redeem_approval(approval, plan_digest=PLAN))
        await ledger.approve(approval, by="alice")  # the refused attempt spent nothing
        assert await ledger.redeem_approval(approval, plan_digest=PLAN) == "alice"


async def test_a_declined_approval_is_never_redeemed_nor_approved_after(state_url: str | None) -> None:
    async with opened(state_url) as ledger:
        approval = await ledger.propose(PLAN, expires_at=soon())
        await ledger.decline(approval, by="alice")
        await refused("declined", ledger.redeem_approval(approval, plan_digest=PLAN))
        decided = await refused("decided", ledger.approve(approval, by="mallory"))
        assert "already declined" in str(decided)
        await refused("declined", ledger.redeem_approval(approval, plan_digest=PLAN))


async def test_an_approved_one_is_decided_once(state_url: str | None) -> None:
    async with opened(state_url) as ledger:
        approval = await ledger.propose(PLAN, expires_at=soon())
        await ledger.approve(approval, by="alice")
        await refused("decided", ledger.decline(approval, by="bob"))
        await refused("decided", ledger.approve(approval, by="bob"))
        assert await ledger.redeem_approval(approval, plan_digest=PLAN) == "alice"


async def test_the_wrong_plan_is_refused_and_spends_nothing(state_url: str | None) -> None:
    async with opened(state_url) as ledger:
        approval = await ledger.propose(PLAN, expires_at=soon())
        await ledger.approve(approval, by="alice")
        another = await refused("another_plan", ledger.redeem_approval(approval, plan_digest=OTHER_PLAN))
        assert "not what was approved" in str(another)
        assert await ledger.redeem_approval(approval, plan_digest=PLAN) == "alice"


async def test_an_expired_approval_is_refused(state_url: str | None) -> None:
    async with opened(state_url) as ledger:
        await refused("expired", ledger.propose(PLAN, expires_at=time.time() - 1))
        approval = await ledger.propose(PLAN, expires_at=time.time() + 1.0)
        pending = await ledger.propose(PLAN, expires_at=time.time() + 1.0)
        await ledger.approve(approval, by="alice")
        await anyio.sleep(1.2)
        expired = await refused("expired", ledger.redeem_approval(approval, plan_digest=PLAN))
        await refused("expired", ledger.approve(pending, by="alice"))
    assert "by the clock of the consent ledger" in str(expired)


async def test_concurrent_redemptions_execute_once(state_url: str | None) -> None:
    async with opened(state_url) as ledger:
        approval = await ledger.propose(PLAN, expires_at=soon())
        await ledger.approve(approval, by="alice")
        outcomes: list[str] = []

        async def redeem() -> None:
            try:
                outcomes.append(await ledger.redeem_approval(approval, plan_digest=PLAN))
            except ApprovalRefused as exc:
                outcomes.append(exc.reason)

        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(redeem)
    assert sorted(outcomes) == ["alice"] + ["used"] * 19


# --- shared by processes: two ledgers on one store -------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_two_ledgers_on_one_store_share_each_approval(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path}/state.db" if kind == "sqlite" else request.getfixturevalue("redis_server").url
    async with opened(url) as page, opened(url) as server:
        approval = await server.propose(PLAN, expires_at=soon())
        await refused("pending", page.redeem_approval(approval, plan_digest=PLAN))
        await page.approve(approval, by="alice")  # the approval page, another process
        await refused("another_plan", page.redeem_approval(approval, plan_digest=OTHER_PLAN))
        assert await server.redeem_approval(approval, plan_digest=PLAN) == "alice"
        await refused("used", page.redeem_approval(approval, plan_digest=PLAN))
        declined = await page.propose(PLAN, expires_at=soon())
        await server.decline(declined, by="bob")
        await refused("declined", page.redeem_approval(declined, plan_digest=PLAN))


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_expiry_goes_by_the_ledgers_clock_not_a_clock_set_back(kind: str, tmp_path: Path) -> None:
    clock = SteppableClock()
    url = None if kind == "memory" else f"sqlite:///{tmp_path}/state.db"
    async with opened(url, Timing(now=clock)) as ledger:
        approval = await ledger.propose(PLAN, expires_at=clock.now.timestamp() + 600)
        await ledger.approve(approval, by="alice")
        clock.now += timedelta(minutes=11)
        await refused("expired", ledger.redeem_approval(approval, plan_digest=PLAN))
        clock.now -= timedelta(minutes=11)  # the system clock is set back: the ledger's clock is not
        await refused("expired", ledger.redeem_approval(approval, plan_digest=PLAN))


async def test_a_sqlite_ledger_judges_by_the_files_clock_not_the_callers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    ahead = SteppableClock()
    ahead.now = datetime.now(UTC) + timedelta(minutes=12)  # another process on the file, its clock ahead
    async with opened(url) as ours, opened(url, Timing(now=ahead)) as theirs:
        approval = await ours.propose(PLAN, expires_at=soon())
        await ours.approve(approval, by="alice")
        await theirs.propose(OTHER_PLAN, expires_at=ahead.now.timestamp() + 600)  # moves the file's clock on
        await refused("expired", ours.redeem_approval(approval, plan_digest=PLAN))


# --- what a person deciding is shown: held with the approval, read back on any replica ----------------


async def test_an_approval_holds_its_plan_requester_and_protection(state_url: str | None) -> None:
    async with opened(state_url) as ledger:
        shown = '{"action": "restore", "snapshot_name": "<b>x</b>"}'
        approval = await ledger.propose(
            PLAN, expires_at=soon(), plan=shown, requester="oauth:https://id#alice", protected=True
        )
        held = await ledger.approval(approval)
        assert held is not None
        assert (held.approval_id, held.plan, held.requester, held.protected) == (
            approval,
            shown,
            "oauth:https://id#alice",
            True,
        )
        assert (held.status, held.by, held.plan_digest) == ("pending", None, PLAN)
        await ledger.approve(approval, by="oauth:https://id#bob")
        decided = await ledger.approval(approval)
        assert decided is not None and (decided.status, decided.by) == ("approved", "oauth:https://id#bob")
        assert await ledger.approval("not-an-approval") is None


async def test_the_pending_list_holds_only_undecided_unexpired_approvals(state_url: str | None) -> None:
    async with opened(state_url) as ledger:
        later = await ledger.propose(PLAN, expires_at=soon() + 60, plan="later")
        first = await ledger.propose(PLAN, expires_at=soon(), plan="first")
        decided = await ledger.propose(PLAN, expires_at=soon())
        await ledger.decline(decided, by="alice")
        short = await ledger.propose(PLAN, expires_at=time.time() + 1.0)
        assert [a.approval_id for a in await ledger.pending_approvals()] == [short, first, later]
        await anyio.sleep(1.2)
        pending = await ledger.pending_approvals()
        assert [(a.approval_id, a.plan) for a in pending] == [(first, "first"), (later, "later")]


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_another_process_reads_the_plan_and_the_list(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path}/state.db" if kind == "sqlite" else request.getfixturevalue("redis_server").url
    async with opened(url) as page, opened(url) as server:
        approval = await server.propose(PLAN, expires_at=soon(), plan="{}", requester="local:me")
        assert [a.approval_id for a in await page.pending_approvals()] == [approval]
        held = await page.approval(approval)
        assert held is not None and held.requester == "local:me"
