"""The published schemas accept exactly what the SDK's derived ones accept: compaction drops bytes, not rules.

Each tool's input and output schema is checked both ways with a JSON Schema validator against the same
instances: real results from calls, and variants of them that break one rule each.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from vps_snapshots_mcp.protocol.server import SnapshotsServer

from .support.mcp_client import connected, preview_token
from .support.tool_definitions import definition, sdk_derived_tools
from .support.world import ServerFactory

pytestmark = pytest.mark.anyio

ARGUMENTS: list[dict[str, Any]] = [
    {},
    {"snapshot_id": 801},
    {"snapshot_id": 0},
    {"snapshot_id": 2**53},
    {"snapshot_id": "801"},
    {"snapshot_id": 801, "confirm": True, "confirmation_token": "x" * 1024},
    {"snapshot_id": 801, "confirm": True, "confirmation_token": "x" * 1025},
    {"snapshot_id": 801, "confirm": None},
    {"snapshot_id": 801, "confirm": False, "confirmation_token": None, "safety_snapshot": True},
    {"snapshot_id": 801, "safety_snapshot": "yes"},
    {"server_id": 12345},
    {"server_id": None, "limit": 500},
    {"server_id": 12345, "limit": 501},
    {"server_id": 12345, "name": "pre-update"},
    {"server_id": 12345, "name": "pre update"},
    {"server_id": 12345, "name": "", "wait": True},
    {"server_id": 12345, "name": "n", "wait": True, "wait_timeout_s": 10, "description": None},
    {"server_id": 12345, "name": "n", "wait": 1, "wait_timeout_s": 9},
    {"server_id": 12345, "name": "n", "description": "d" * 501},
]


def variants(result: dict[str, Any]) -> list[Any]:
    """The result itself, and copies that each break one rule (or none, when the key is optional)."""
    out: list[Any] = [result, [], "text", None]
    for key in result:
        out.append({k: v for k, v in result.items() if k != key})
        wrong: Any
        for wrong in (None, "x", 7, True, [], {}):
            changed = copy.deepcopy(result)
            changed[key] = wrong
            out.append(changed)
    return out


@pytest.fixture
def server(make_server: ServerFactory) -> SnapshotsServer:
    return make_server()


async def schemas(server: SnapshotsServer) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """tool name -> (as the SDK derives it, as the server publishes it)."""
    derived = {tool["name"]: tool for tool in await sdk_derived_tools()}
    return {tool.name: (derived[tool.name], definition(tool)) for tool in await server.list_tools()}


async def test_inputs_are_judged_alike(server: SnapshotsServer) -> None:
    for name, (derived, published) in (await schemas(server)).items():
        before, after = Draft202012Validator(derived["inputSchema"]), Draft202012Validator(published["inputSchema"])
        verdicts = [before.is_valid(arguments) for arguments in ARGUMENTS]
        assert True in verdicts and False in verdicts, f"{name}: the samples must test both ways"
        for arguments, verdict in zip(ARGUMENTS, verdicts, strict=True):
            assert after.is_valid(arguments) == verdict, (name, arguments)


async def test_outputs_are_judged_alike(server: SnapshotsServer) -> None:
    async with connected(server) as client:
        calls: list[tuple[str, dict[str, Any]]] = [
            ("list_snapshots", {}),
            ("get_snapshot", {"snapshot_id": 801}),
            ("create_snapshot", {"server_id": 12345, "name": "schema-check"}),
            ("restore_snapshot", {"snapshot_id": 801}),
            ("restore_snapshot", {"snapshot_id": 801, "confirm": True,
                                  "confirmation_token": await preview_token(client, "restore_snapshot", 801)}),
            ("delete_snapshot", {"snapshot_id": 798}),
            ("delete_snapshot", {"snapshot_id": 798, "confirm": True,
                                 "confirmation_token": await preview_token(client, "delete_snapshot", 798)}),
        ]  # fmt: skip
        results = []
        for tool, arguments in calls:
            result = await client.call_tool(tool, arguments)
            assert result.structured_content is not None, (tool, result.content)
            results.append((tool, result.structured_content))
    found = await schemas(server)
    for tool, result in results:
        derived, published = found[tool]
        before, after = Draft202012Validator(derived["outputSchema"]), Draft202012Validator(published["outputSchema"])
        assert before.is_valid(result) and after.is_valid(result), (tool, result)
        for instance in variants(result):
            assert after.is_valid(instance) == before.is_valid(instance), (tool, instance)
