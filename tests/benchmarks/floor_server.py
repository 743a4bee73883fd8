"""The floor: a bare MCPServer whose one tool does the same provider GET as ours, with the same client settings.

What the SDK itself costs for a tool that reads the provider on this machine; our server is measured against it.

    python floor_server.py                 # stdio
    python floor_server.py typed           # stdio, the answer structured under our published output schema
    python floor_server.py http PORT       # streamable HTTP, stateless
    python floor_server.py http PORT stateful
Reads VPS_API_URL and VPS_API_TOKEN, as ours does.

The plain floor returns the provider's body as one string, so it publishes `{"result": string}` and a client that
checks structured results against the output schema checks one string. `typed` returns the provider's records
as they come, under the output schema ours publishes for `list_snapshots` (read from its `tools.json`): a client
then checks the same contract on both sides, and what is left between the two is the servers' work.
"""

from __future__ import annotations

import json
import os
import sys
from importlib.resources import files
from typing import Any

import httpx2
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool

_http: httpx2.AsyncClient | None = None


def _client() -> httpx2.AsyncClient:
    global _http
    if _http is None:  # made on first use, inside the server's event loop; kept alive like ours
        _http = httpx2.AsyncClient(
            timeout=httpx2.Timeout(30.0, connect=5.0),
            limits=httpx2.Limits(max_connections=100, max_keepalive_connections=100),
            follow_redirects=False,
            headers={
                "Authorization": f"Bearer {os.environ['VPS_API_TOKEN']}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
    return _http


async def _get(server_id: int | None) -> httpx2.Response:
    params = {"server_id": server_id} if server_id is not None else None
    response = await _client().get(f"{os.environ['VPS_API_URL']}/snapshots/", params=params)
    response.raise_for_status()
    return response


async def list_snapshots(server_id: int | None = None) -> str:
    """List snapshots: one GET to the provider, its body as the answer."""
    return (await _get(server_id)).text


async def list_snapshots_typed(server_id: int | None = None) -> dict[str, Any]:
    """List snapshots: one GET to the provider, its records as the structured answer."""
    body = (await _get(server_id)).json()
    return {"count": body["count"], "total": body["count"], "truncated": False, "snapshots": body["results"]}


def _typed_tool() -> Tool:
    """`list_snapshots_typed` as `list_snapshots`, publishing our output schema (the SDK reads it live)."""
    tool = Tool.from_function(list_snapshots_typed, name="list_snapshots")
    published = json.loads((files("vps_snapshots_mcp.protocol") / "tools.json").read_text())
    tool.fn_metadata.output_schema = next(t["outputSchema"] for t in published if t["name"] == "list_snapshots")
    return tool


typed = len(sys.argv) > 1 and sys.argv[1] == "typed"
server = MCPServer("floor", tools=[_typed_tool()]) if typed else MCPServer("floor")
if not typed:
    server.tool()(list_snapshots)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "http":
        import uvicorn

        # Served as ours is: uvicorn at WARNING with no access log (a line per request would slow the floor).
        stateless = not (len(sys.argv) > 3 and sys.argv[3] == "stateful")
        app = server.streamable_http_app(stateless_http=stateless, host="127.0.0.1")
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
    else:
        server.run("stdio")
