"""Test helpers: the in-process world, MCP and raw-HTTP clients, real processes (servers, redis-server), faults."""
