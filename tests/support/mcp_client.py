"""A real MCP client on a server in memory, and the moves tests make with it: previews, rounds, cancellation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.client.session import ElicitationFnT
from mcp_types import CallToolResult, ElicitRequestParams, ElicitResult, InputRequiredResult

from vps_snapshots_mcp.protocol.server import SnapshotsServer


@asynccontextmanager
async def connected(
    server: SnapshotsServer, *, mode: str = "auto", elicit: ElicitationFnT | None = None
) -> AsyncIterator[Client]:
    """A real MCP client on `server`, in memory; `mode` picks the protocol revision ("legacy" = 2025-11-25)."""
    async with Client(server, mode=mode, elicitation_callback=elicit) as client:
        yield client


def text_of(result: CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def preview_token(client: Client, tool: str, snapshot_id: int) -> str:
    """The confirmation token of a restore or delete preview."""
    result = await client.call_tool(tool, {"snapshot_id": snapshot_id})
    assert result.structured_content is not None, text_of(result)
    return str(result.structured_content["confirmation_token"])


async def cancel_once_started(client: Client, started: anyio.Event, tool: str, arguments: dict[str, Any]) -> None:
    """Call `tool`, and cancel the call from the client's side as soon as `started` is set."""
    scope = anyio.CancelScope()

    async def call() -> None:
        with scope:
            await client.call_tool(tool, arguments)

    async with anyio.create_task_group() as group:
        group.start_soon(call)
        await started.wait()
        scope.cancel()


async def says_yes(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    """A client that can ask its user; these tests answer the rounds by hand."""
    return ElicitResult(action="accept", content={"confirm": True})


async def accepted_round(client: Client, tool: str, arguments: dict[str, Any]) -> tuple[Any, str]:
    """Run the first round of an elicited call by hand: the user's "yes", and the sealed state to echo."""
    first = await client.session.call_tool(tool, arguments, allow_input_required=True)
    assert isinstance(first, InputRequiredResult) and first.input_requests and first.request_state
    responses = {key: ElicitResult(action="accept", content={"confirm": True}) for key in first.input_requests}
    return responses, first.request_state
