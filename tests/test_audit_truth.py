"""The audit trail tells the truth about the audited tool's own change, and a create is sent once.

Driven in process against the simulator: the audit file is read back, and what
reached the provider is counted from the simulator's request log. A change that
"lands later" is modelled by `LandsLater`: the request reaches the provider when
the test says so, even if the caller that sent it has been cancelled meanwhile,
as a request already on the network would.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp_types import CallToolResult, ElicitRequestParams, ElicitResult
from pydantic import SecretStr

from vps_snapshots_mcp.compose import build_server
from vps_snapshots_mcp.protocol.server import SnapshotsServer
from vps_snapshots_mcp.provider.client import asgi_transport
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import Fault, ProviderState, create_app
from vps_snapshots_mcp.timing import Timing

from .support.mcp_client import cancel_once_started, connected, preview_token, text_of
from .support.world import BASE_URL, TOKEN, ServerFactory, SimTime

pytestmark = pytest.mark.anyio

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def until_recorded(path: Path, count: int) -> list[dict[str, Any]]:
    """The audit records, once there are `count` (a cancelled call writes its record as its task unwinds)."""
    with anyio.fail_after(5):
        while len(records(path)) < count:  # noqa: ASYNC110 - a file has no event
            await anyio.sleep(0.01)
    return records(path)


class LandsLater:
    """The simulator behind a gate for one method: such a request reaches it only once `release` is set.

    The gated request is handed over in a task of its own, so cancelling the caller does not stop it:
    it lands at the provider at release, as a request already sent would.
    """

    def __init__(self, app: ASGIApp, group: anyio.abc.TaskGroup, method: str) -> None:
        self._app, self._group, self._method = app, group, method
        self.arrived = 0
        self.arrival = anyio.Event()
        self.release = anyio.Event()

    async def __call__(
        self, scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http" or scope["method"] != self._method:
            await self._app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer: list[Message] = []
        answered = anyio.Event()

        release = self.release  # the gate as it stands when the request arrives

        async def land() -> None:
            await release.wait()

            async def replay() -> Message:
                return {"type": "http.request", "body": body, "more_body": False}

            async def keep(message: Message) -> None:
                answer.append(message)

            await self._app(scope, replay, keep)
            answered.set()

        self._group.start_soon(land)
        self.arrived += 1
        self.arrival.set()
        await answered.wait()
        for message in answer:
            await send(message)


@asynccontextmanager
async def gated_server(
    provider: ProviderState, audit_path: Path, method: str, timing: Timing, **settings: Any
) -> AsyncIterator[tuple[SnapshotsServer, LandsLater]]:
    async with anyio.create_task_group() as group:
        gate = LandsLater(create_app(provider, token=TOKEN), group, method)
        server = build_server(
            Settings(api_token=SecretStr(TOKEN), api_url=BASE_URL, audit_log=str(audit_path), **settings),
            transport=asgi_transport(gate),
            timing=timing,
        )
        try:
            yield server, gate
        finally:
            gate.release.set()  # whatever is still at the gate lands, and the group can end


# --- restore: the audit line is about the restore, not the safety snapshot --------------------------------


async def test_a_restore_cancelled_during_the_safety_wait_is_recorded_as_cancelled_and_about_its_target(
    provider: ProviderState, sim_time: SimTime, tmp_path: Path
) -> None:
    audit_path = tmp_path / "audit.jsonl"
    waiting = anyio.Event()

    async def stall(seconds: float) -> None:  # the safety snapshot's wait: held until the client cancels
        waiting.set()
        await anyio.sleep_forever()

    server = build_server(
        Settings(api_token=SecretStr(TOKEN), api_url=BASE_URL, audit_log=str(audit_path), consent="token"),
        transport=asgi_transport(create_app(provider, token=TOKEN)),
        timing=Timing(sleep=stall, monotonic=sim_time.monotonic, now=sim_time.clock),
    )
    async with Client(server) as client:
        previewed = await client.call_tool("restore_snapshot", {"snapshot_id": 801, "safety_snapshot": True})
        assert previewed.structured_content is not None, text_of(previewed)
        token = previewed.structured_content["confirmation_token"]
        arguments = {"snapshot_id": 801, "confirm": True, "confirmation_token": token, "safety_snapshot": True}
        await cancel_once_started(client, waiting, "restore_snapshot", arguments)
        line = (await until_recorded(audit_path, 2))[-1]

    assert len(provider.requests_to("POST", "/snapshots/")) == 1  # the safety snapshot's
    assert provider.requests_to("POST", "/restore/") == []  # no restore was sent
    [safety_id] = [s.id for s in provider.snapshots.values() if s.name.startswith("pre-restore-801-")]
    assert (line["tool"], line["outcome"], line["error_code"], line["consent"]) == (
        "restore_snapshot",
        "cancelled",
        None,
        None,
    )
    assert (line["snapshot_id"], line["server_id"], line["snapshot_name"]) == (801, 12345, "pre-migration-snapshot")
    assert line["details"] == {"cancelled_by": "client", "safety_snapshot_id": safety_id}


async def test_a_restore_cancelled_after_its_post_left_is_unknown_not_about_the_safety_snapshot(
    provider: ProviderState, sim_time: SimTime, tmp_path: Path
) -> None:
    audit_path = tmp_path / "audit.jsonl"
    timing = sim_time.timing()
    async with (
        gated_server(provider, audit_path, "POST", timing, consent="token") as (server, gate),
        Client(server) as client,
    ):
        previewed = await client.call_tool("restore_snapshot", {"snapshot_id": 801, "safety_snapshot": True})
        assert previewed.structured_content is not None, text_of(previewed)
        token = previewed.structured_content["confirmation_token"]
        # The safety snapshot's POST and the restore's POST both pass the gate; the restore's is held.
        arguments = {"snapshot_id": 801, "confirm": True, "confirmation_token": token, "safety_snapshot": True}
        held = anyio.Event()

        async def release_the_safety_post() -> None:
            await gate.arrival.wait()
            gate.release.set()  # the safety snapshot's POST lands at once
            gate.release = anyio.Event()  # the next (the restore's) is held
            gate.arrival = anyio.Event()
            await gate.arrival.wait()
            held.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(release_the_safety_post)
                await cancel_once_started(client, held, "restore_snapshot", arguments)
        line = (await until_recorded(audit_path, 2))[-1]
    assert (line["outcome"], line["snapshot_id"], line["server_id"]) == ("unknown", 801, 12345)
    [safety_id] = [s.id for s in provider.snapshots.values() if s.name.startswith("pre-restore-801-")]
    assert line["details"] == {"cancelled_by": "client", "request_sent": True, "safety_snapshot_id": safety_id}
    assert len(provider.requests_to("POST", "/restore/")) == 1  # it landed after all: "unknown" was right


# --- delete: the look-up's facts are kept when the call is cancelled in flight --------------------------


async def test_a_delete_cancelled_in_flight_names_its_server_and_snapshot(
    provider: ProviderState, sim_time: SimTime, tmp_path: Path
) -> None:
    audit_path = tmp_path / "audit.jsonl"
    async with (
        gated_server(provider, audit_path, "DELETE", sim_time.timing(), consent="token") as (server, gate),
        Client(server) as client,
    ):
        token = await preview_token(client, "delete_snapshot", 798)
        arguments = {"snapshot_id": 798, "confirm": True, "confirmation_token": token}
        await cancel_once_started(client, gate.arrival, "delete_snapshot", arguments)
        line = (await until_recorded(audit_path, 2))[-1]
    assert (line["outcome"], line["details"]) == ("unknown", {"cancelled_by": "client", "request_sent": True})
    assert (line["snapshot_id"], line["server_id"], line["snapshot_name"]) == (
        798,
        12345,
        "weekly-snapshot-2025-01-08",
    )


async def test_a_delete_cancelled_while_the_user_is_asked_names_its_target(
    make_server: ServerFactory, provider: ProviderState, tmp_path: Path
) -> None:
    audit_path = tmp_path / "audit.jsonl"
    asked = anyio.Event()

    async def user(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async with connected(make_server(audit_log=str(audit_path)), mode="legacy", elicit=user) as client:
        await cancel_once_started(client, asked, "delete_snapshot", {"snapshot_id": 798, "confirm": True})
        [line] = await until_recorded(audit_path, 1)
    assert provider.mutations == []
    assert (line["outcome"], line["details"], line["consent"]) == ("cancelled", {"cancelled_by": "client"}, None)
    assert (line["snapshot_id"], line["server_id"], line["snapshot_name"]) == (
        798,
        12345,
        "weekly-snapshot-2025-01-08",
    )


# --- create: an accepted POST with an unreadable answer is marked as sent -------------------------------


async def test_a_create_accepted_with_an_unreadable_answer_is_recorded_as_sent(
    provider: ProviderState, sim_time: SimTime, tmp_path: Path
) -> None:
    audit_path = tmp_path / "audit.jsonl"
    # The provider makes the snapshot, and its 201 is garbled on the way back.
    provider.inject(Fault(status=201, body="malformed_json", lose_answer=True, method="POST"))
    server = build_server(
        Settings(api_token=SecretStr(TOKEN), api_url=BASE_URL, audit_log=str(audit_path)),
        transport=asgi_transport(create_app(provider, token=TOKEN)),
        timing=sim_time.timing(),
    )
    async with Client(server) as client:
        result = await client.call_tool("create_snapshot", {"server_id": 12345, "name": "before-update"})
    assert result.is_error and text_of(result).startswith("upstream_error:")
    [line] = records(audit_path)
    assert line["details"] == {"request_sent": True}
    assert line["outcome"] == "unknown"  # not "failed": the provider accepted it
    assert (line["error_code"], line["server_id"], line["snapshot_name"]) == ("upstream_error", 12345, "before-update")
    assert len(provider.requests_to("POST")) == 1


# --- create: a waiter never POSTs again while the first POST may still land -----------------------------


async def test_a_waiter_does_not_post_again_when_the_first_create_is_cancelled_mid_post(
    provider: ProviderState, sim_time: SimTime, tmp_path: Path
) -> None:
    audit_path = tmp_path / "audit.jsonl"
    arguments = {"server_id": 12345, "name": "before-update"}
    async with (
        gated_server(provider, audit_path, "POST", sim_time.timing()) as (server, gate),
        Client(server) as client,
    ):  # one session: its calls share the server's single flights
        waiter: list[CallToolResult] = []

        async def wait_in_line() -> None:
            waiter.append(await client.call_tool("create_snapshot", arguments))

        async with anyio.create_task_group() as group:
            scope = anyio.CancelScope()

            async def create() -> None:
                with scope:
                    await client.call_tool("create_snapshot", arguments)

            group.start_soon(create)
            await gate.arrival.wait()  # the first POST is on its way to the provider
            group.start_soon(wait_in_line)
            await anyio.wait_all_tasks_blocked()  # the second call waits (or, wrongly, POSTs too)
            scope.cancel()  # the first caller gives up mid-POST
            await anyio.wait_all_tasks_blocked()
            gate.release.set()  # what was sent lands
        lines = await until_recorded(audit_path, 2)

    named = [s for s in provider.snapshots.values() if s.name == "before-update"]
    assert len(provider.requests_to("POST")) == 1 and len(named) == 1
    [result] = waiter
    if result.is_error:
        assert text_of(result).split(":")[0] in {"provider_timeout", "upstream_error"}, text_of(result)
    else:
        assert result.structured_content is not None
        assert result.structured_content["snapshot"]["id"] == named[0].id
    # The first call's POST landed: its record says so, with the snapshot it made (the cancellation reached
    # it once its answer was in); the waiter's says it found that snapshot.
    made, shared = sorted(lines, key=lambda line: line["details"]["already_exists"])
    assert (made["outcome"], made["snapshot_id"], made["details"]["already_exists"]) == ("executed", named[0].id, False)
    assert (shared["outcome"], shared["snapshot_id"], shared["details"]) == (
        "executed",
        named[0].id,
        {"already_exists": True},
    )
