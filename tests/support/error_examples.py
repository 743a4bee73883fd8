"""One real error per code that a session against the simulator can provoke: the examples the docs quote."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from mcp import Client

from vps_snapshots_mcp.simulator import Fault, ManualClock, ProviderState, create_app, seeded_state
from vps_snapshots_mcp.simulator.serve import serving_in_thread

from .mcp_client import connected, preview_token, text_of
from .world import NOW, TOKEN, ServerFactory, SimTime, server_factory

REFUSING_PORT = 9  # the discard service's port: no machine here runs it


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
    with serving_in_thread(create_app(provider, token=TOKEN)) as served:  # a timeout needs a real socket
        provider.inject(Fault.latency(1.0))
        async with connected(make_server(api_url=f"{served}/api/v1", timeout_s=0.3)) as client:
            found.append(await error(client, "list_snapshots", {}))
    with refusing_port() as port:
        async with connected(make_server(api_url=f"http://127.0.0.1:{port}/api/v1")) as client:
            found.append(await error(client, "list_snapshots", {}))
        async with connected(make_server(state_url=f"redis://127.0.0.1:{port}/0")) as client:
            token = await preview_token(client, "delete_snapshot", 798)
            confirmed = {"snapshot_id": 798, "confirm": True, "confirmation_token": token}
            found.append(await error(client, "delete_snapshot", confirmed))
    return found


@contextmanager
def refusing_port() -> Iterator[int]:
    """Port 9 on loopback, where nothing answers: held bound and not listening when this process may (so a
    connection is refused for certain), and the same number every run, so the examples read the same."""
    with socket.socket() as holder:
        with suppress(OSError):  # not allowed to bind a low port: nothing listens there anyway
            holder.bind(("127.0.0.1", REFUSING_PORT))
        yield REFUSING_PORT


async def fresh_examples() -> list[str]:
    """The examples from a freshly seeded simulator, as the `provider` and `make_server` fixtures build it."""
    clock = ManualClock(NOW)
    provider = seeded_state(clock=clock, snapshot_seconds=240, restore_seconds=600)
    return await examples(server_factory(provider, SimTime(clock)), provider)


def rendered(found: list[str]) -> str:
    return "```text\n" + "\n".join(found) + "\n```\n"
