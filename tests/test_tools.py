"""The tools through a real MCP client in memory, asserting what reached the simulator every time."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp_types import CallToolResult, ElicitRequestParams, ElicitResult
from pydantic import SecretStr

from vps_snapshots_mcp import __version__
from vps_snapshots_mcp.compose import build_server
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import Fault, ManualClock, ProviderState

from .support.mcp_client import connected, text_of
from .support.world import TOKEN, ServerFactory, SimTime

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(make_server: ServerFactory) -> AsyncIterator[Client]:
    async with connected(make_server()) as c:
        yield c


async def call(client: Client, tool: str, **arguments: Any) -> CallToolResult:
    return await client.call_tool(tool, arguments)


async def ok(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await call(client, tool, **arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    assert json.loads(text_of(result)) == result.structured_content  # the text mirrors the structured result
    return dict(result.structured_content)


async def error(client: Client, tool: str, **arguments: Any) -> str:
    result = await call(client, tool, **arguments)
    assert result.is_error, result.structured_content
    return text_of(result)


class Elicitor:
    """A client-side user who answers every elicitation the same way, and remembers what they were asked."""

    def __init__(self, action: Literal["accept", "decline", "cancel"], content: dict[str, Any] | None = None) -> None:
        self.action: Literal["accept", "decline", "cancel"] = action
        self.content = content
        self.asked: list[str] = []

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        return ElicitResult(action=self.action, content=self.content)


# --- the read and create tools ----------------------------------------------------------------------


async def test_list_snapshots_returns_count_and_snapshots(client: Client, provider: ProviderState) -> None:
    result = await ok(client, "list_snapshots", server_id=12345)
    assert result["count"] == 2
    assert [s["id"] for s in result["snapshots"]] == [801, 798]
    assert result["snapshots"][0]["server"] == {"id": 12345, "name": "web-server-01"}
    assert [(r.method, r.query) for r in provider.requests] == [("GET", "server_id=12345")]


async def test_list_without_a_server_lists_all(client: Client) -> None:
    assert (await ok(client, "list_snapshots"))["count"] == 9


async def test_get_snapshot_returns_the_snapshot(client: Client) -> None:
    snapshot = await ok(client, "get_snapshot", snapshot_id=810)
    assert (snapshot["name"], snapshot["status"], snapshot["size_mb"]) == ("nightly-2025-01-20", "completed", 19876)


async def test_create_snapshot_starts_one_and_says_how_to_follow_it(client: Client, provider: ProviderState) -> None:
    result = await ok(client, "create_snapshot", server_id=12345, name="before-update", description="apt upgrade")
    assert result["snapshot"]["status"] == "in_progress"
    assert "get_snapshot" in result["message"]
    [post] = provider.mutations
    assert post.body == {"server_id": 12345, "name": "before-update", "description": "apt upgrade"}


# --- error codes ------------------------------------------------------------------------------------


async def test_not_found(client: Client, provider: ProviderState) -> None:
    assert (await error(client, "get_snapshot", snapshot_id=4242)).startswith("not_found: snapshot 4242")
    assert (await error(client, "delete_snapshot", snapshot_id=4242, confirm=True)).startswith("not_found: ")
    assert (await error(client, "create_snapshot", server_id=999, name="x")).startswith("not_found: server 999")
    assert [r.method for r in provider.mutations] == ["POST"]  # only the create reached it; it answered 404


async def test_quota_exceeded_is_refused_before_posting_naming_the_oldest(
    client: Client, provider: ProviderState
) -> None:
    text = await error(client, "create_snapshot", server_id=34567, name="sixth")
    assert text.startswith('quota_exceeded: server 34567 "staging-01" already has 5 snapshots')
    assert '790 "staging-build-1" ("2025-01-01T08:00:00Z", 1900 MB)' in text
    assert '791 "staging-build-2"' in text and '792 "staging-build-3"' in text and "793" not in text
    assert provider.mutations == []


async def test_the_provider_quota_answer_is_still_understood(client: Client, provider: ProviderState) -> None:
    provider.inject(Fault.error(400, "Snapshot limit reached.", method="POST"))
    text = await error(client, "create_snapshot", server_id=12345, name="racing")
    assert text.startswith("quota_exceeded: ")


async def test_invalid_state_from_the_provider(client: Client, provider: ProviderState) -> None:
    first = await ok(client, "restore_snapshot", snapshot_id=801)
    await ok(client, "restore_snapshot", snapshot_id=801, confirm=True, confirmation_token=first["confirmation_token"])
    second = await ok(client, "restore_snapshot", snapshot_id=798)
    text = await error(
        client, "restore_snapshot", snapshot_id=798, confirm=True, confirmation_token=second["confirmation_token"]
    )
    assert text.startswith("invalid_state: ") and "Wait for the running" in text
    assert len(provider.mutations) == 2


async def test_a_failed_snapshot_is_refused_before_any_preview(client: Client, provider: ProviderState) -> None:
    text = await error(client, "restore_snapshot", snapshot_id=811)
    assert text.startswith("invalid_state: snapshot 811 is failed")
    assert provider.mutations == []


async def test_invalid_request_quotes_the_provider(client: Client, provider: ProviderState) -> None:
    provider.inject(Fault.error(400, "Invalid parameters: description contains forbidden words", method="POST"))
    text = await error(client, "create_snapshot", server_id=12345, name="x", description="bad")
    assert text.startswith("invalid_request: ") and "forbidden words" in text


async def test_rate_limited(client: Client, provider: ProviderState) -> None:
    provider.inject(Fault.rate_limit("120"))
    text = await error(client, "list_snapshots")
    assert text.startswith("rate_limited: ") and "120 s" in text


async def test_upstream_error_after_retries_without_sleeping(
    client: Client, provider: ProviderState, sim_time: SimTime
) -> None:
    provider.inject(Fault.html_page(502, times=3))
    text = await error(client, "list_snapshots")
    assert text.startswith("upstream_error: ") and "<" not in text
    assert len(provider.requests) == 3 and len(sim_time.delays) == 2


async def test_unauthorized_never_echoes_a_token(make_server: ServerFactory) -> None:
    async with connected(make_server(token="wrong-token-9f8e7d6c")) as client:
        text = await error(client, "list_snapshots")
    assert text.startswith("unauthorized: ") and "wrong-token" not in text and TOKEN not in text


async def test_timeout(served_provider: str, provider: ProviderState, sim_time: SimTime) -> None:
    provider.inject(Fault.latency(1.0))  # longer than the 0.3 s timeout is all it takes
    server = build_server(
        Settings(api_token=SecretStr(TOKEN), api_url=served_provider, timeout_s=0.3), timing=sim_time.timing()
    )
    async with connected(server) as client:
        text = await error(client, "list_snapshots")
    assert text.startswith("timeout: ") and "Nothing was changed" in text


async def test_connection_error(make_server: ServerFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with connected(make_server(api_url=f"http://127.0.0.1:{port}/api/v1")) as client:
        text = await error(client, "list_snapshots")
    assert text.startswith("connection_error: ") and "Nothing was changed" in text


@pytest.mark.parametrize(
    ("tool", "arguments", "mentions"),
    [
        ("get_snapshot", {"snapshot_id": 0}, "snapshot_id"),
        ("get_snapshot", {"snapshot_id": -5}, "snapshot_id"),
        ("get_snapshot", {"snapshot_id": 2**60}, "snapshot_id"),
        ("get_snapshot", {"snapshot_id": "eight hundred"}, "snapshot_id"),
        ("get_snapshot", {}, "snapshot_id"),
        ("create_snapshot", {"server_id": 12345, "name": "has space"}, "name"),
        ("create_snapshot", {"server_id": 12345, "name": ""}, "name"),
        ("create_snapshot", {"server_id": 12345, "name": "x" * 65}, "name"),
        ("create_snapshot", {"server_id": 12345, "name": "ok", "description": "d" * 501}, "description"),
        ("delete_snapshot", {"snapshot_id": 801, "confirm": True, "confirmation-token": "x"}, "confirmation-token"),
        ("delete_snapshot", {"snapshot_id": 801, "confirmation_token": "t" * 2000}, "confirmation_token"),
    ],
)
async def test_invalid_arguments_say_what_to_fix_and_send_nothing(
    client: Client, provider: ProviderState, tool: str, arguments: dict[str, Any], mentions: str
) -> None:
    text = await error(client, tool, **arguments)
    assert text.startswith("invalid_argument: ")
    assert mentions in text and "nothing was changed" in text
    assert len(text) < 400
    assert provider.requests == []


# --- previews and tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["restore", "delete"])
async def test_a_preview_changes_nothing_and_carries_a_warning_and_token(
    client: Client, provider: ProviderState, action: str
) -> None:
    preview = await ok(client, f"{action}_snapshot", snapshot_id=801)
    assert preview["status"] == "confirmation_required" and preview["action"] == action
    assert preview["snapshot"]["id"] == 801
    assert preview["confirmation_token"].startswith("v2.")
    assert preview["expires_at"] == "2026-11-27T12:10:00Z"  # NOW + 10 minutes, on the one clock
    assert "cannot be undone" in preview["warning"] and "Show this warning to the user" in preview["warning"]
    assert provider.mutations == []
    assert [r.method for r in provider.requests] == ["GET"]


async def test_restore_with_a_valid_token_executes_once(client: Client, provider: ProviderState) -> None:
    preview = await ok(client, "restore_snapshot", snapshot_id=801)
    result = await ok(
        client, "restore_snapshot", snapshot_id=801, confirm=True, confirmation_token=preview["confirmation_token"]
    )
    assert result["status"] == "restore_started"
    assert result["server"] == {"id": 12345, "name": "web-server-01", "status": "restoring"}
    assert result["snapshot"]["id"] == 801
    assert [(r.method, r.path) for r in provider.mutations] == [("POST", "/api/v1/snapshots/801/restore/")]
    # Looked up again before executing: preview GET, execute GET, then the POST.
    assert [r.method for r in provider.requests] == ["GET", "GET", "POST"]


async def test_delete_with_a_valid_token_executes(client: Client, provider: ProviderState) -> None:
    preview = await ok(client, "delete_snapshot", snapshot_id=798)
    result = await ok(
        client, "delete_snapshot", snapshot_id=798, confirm=True, confirmation_token=preview["confirmation_token"]
    )
    assert result == {
        "status": "deleted",
        "snapshot_id": 798,
        "message": 'Snapshot 798 of server 12345 "web-server-01" was deleted permanently.',
    }
    assert 798 not in provider.snapshots


async def test_restore_with_a_forged_token_sends_nothing(client: Client, provider: ProviderState) -> None:
    text = await error(client, "restore_snapshot", snapshot_id=801, confirm=True, confirmation_token="v1.Zm9v.YmFy")
    assert text.startswith("confirmation_invalid: ") and "Nothing was changed" in text
    assert provider.mutations == []


async def test_delete_with_an_expired_token_sends_nothing(
    client: Client, provider: ProviderState, clock: ManualClock
) -> None:
    preview = await ok(client, "delete_snapshot", snapshot_id=798)
    clock.advance(601)
    text = await error(
        client, "delete_snapshot", snapshot_id=798, confirm=True, confirmation_token=preview["confirmation_token"]
    )
    assert text.startswith("confirmation_invalid: the confirmation token expired")
    assert provider.mutations == []


async def test_restore_with_a_reused_token_sends_nothing(client: Client, provider: ProviderState) -> None:
    preview = await ok(client, "restore_snapshot", snapshot_id=801)
    token = preview["confirmation_token"]
    await ok(client, "restore_snapshot", snapshot_id=801, confirm=True, confirmation_token=token)
    assert hasattr(provider.clock, "advance")
    provider.clock.advance(600)  # the restore has finished; only the token stands in the way
    text = await error(client, "restore_snapshot", snapshot_id=801, confirm=True, confirmation_token=token)
    assert "already used" in text
    assert len(provider.mutations) == 1


async def test_a_token_for_another_snapshot_sends_nothing(client: Client, provider: ProviderState) -> None:
    preview = await ok(client, "delete_snapshot", snapshot_id=798)
    text = await error(
        client, "delete_snapshot", snapshot_id=801, confirm=True, confirmation_token=preview["confirmation_token"]
    )
    assert "issued for snapshot 798, not 801" in text
    assert provider.mutations == []


async def test_a_delete_token_does_not_restore(client: Client, provider: ProviderState) -> None:
    preview = await ok(client, "delete_snapshot", snapshot_id=801)
    text = await error(
        client, "restore_snapshot", snapshot_id=801, confirm=True, confirmation_token=preview["confirmation_token"]
    )
    assert "issued for delete, not restore" in text
    assert provider.mutations == []


async def test_a_snapshot_changed_between_preview_and_execute_is_refused(
    client: Client, provider: ProviderState
) -> None:
    preview = await ok(client, "restore_snapshot", snapshot_id=801)
    provider.snapshots[801].created_at = provider.snapshots[801].created_at.replace(year=2026)
    text = await error(
        client, "restore_snapshot", snapshot_id=801, confirm=True, confirmation_token=preview["confirmation_token"]
    )
    assert "has changed since the preview" in text
    assert provider.mutations == []


async def test_a_snapshot_gone_between_preview_and_execute_is_not_found(
    client: Client, provider: ProviderState
) -> None:
    preview = await ok(client, "delete_snapshot", snapshot_id=798)
    del provider.snapshots[798]
    text = await error(
        client, "delete_snapshot", snapshot_id=798, confirm=True, confirmation_token=preview["confirmation_token"]
    )
    assert text.startswith("not_found: ")
    assert provider.mutations == []


async def test_confirm_without_a_token_from_a_client_that_cannot_elicit_is_refused(
    client: Client, provider: ProviderState
) -> None:
    text = await error(client, "delete_snapshot", snapshot_id=798, confirm=True)
    assert text.startswith("confirmation_invalid: ") and "without confirm" in text
    assert provider.mutations == []


# --- elicitation, on both protocol revisions ------------------------------------------------------------

MODES = ["auto", "legacy"]  # 2026-07-28 (input_required rounds) and 2025-11-25 (a mid-call request)


@pytest.mark.parametrize("mode", MODES)
async def test_an_accepted_elicitation_executes(make_server: ServerFactory, provider: ProviderState, mode: str) -> None:
    user = Elicitor("accept", {"confirm": True})
    async with connected(make_server(), mode=mode, elicit=user) as client:
        result = await ok(client, "restore_snapshot", snapshot_id=801, confirm=True)
    assert result["status"] == "restore_started"
    [question] = set(user.asked)
    assert '12345 "web-server-01"' in question and "2025-01-15T18:30:00Z" in question
    assert "cannot be undone" in question
    assert [(r.method, r.path) for r in provider.mutations] == [("POST", "/api/v1/snapshots/801/restore/")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("action", "content", "said"),
    [("decline", None, "declined"), ("cancel", None, "cancelled"), ("accept", {"confirm": False}, "declined")],
)
async def test_a_declined_or_cancelled_elicitation_sends_nothing(
    make_server: ServerFactory,
    provider: ProviderState,
    mode: str,
    action: Literal["accept", "decline", "cancel"],
    content: dict[str, Any] | None,
    said: str,
) -> None:
    async with connected(make_server(), mode=mode, elicit=Elicitor(action, content)) as client:
        result = await ok(client, "delete_snapshot", snapshot_id=798, confirm=True)
    assert result["status"] == "cancelled"
    assert said in result["message"] and "Nothing was sent" in result["message"]
    assert provider.mutations == []
    assert 798 in provider.snapshots


@pytest.mark.parametrize("mode", MODES)
async def test_a_preview_never_asks_the_user(make_server: ServerFactory, mode: str) -> None:
    user = Elicitor("accept", {"confirm": True})
    async with connected(make_server(), mode=mode, elicit=user) as client:
        assert (await ok(client, "delete_snapshot", snapshot_id=798))["status"] == "confirmation_required"
    assert user.asked == []


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_that_can_elicit_is_asked_even_with_a_valid_token_and_its_decline_sends_nothing(
    make_server: ServerFactory, provider: ProviderState, mode: str
) -> None:
    user = Elicitor("decline")
    async with connected(make_server(), mode=mode, elicit=user) as client:
        preview = await ok(client, "delete_snapshot", snapshot_id=798)
        assert "the user will be asked" in preview["warning"]
        result = await ok(
            client, "delete_snapshot", snapshot_id=798, confirm=True, confirmation_token=preview["confirmation_token"]
        )
    assert result["status"] == "cancelled" and len(user.asked) == 1
    assert provider.mutations == []


@pytest.mark.parametrize("mode", MODES)
async def test_in_token_mode_a_valid_token_executes_without_asking(
    make_server: ServerFactory, provider: ProviderState, mode: str
) -> None:
    user = Elicitor("decline")
    async with connected(make_server(consent="token"), mode=mode, elicit=user) as client:
        preview = await ok(client, "delete_snapshot", snapshot_id=798)
        result = await ok(
            client, "delete_snapshot", snapshot_id=798, confirm=True, confirmation_token=preview["confirmation_token"]
        )
    assert result["status"] == "deleted" and user.asked == []
    assert [(r.method, r.path) for r in provider.mutations] == [("DELETE", "/api/v1/snapshots/798/")]


# --- access modes -------------------------------------------------------------------------------------


async def tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def test_read_only_offers_only_the_read_tools(make_server: ServerFactory, provider: ProviderState) -> None:
    async with connected(make_server(read_only=True)) as client:
        assert await tool_names(client) == {"list_snapshots", "get_snapshot"}
        assert "read-only" in (client.instructions or "")
        assert (await call(client, "create_snapshot", server_id=12345, name="x")).is_error
        assert (await call(client, "delete_snapshot", snapshot_id=798, confirm=True)).is_error
    assert provider.requests == []


async def test_no_destructive_leaves_out_restore_and_delete(
    make_server: ServerFactory, provider: ProviderState
) -> None:
    async with connected(make_server(no_destructive=True)) as client:
        assert await tool_names(client) == {"list_snapshots", "get_snapshot", "create_snapshot"}
        assert "no-destructive" in (client.instructions or "")
        assert (await call(client, "restore_snapshot", snapshot_id=801)).is_error
    assert provider.requests == []


async def test_allowed_servers_filter_lists_and_refuse_other_servers(
    make_server: ServerFactory, provider: ProviderState
) -> None:
    async with connected(make_server(allowed_servers=frozenset({12345}))) as client:
        assert "only servers 12345" in (client.instructions or "")
        listed = await ok(client, "list_snapshots")
        assert {s["server"]["id"] for s in listed["snapshots"]} == {12345}
        assert listed["count"] == 2

        requests_before = len(provider.requests)
        assert (await error(client, "list_snapshots", server_id=23456)).startswith("forbidden: ")
        assert (await error(client, "create_snapshot", server_id=23456, name="x")).startswith("forbidden: ")
        assert len(provider.requests) == requests_before  # refused before anything was sent

        assert (await error(client, "get_snapshot", snapshot_id=810)).startswith("forbidden: ")
        assert (await error(client, "restore_snapshot", snapshot_id=810)).startswith("forbidden: ")
        assert (await error(client, "delete_snapshot", snapshot_id=810, confirm=True)).startswith("forbidden: ")
        await ok(client, "create_snapshot", server_id=12345, name="allowed")
    assert [r.body for r in provider.mutations] == [{"server_id": 12345, "name": "allowed"}]


async def test_a_shared_confirm_secret_lets_a_second_server_execute_a_token(
    make_server: ServerFactory, provider: ProviderState
) -> None:
    secret = SecretStr("shared-secret-between-replicas")
    async with connected(make_server(confirm_secret=secret)) as first:
        preview = await ok(first, "delete_snapshot", snapshot_id=798)
    async with connected(make_server(confirm_secret=secret)) as second:
        token = preview["confirmation_token"]
        result = await ok(second, "delete_snapshot", snapshot_id=798, confirm=True, confirmation_token=token)
    assert result["status"] == "deleted"
    async with connected(make_server()) as stranger:  # its own random secret
        preview = await ok(stranger, "delete_snapshot", snapshot_id=801)
    async with connected(make_server(confirm_secret=secret)) as second:
        token = preview["confirmation_token"]
        text = await error(second, "delete_snapshot", snapshot_id=801, confirm=True, confirmation_token=token)
    assert text.startswith("confirmation_invalid: ")
    assert [r.method for r in provider.mutations] == ["DELETE"]


async def test_full_mode_is_named_in_the_instructions(client: Client) -> None:
    instructions = client.instructions or ""
    assert "full: list, get, create, restore and delete" in instructions
    assert "WITHOUT confirm" in instructions and "Never confirm on the user's behalf" in instructions
    assert client.server_info is not None and client.server_info.name == "vps-snapshots"
    assert client.server_info.version == __version__


# --- the token is a secret ----------------------------------------------------------------------------


async def test_the_api_token_is_in_no_result_and_no_log_line(
    make_server: ServerFactory, provider: ProviderState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider.inject(Fault.html_page(502))
    provider.inject(Fault.error(400, "bad", method="POST"))
    texts: list[str] = []
    async with connected(make_server(), elicit=Elicitor("accept", {"confirm": True})) as client:
        calls: list[tuple[str, dict[str, Any]]] = [
            ("list_snapshots", {}),
            ("create_snapshot", {"server_id": 12345, "name": "a"}),
            ("create_snapshot", {"server_id": 12345, "name": "b"}),
            ("get_snapshot", {"snapshot_id": 4242}),
            ("get_snapshot", {"snapshot_id": 0}),
            ("restore_snapshot", {"snapshot_id": 801}),
            ("restore_snapshot", {"snapshot_id": 801, "confirm": True}),
            ("delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": "v1.a.b"}),
        ]
        for tool, arguments in calls:
            result = await call(client, tool, **arguments)
            texts.append(text_of(result) + json.dumps(result.structured_content))
    async with connected(make_server(token="another-secret-token-123")) as client:
        texts.append(text_of(await call(client, "list_snapshots")))
    everything = "\n".join(texts + [record.getMessage() for record in caplog.records])
    assert len(caplog.records) > 5
    assert TOKEN not in everything and "another-secret-token-123" not in everything
