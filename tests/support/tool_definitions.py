"""Tool definitions as the code derives them: what `tools.json` must equal, and what it was compacted from."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp_types import Tool

from vps_snapshots_mcp.protocol.schemas import published_form
from vps_snapshots_mcp.protocol.tools import TOOLS, register_tools


def definition(tool: Tool) -> dict[str, Any]:
    """A tool as tools/list JSON, without what the SDK adds on its own (icons, meta, execution)."""
    return tool.model_dump(
        mode="json",
        by_alias=True,
        exclude_none=True,
        include={"name", "title", "description", "input_schema", "output_schema", "annotations"},
    )


async def sdk_derived_tools() -> list[dict[str, Any]]:
    """Every tool in the table, as the SDK derives it from the signature, docstring and result model."""
    server: MCPServer[Any] = MCPServer("derived")
    register_tools(server, TOOLS)
    return [definition(tool) for tool in await server.list_tools()]


async def derived_tools() -> list[dict[str, Any]]:
    """The same, in the form the server publishes (`tools.json`)."""
    return [published_form(tool) for tool in await sdk_derived_tools()]
