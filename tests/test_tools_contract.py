"""The tools' contract: the published `tools.json`, and annotations that tell the truth about behaviour.

Foreign clients and runbooks depend on names, arguments and schemas, so any
change to them must be deliberate. The server publishes `tools.json` as it is;
this module derives it again from the code and fails on any difference:
regenerate it (with every other generated file) by `python -m tests.regenerate`
and review the diff.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from pydantic import SecretStr

from vps_snapshots_mcp.compose import build_server
from vps_snapshots_mcp.protocol.published import TOOLS_JSON
from vps_snapshots_mcp.provider.client import asgi_transport
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import ProviderState, create_app
from vps_snapshots_mcp.timing import Timing

from .regenerate import HINT
from .support.tool_definitions import definition, derived_tools
from .support.world import BASE_URL, TOKEN, SleepRecorder

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(provider: ProviderState, sleeps: SleepRecorder) -> AsyncIterator[Client]:
    server = build_server(
        Settings(api_token=SecretStr(TOKEN), api_url=BASE_URL),
        transport=asgi_transport(create_app(provider, token=TOKEN)),
        timing=Timing(sleep=sleeps),
    )
    async with Client(server) as c:
        yield c


async def test_tools_json_is_what_the_code_derives() -> None:
    derived = json.dumps(await derived_tools(), indent=2, ensure_ascii=False) + "\n"
    assert TOOLS_JSON.read_text(encoding="utf-8") == derived, f"tools/list changed; {HINT}"


async def test_the_server_publishes_tools_json_as_it_is(client: Client) -> None:
    served = [definition(tool) for tool in (await client.list_tools()).tools]
    assert served == json.loads(TOOLS_JSON.read_bytes())


async def test_the_first_call_loads_the_tools(client: Client, provider: ProviderState) -> None:
    result = await client.call_tool("get_snapshot", {"snapshot_id": 801})
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["id"] == 801


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("list_snapshots", {}),
        ("get_snapshot", {"snapshot_id": 801}),
        ("create_snapshot", {"server_id": 12345, "name": "nightly", "description": "before the update"}),
        ("restore_snapshot", {"snapshot_id": 801}),
        ("delete_snapshot", {"snapshot_id": 798}),
    ],
)
async def test_each_result_is_also_its_structured_content_as_compact_json_text(
    client: Client, tool: str, arguments: dict[str, Any]
) -> None:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error and len(result.content) == 1 and result.content[0].type == "text"
    text = result.content[0].text
    assert json.loads(text) == result.structured_content
    assert text == json.dumps(result.structured_content, ensure_ascii=False, separators=(",", ":"))


async def test_the_provider_client_a_call_made_is_closed_with_the_server(provider: ProviderState) -> None:
    closed: list[bool] = []

    class ClosingRecorded(httpx2.ASGITransport):
        async def aclose(self) -> None:
            closed.append(True)
            await super().aclose()

    transport = ClosingRecorded(app=create_app(provider, token=TOKEN))
    server = build_server(Settings(api_token=SecretStr(TOKEN), api_url=BASE_URL), transport=transport)
    async with Client(server) as client:
        assert not (await client.call_tool("get_snapshot", {"snapshot_id": 801})).is_error  # made here
        assert closed == []
    assert closed == [True]


async def test_the_tools_list_answer_is_small(client: Client) -> None:
    listing = (await client.list_tools()).model_dump_json(by_alias=True, exclude_none=True)
    # The size target (7 KiB) is a count of bytes, not a timing, so the suite guards it too.
    assert len(listing.encode()) <= 7168


async def test_every_tool_has_a_title_a_description_schemas_and_all_hints(client: Client) -> None:
    tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == {
        "list_snapshots", "get_snapshot", "create_snapshot", "restore_snapshot", "delete_snapshot",
    }  # fmt: skip
    for tool in tools:
        assert tool.title and tool.description and len(tool.description) > 100
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None and tool.output_schema.get("type") == "object"
        hints = tool.annotations
        assert hints is not None
        for hint in (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint, hints.open_world_hint):
            assert hint is not None, f"{tool.name}: every hint is set explicitly"
        assert hints.open_world_hint is True


async def test_published_schemas_keep_property_names_that_look_like_keywords(client: Client) -> None:
    [create] = [t for t in (await client.list_tools()).tools if t.name == "create_snapshot"]
    assert create.input_schema["properties"]["description"] == {"type": ["string", "null"], "maxLength": 500}
    assert "title" not in json.dumps(create.input_schema)


@pytest.mark.parametrize("tool", ["get_snapshot", "restore_snapshot", "delete_snapshot"])
async def test_ids_are_bounded(client: Client, tool: str) -> None:
    [found] = [t for t in (await client.list_tools()).tools if t.name == tool]
    snapshot_id = found.input_schema["properties"]["snapshot_id"]
    assert snapshot_id["minimum"] == 1 and snapshot_id["maximum"] == 2**53 - 1


def state_of(provider: ProviderState) -> tuple[frozenset[tuple[int, str]], frozenset[tuple[int, str]]]:
    snapshots = frozenset((s.id, s.status) for s in provider.snapshots.values())
    servers = frozenset((s.id, s.status) for s in provider.servers.values())
    return snapshots, servers


async def hints_of(client: Client) -> dict[str, Any]:
    return {t.name: t.annotations for t in (await client.list_tools()).tools}


async def test_read_only_tools_change_nothing(client: Client, provider: ProviderState) -> None:
    hints = await hints_of(client)
    before = state_of(provider)
    for tool, arguments in [("list_snapshots", {}), ("get_snapshot", {"snapshot_id": 801})]:
        assert hints[tool].read_only_hint is True and hints[tool].destructive_hint is False
        assert not (await client.call_tool(tool, arguments)).is_error
    assert provider.mutations == [] and state_of(provider) == before


async def test_create_adds_without_destroying_and_is_not_idempotent(client: Client, provider: ProviderState) -> None:
    hints = (await hints_of(client))["create_snapshot"]
    assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint) == (False, False, False)
    before = {s.id for s in provider.snapshots.values()}
    arguments = {"server_id": 12345, "name": "same"}
    first = await client.call_tool("create_snapshot", arguments)
    repeat = await client.call_tool("create_snapshot", arguments)
    assert repeat.structured_content is not None and repeat.structured_content["already_exists"] is True
    assert len({s.id for s in provider.snapshots.values()} - before) == 1  # a retry makes no duplicate...
    assert first.structured_content is not None
    del provider.snapshots[first.structured_content["snapshot"]["id"]]
    await client.call_tool("create_snapshot", arguments)
    # ...but the same call is not guaranteed to change nothing: once its namesake is gone it makes another.
    assert len({s.id for s in provider.snapshots.values()} - before) == 1
    assert len(provider.requests_to("POST")) == 2


async def confirmed(client: Client, tool: str, snapshot_id: int) -> dict[str, Any]:
    preview = await client.call_tool(tool, {"snapshot_id": snapshot_id})
    assert preview.structured_content is not None
    token = preview.structured_content["confirmation_token"]
    result = await client.call_tool(tool, {"snapshot_id": snapshot_id, "confirm": True, "confirmation_token": token})
    return {"error": result.is_error, **(result.structured_content or {})}


async def test_restore_destroys_current_data_and_is_not_idempotent(client: Client, provider: ProviderState) -> None:
    hints = (await hints_of(client))["restore_snapshot"]
    assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint) == (False, True, False)
    assert (await confirmed(client, "restore_snapshot", 801))["status"] == "restore_started"
    assert provider.servers[12345].status == "restoring"  # the server's current state is overwritten
    assert hasattr(provider.clock, "advance")
    provider.clock.advance(600)
    assert (await confirmed(client, "restore_snapshot", 801))["status"] == "restore_started"
    assert len(provider.mutations) == 2  # each confirmed call overwrites again


async def test_delete_destroys_and_repeating_it_changes_nothing_more(client: Client, provider: ProviderState) -> None:
    hints = (await hints_of(client))["delete_snapshot"]
    assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint) == (False, True, True)
    assert (await confirmed(client, "delete_snapshot", 798))["status"] == "deleted"
    once = state_of(provider)
    again = await client.call_tool("delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": "x"})
    assert again.is_error and state_of(provider) == once
