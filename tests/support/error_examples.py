"""One real error per code that a session against the simulator can provoke: the examples the docs quote."""

from __future__ import annotations

from mcp import Client

from vps_snapshots_mcp.simulator import Fault, ManualClock, ProviderState, seeded_state

from .mcp_client import connected, text_of
from .world import NOW, ServerFactory, SimTime, server_factory


async def error(client: Client, tool: str, arguments: dict[str, object]) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, (tool, arguments)
    return text_of(result)


async def examples(make_server: ServerFactory, provider: ProviderState) -> list[str]:
    """One real error per code that a session against the simulator can provoke."""
    found: list[str] = []
    async with connected(make_server(allowed_servers=frozenset({12345, 34567, 23456}))) as client:
        found.append(await error(client, "get_snapshot", {"snapshot_id": 4242}))
        found.append(await error(client, "get_snapshot", {"snapshot_id": "798"}))
        found.append(await error(client, "delete_snapshot", {"snapshot_id": 798, "confirmation-token": "x"}))
        found.append(await error(client, "drop_all_snapshots", {}))
        found.append(await error(client, "create_snapshot", {"server_id": 99999, "name": "x"}))
        found.append(
            await error(
                client, "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": "v1.a.b"}
            )
        )
        found.append(await error(client, "create_snapshot", {"server_id": 34567, "name": "sixth"}))
        found.append(await error(client, "restore_snapshot", {"snapshot_id": 811}))
        provider.inject(Fault.error(400, "Ensure this field has no more than 64 characters.", method="POST"))
        found.append(await error(client, "create_snapshot", {"server_id": 12345, "name": "x"}))
        provider.inject(Fault.rate_limit("120"))  # longer than the server waits: not retried
        found.append(await error(client, "list_snapshots", {}))
        provider.inject(Fault.html_page(502, times=3))
        found.append(await error(client, "list_snapshots", {}))
        provider.fail_next_snapshots = 1
        found.append(await error(client, "create_snapshot", {"server_id": 12345, "name": "doomed", "wait": True}))
    async with connected(make_server(token="a-revoked-token-123")) as client:
        found.append(await error(client, "list_snapshots", {}))
    return found


async def fresh_examples() -> list[str]:
    """The examples from a freshly seeded simulator, as the `provider` and `make_server` fixtures build it."""
    clock = ManualClock(NOW)
    provider = seeded_state(clock=clock, snapshot_seconds=240, restore_seconds=600)
    return await examples(server_factory(provider, SimTime(clock)), provider)


def rendered(found: list[str]) -> str:
    return "```text\n" + "\n".join(found) + "\n```\n"
