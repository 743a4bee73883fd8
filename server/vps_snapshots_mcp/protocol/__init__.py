"""The MCP side: the adapter, the tools and prompts, the SDK seam and the HTTP transport."""
