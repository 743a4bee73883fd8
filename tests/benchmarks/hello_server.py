"""The baseline: a bare MCPServer with one trivial tool, started the same way as ours."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("hello")


@server.tool()
def ping() -> str:
    """Answer pong."""
    return "pong"


if __name__ == "__main__":
    server.run("stdio")
