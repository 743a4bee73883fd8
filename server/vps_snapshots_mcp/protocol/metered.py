"""Every MCP request counted: an SDK middleware that times each one by method, tool and outcome (`metrics.py`).

It sits in the server's middleware chain (`MCPServer.middleware`, beside the SDK's own OpenTelemetry span), so it
sees `initialize`, `tools/list` and `tools/call` alike. A tool error's outcome is its stable code: the adapter
(`server.py`) starts every tool error's text with it, and `metrics.bounded` keeps anything else out.
"""

from __future__ import annotations

import time
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, TextContent
from pydantic import ValidationError

from ..metrics import Metrics


class MeteredRequests(ServerMiddleware[Any]):
    """Times every MCP request into `metrics` (the operation histogram, and the requests in flight)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        method = ctx.method
        name = ctx.params.get("name") if ctx.params and method == "tools/call" else None
        tool = name if isinstance(name, str) else ""
        outcome = "other"
        in_flight = self._metrics.requests_in_flight(method)
        in_flight.inc()
        started = time.perf_counter()
        try:
            result = await call_next(ctx)
            outcome = tool_outcome(result) if method == "tools/call" else ""
            return result
        except MCPError as exc:
            outcome = str(exc.error.code)
            raise
        except ValidationError:
            outcome = str(INVALID_PARAMS)
            raise
        finally:
            in_flight.dec()
            self._metrics.operation_done(method, tool, outcome, time.perf_counter() - started)


def tool_outcome(result: object) -> str:
    """ "" for a tool result, its stable code for a tool error (`code: message`), "tool_error" without one."""
    match result:
        case CallToolResult(is_error=True, content=[TextContent(text=text), *_]):
            return text.partition(":")[0]
        case {"isError": True, "content": [{"type": "text", "text": str(text)}, *_]}:
            return text.partition(":")[0]
        case CallToolResult(is_error=True) | {"isError": True}:
            return "tool_error"
    return ""


__all__ = ["MeteredRequests", "tool_outcome"]
