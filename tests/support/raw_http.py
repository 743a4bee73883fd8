"""MCP over raw HTTP on 2025-11-25, for tests that drop, resume or replay a stream: a session, and SSE as dicts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2

VERSION = "2025-11-25"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def events(response: httpx2.Response) -> Iterator[dict[str, Any]]:
    """Server-sent events as dicts: id, retry, and the JSON message in data (when there is one)."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                yield event
            event = {}
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            event["data"] = json.loads(value) if value else None
        elif field in ("id", "retry"):
            event[field] = value


def open_session(http: httpx2.Client, url: str) -> dict[str, str]:
    """Initialize a session on `url`; the headers that every later request of the session carries."""
    initialize = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
    }  # fmt: skip
    answer = http.post(f"{url}/mcp", json=initialize, headers=ACCEPT)
    assert answer.status_code == 200, answer.text
    headers = {**ACCEPT, "mcp-session-id": answer.headers["mcp-session-id"], "mcp-protocol-version": VERSION}
    http.post(f"{url}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers
