"""The floor: a bare MCPServer whose one tool does the same provider GET as ours, with the same client settings.

What the SDK itself costs for a tool that reads the provider on this machine; our server is measured against it.

    python floor_server.py                 # stdio
    python floor_server.py http PORT       # streamable HTTP, stateless
    python floor_server.py http PORT stateful
Reads VPS_API_URL and VPS_API_TOKEN, as ours does.
"""

from __future__ import annotations

import os
import sys

import httpx2
from mcp.server.mcpserver import MCPServer

server = MCPServer("floor")
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


@server.tool()
async def list_snapshots(server_id: int | None = None) -> str:
    """List snapshots: one GET to the provider, its body as the answer."""
    params = {"server_id": server_id} if server_id is not None else None
    response = await _client().get(f"{os.environ['VPS_API_URL']}/snapshots/", params=params)
    response.raise_for_status()
    return response.text


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "http":
        import uvicorn

        # Served as ours is: uvicorn at WARNING with no access log (a line per request would slow the floor).
        stateless = not (len(sys.argv) > 3 and sys.argv[3] == "stateful")
        app = server.streamable_http_app(stateless_http=stateless, host="127.0.0.1")
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
    else:
        server.run("stdio")
