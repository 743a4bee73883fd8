"""vps-snapshots-mcp: an MCP server for VPS snapshots that cannot wipe a server by accident."""

__version__ = "0.1.0"

__all__ = ["__version__"]
