"""The one access policy: what each mode offers, which servers may be touched, what is audited, in words."""

from __future__ import annotations

import json

import pytest

from vps_snapshots_mcp.access import EVERYONE, AccessPolicy, reach_of
from vps_snapshots_mcp.errors import ForbiddenError
from vps_snapshots_mcp.protocol.published import TOOLS_JSON, published_tools

ALL = ["list_snapshots", "get_snapshot", "create_snapshot", "restore_snapshot", "delete_snapshot"]


@pytest.mark.parametrize(
    ("policy", "offered"),
    [
        (AccessPolicy(), ALL),
        (AccessPolicy(no_destructive=True), ALL[:3]),
        (AccessPolicy(read_only=True), ALL[:2]),
        (AccessPolicy(read_only=True, no_destructive=True), ALL[:2]),
    ],
)
def test_each_mode_offers_the_tools_its_annotations_allow(policy: AccessPolicy, offered: list[str]) -> None:
    assert [tool["name"] for tool in published_tools(policy, EVERYONE)] == offered


def test_the_reach_of_each_published_tool() -> None:
    reaches = {tool["name"]: reach_of(tool["annotations"]) for tool in json.loads(TOOLS_JSON.read_bytes())}
    assert reaches == {
        "list_snapshots": "read",
        "get_snapshot": "read",
        "create_snapshot": "write",
        "restore_snapshot": "destructive",
        "delete_snapshot": "destructive",
    }


def test_the_changing_calls_are_audited_and_the_reads_are_not() -> None:
    assert [tool for tool in ALL if AccessPolicy().audits(tool, EVERYONE)] == ALL[2:]


def test_the_server_fence_refuses_lists_and_names() -> None:
    policy = AccessPolicy(allowed_servers=frozenset({12345, 777}))
    assert policy.may_touch(777, EVERYONE) and not policy.may_touch(1, EVERYONE)
    assert not policy.may_touch(None, EVERYONE)
    assert policy.visible([(1, "a"), (777, "b"), (12345, "c")], lambda s: s[0], EVERYONE) == [(777, "b"), (12345, "c")]
    policy.check_server(12345, EVERYONE, what="this list")
    with pytest.raises(ForbiddenError) as refused:
        policy.check_server(1, EVERYONE, what="this snapshot")
    assert str(refused.value) == (
        "forbidden: this snapshot touches server 1, but this MCP server may only touch servers 777, 12345. "
        "Nothing was changed. Ask the operator if that server should be allowed."
    )
    assert AccessPolicy().may_touch(None, EVERYONE)


def test_the_summary_says_the_mode_the_fence_and_the_sandbox() -> None:
    assert AccessPolicy().summary(EVERYONE) == "full: list, get, create, restore and delete are available"
    assert AccessPolicy(read_only=True, allowed_servers=frozenset({2, 1}), sandbox=True).summary(EVERYONE) == (
        "read-only: only list_snapshots and get_snapshot are available; only servers 1, 2 may be touched; "
        "SANDBOX: a built-in simulator, no real server is affected"
    )
    assert AccessPolicy(no_destructive=True).summary(EVERYONE).startswith("no-destructive: restore_snapshot")
