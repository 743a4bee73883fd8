"""The approval service (`consent/approvals.py`) the tools and the approval page share: who may decide (four
eyes on protected servers), waking the waiting call, the audit lines, and the approvers' webhooks.

Real parts: the ledgers (memory, and a redis-server for two replicas), an audit file, and webhook receivers on
loopback ports (one that answers, one that fails, one that never answers).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vps_snapshots_mcp.access import AccessPolicy
from vps_snapshots_mcp.audit import AuditLog
from vps_snapshots_mcp.consent.approvals import Approvals, Plan, approval_link
from vps_snapshots_mcp.policy import PolicySource
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator.serve import serving_in_thread
from vps_snapshots_mcp.state import ConsentLedger, open_ledger
from vps_snapshots_mcp.timing import Timing
from vps_snapshots_mcp.webhook import Webhooks, neutral

from .support.clocks import SNAP
from .support.redis_server import RedisServer

pytestmark = pytest.mark.anyio

ALICE, BOB, CAROL = "oauth:https://id#alice", "oauth:https://id#bob", "oauth:https://id#carol"
SITE = "https://snapshots.example"


@dataclass(frozen=True)
class Person:
    principal_key: str
    scopes: frozenset[str] | None = None
    groups: frozenset[str] = frozenset()


def policy(tmp_path: Path, *, webhooks: tuple[str, ...] = ()) -> AccessPolicy:
    hooks = "".join(
        f'\n[[rule]]\nprincipals = ["{ALICE}"]\nservers = [12345]\nactions = ["read"]\nwebhook = "{w}"\n'
        for w in webhooks
    )
    text = f"""
[approval]
protected_servers = [12345]

[[rule]]
principals = ["{ALICE}", "{CAROL}"]
servers = "all"
actions = "all"

[[rule]]
principals = ["{BOB}"]
servers = [12345]
actions = ["read", "approve"]
{hooks}"""
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return AccessPolicy(policy=PolicySource(str(path)))


def service(ledger: ConsentLedger, access: AccessPolicy, **options: object) -> Approvals:
    return Approvals(ledger, access, wall=Timing().wall, site_url=SITE, **options)  # type: ignore[arg-type]


def restore_plan(principal: str = ALICE) -> Plan:
    return Plan.of("restore", SNAP, principal=principal, safety_snapshot=True)


def test_the_link_lives_beside_the_mcp_endpoint_and_holds_only_the_id() -> None:
    # one base for the link and the sign-in's callback: the settings' site URL (the public URL without /mcp)
    def site(public_url: str) -> str | None:
        return Settings(api_token=SecretStr("t"), public_url=public_url).site_url

    assert site("https://snapshots.example/mcp") == "https://snapshots.example"
    assert site("https://example.com/tools/mcp/") == "https://example.com/tools"
    assert approval_link(SITE, "abc") == "https://snapshots.example/approve/abc"
    assert approval_link(f"{SITE}/", "abc") == "https://snapshots.example/approve/abc"


def test_the_plan_digest_binds_action_target_date_server_caller_and_options() -> None:
    base = restore_plan()
    others = [
        Plan.of("delete", SNAP, principal=ALICE),
        Plan.of("restore", SNAP, principal=BOB, safety_snapshot=True),
        Plan.of("restore", SNAP, principal=ALICE, safety_snapshot=False),
        Plan.of(
            "restore",
            SNAP.model_copy(update={"created_at": "2026-01-01T00:00:00Z"}),
            principal=ALICE,
            safety_snapshot=True,
        ),
        Plan.of("restore", SNAP.model_copy(update={"id": 900}), principal=ALICE, safety_snapshot=True),
    ]
    assert len({base.digest, *(p.digest for p in others)}) == 6
    assert Plan.read(base.shown()) == base and base.lost.startswith("Restoring snapshot")


# --- who may decide -----------------------------------------------------------------------------


async def test_on_an_unprotected_server_only_the_one_who_asked_approves(tmp_path: Path) -> None:
    ledger = open_ledger(None, wall=Timing().wall)
    approvals = service(ledger, AccessPolicy())  # no policy: nothing is protected
    proposed = await approvals.propose(restore_plan())
    view = await approvals.view(proposed.approval_id)
    assert view is not None and not view.protected and view.status == "pending"
    bob = await approvals.approve(proposed.approval_id, Person(BOB, frozenset({"snapshots:approve"})))
    assert not bob.allowed and "only the person who asked" in bob.reason
    assert (await approvals.approve(proposed.approval_id, Person(ALICE))).allowed
    again = await approvals.approve(proposed.approval_id, Person(ALICE))
    assert not again.allowed and "approved" in again.reason  # decided once
    held = await ledger.approval(proposed.approval_id)
    assert held is not None and (held.status, held.by) == ("approved", ALICE)


async def test_a_policy_rule_on_a_group_grants_approve_to_a_person_in_it(tmp_path: Path) -> None:
    # A person signed in on the page carries their groups (the IdP's groups claim): a rule naming the group
    # grants "approve" as it would for an MCP caller in that group.
    path = tmp_path / "groups.toml"
    path.write_text(
        '[approval]\nprotected_servers = [12345]\n\n[[rule]]\nprincipals = ["' + ALICE + '"]\nservers = "all"\n'
        'actions = "all"\n\n[[rule]]\ngroups = ["approvers"]\nservers = [12345]\nactions = ["read", "approve"]\n'
    )
    access = AccessPolicy(policy=PolicySource(str(path)))
    approvals = service(open_ledger(None, wall=Timing().wall), access)
    proposed = await approvals.propose(restore_plan())
    view = await approvals.view(proposed.approval_id)
    assert view is not None
    dave = "oauth:https://id#dave"
    assert not approvals.may_decide(dave, None, view).allowed
    assert approvals.may_decide(dave, None, view, groups=frozenset({"approvers"})).allowed
    assert not (await approvals.approve(proposed.approval_id, Person(dave, None, frozenset({"operators"})))).allowed
    assert (await approvals.approve(proposed.approval_id, Person(dave, None, frozenset({"approvers"})))).allowed


async def test_on_a_protected_server_four_eyes_approve(tmp_path: Path) -> None:
    ledger = open_ledger(None, wall=Timing().wall)
    approvals = service(ledger, policy(tmp_path))
    proposed = await approvals.propose(restore_plan())
    view = await approvals.view(proposed.approval_id)
    assert view is not None and view.protected
    verdicts = {
        "alice asks and may not approve herself": approvals.may_decide(ALICE, frozenset({"snapshots:approve"}), view),
        "carol may do everything but approve": approvals.may_decide(CAROL, None, view),
        "bob holds approve there by the policy": approvals.may_decide(BOB, None, view),
        "anyone holding the scope": approvals.may_decide(
            "oauth:https://id#dave", frozenset({"snapshots:approve"}), view
        ),
    }
    assert [v.allowed for v in verdicts.values()] == [False, False, True, True], verdicts
    assert "never the one who asked" in verdicts["alice asks and may not approve herself"].reason
    refused = await approvals.approve(proposed.approval_id, Person(ALICE, frozenset({"snapshots:approve"})))
    assert not refused.allowed
    assert (await ledger.approval(proposed.approval_id)).status == "pending"  # type: ignore[union-attr]
    assert (await approvals.approve(proposed.approval_id, Person(BOB))).allowed
    assert await ledger.redeem_approval(proposed.approval_id, plan_digest=restore_plan().digest) == BOB


async def test_the_one_who_asked_may_withdraw_a_protected_request(tmp_path: Path) -> None:
    approvals = service(open_ledger(None, wall=Timing().wall), policy(tmp_path))
    proposed = await approvals.propose(restore_plan())
    assert not (await approvals.decline(proposed.approval_id, Person(CAROL))).allowed
    assert (await approvals.decline(proposed.approval_id, Person(ALICE))).allowed
    assert not (await approvals.approve(proposed.approval_id, Person(BOB))).allowed


# --- waking the waiting call --------------------------------------------------------------------


async def test_a_decision_in_this_process_wakes_the_call_at_once() -> None:
    approvals = service(open_ledger(None, wall=Timing().wall), AccessPolicy(), poll_s=60.0)
    proposed = await approvals.propose(restore_plan())
    seen = []

    async def wait() -> None:
        seen.append(await approvals.wait_decided(proposed.approval_id))

    with anyio.fail_after(5):  # far less than the 60 s between looks at the ledger
        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await anyio.sleep(0.05)
            await approvals.approve(proposed.approval_id, Person(ALICE))
    assert seen[0] is not None and seen[0].status == "approved" and seen[0].decided_by == ALICE


async def test_a_decision_on_another_replica_is_seen_at_the_next_look(redis_server: RedisServer) -> None:
    here, there = open_ledger(redis_server.url, wall=Timing().wall), open_ledger(redis_server.url, wall=Timing().wall)
    try:
        waiting, page = service(here, AccessPolicy(), poll_s=0.1), service(there, AccessPolicy())
        proposed = await waiting.propose(restore_plan())
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(page.decline, proposed.approval_id, Person(ALICE))
                view = await waiting.wait_decided(proposed.approval_id)
        assert view is not None and view.status == "declined"
        assert [v.approval_id for v in await page.pending()] == []
    finally:
        await here.aclose()
        await there.aclose()


async def test_an_undecided_approval_ends_the_wait_at_its_expiry() -> None:
    approvals = service(open_ledger(None, wall=Timing().wall), AccessPolicy(), expiry_s=0.3, poll_s=10.0)
    proposed = await approvals.propose(restore_plan())
    with anyio.fail_after(5):
        view = await approvals.wait_decided(proposed.approval_id)
    assert view is not None and view.status == "expired"
    assert approvals._waking == {}  # nothing is kept for it


# --- the audit trail: a line for each step, naming who asked and who decided ---------------------


async def test_each_step_is_its_own_audit_line(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path / "audit.jsonl"), now=Timing().now)
    ledger = open_ledger(None, wall=Timing().wall)
    approvals = service(ledger, policy(tmp_path), audit=log, expiry_s=0.3)
    approved = await approvals.propose(restore_plan())
    await approvals.approve(approved.approval_id, Person(BOB))
    declined = await approvals.propose(restore_plan())
    await approvals.decline(declined.approval_id, Person(BOB))
    expired = await approvals.propose(restore_plan())
    await anyio.sleep(0.4)
    with pytest.raises(Exception, match="expired"):
        await approvals.redeem(expired.approval_id, restore_plan())
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(line["outcome"], line["details"]["principal"], line["details"]["approver"]) for line in lines] == [
        ("requested", ALICE, None),
        ("approved", ALICE, BOB),
        ("requested", ALICE, None),
        ("declined", ALICE, BOB),
        ("requested", ALICE, None),
        ("expired", ALICE, None),
    ]
    assert {line["tool"] for line in lines} == {"restore_snapshot"} and {line["snapshot_id"] for line in lines} == {801}
    assert lines[1]["actor"]["id"] == "https://id#bob" and lines[0]["actor"]["id"] == "https://id#alice"
    assert all(approved.approval_id not in json.dumps(line) for line in lines)  # the trail names, never links


# --- telling the approvers: a webhook that answers, fails or hangs changes nothing -----------------


class Received(list[dict[str, object]]):
    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()


class Said(logging.Handler):
    """The webhook module's log lines, and an event once `count` have come."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.count = count
        self.enough = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if len(self.lines) >= self.count:
            self.enough.set()


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    received = Received()

    async def hook(request: Request) -> Response:
        if request.url.path == "/fails":
            return Response("no", status_code=500)
        received.append(await request.json())
        received.arrived.set()
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"]), Route("/fails", hook, methods=["POST"])])
    with serving_in_thread(app) as url:
        yield url, received


@pytest.fixture
def silent() -> Iterator[str]:
    """A receiver that accepts the connection and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hangs"


async def test_webhooks_hear_of_a_pending_approval_and_their_failures_change_nothing(
    tmp_path: Path, receiver: tuple[str, Received], silent: str
) -> None:
    url, received = receiver
    said = Said(count=2)  # the failing one and the hanging one
    logging.getLogger("vps_snapshots_mcp.webhook").addHandler(said)
    access = policy(tmp_path, webhooks=(f"{silent}?secret=s3cr3t", f"{url}/fails?secret=s3cr3t", f"{url}/hook"))
    hostile = SNAP.model_copy(update={"name": "<!channel> \u202eevil <http://x|y> & co"})
    approvals = service(open_ledger(None, wall=Timing().wall), access, notify=Webhooks(access, timeout_s=1.0))
    started = time.monotonic()
    proposed = await approvals.propose(Plan.of("delete", hostile, principal=ALICE))
    assert time.monotonic() - started < 0.5  # the hanging webhook blocks nothing
    assert (await approvals.approve(proposed.approval_id, Person(BOB))).allowed
    assert await anyio.to_thread.run_sync(received.arrived.wait, 5)
    text = str(received[0]["text"])
    assert proposed.link in text and "delete snapshot 801" in text and "second person" in text
    assert "<!channel>" not in text and "\u202e" not in text and "&lt;!channel&gt;" in text and "&amp; co" in text
    try:
        assert await anyio.to_thread.run_sync(said.enough.wait, 5)
    finally:
        logging.getLogger("vps_snapshots_mcp.webhook").removeHandler(said)
    lines = " ".join(said.lines)
    assert "s3cr3t" not in lines and "/fails" not in lines and "500" in lines and "rule 4" in lines, lines


def test_neutral_makes_provider_strings_inert() -> None:
    assert neutral("a\nb\u2066c<@U1>&") == "abc&lt;@U1&gt;&amp;"
