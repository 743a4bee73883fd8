"""What metrics cost one call: `python -m tests.benchmarks.metrics_cost`.

The same `get_snapshot` call through a real MCP client on a server in memory, with metrics on (the HTTP
transport's composition) and off (stdio's), called in turn, call by call, so both see the same machine (the
median of 3,000 calls each); and each recording on its own, in microseconds. Then one of our spans with no
tracer provider, and with the SDK's provider as the server installs it from OTEL_* variables (its default
sampler; `--every`: every span recorded), batched to an exporter that drops them. What tracing costs a whole
call is measured apart, the server alone in its own processes: `tracing_cost`. The call's one provider read
is on the in-process simulator. Reported, never asserted: docs/performance.md holds the last run.
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial
from typing import Literal

import anyio
from mcp import Client
from pydantic import SecretStr

from vps_snapshots_mcp import tracing
from vps_snapshots_mcp.compose import compose
from vps_snapshots_mcp.metrics import Metrics
from vps_snapshots_mcp.provider.client import asgi_transport
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import create_app, seeded_state

from .stdio import in_turn
from .team_parts import per_call_us

TOKEN = "bench-token-0123456789"
URL = "https://provider.bench/api/v1"
CALLS = 3000


async def calls() -> tuple[float, float]:
    """Median ms per call with metrics on and off, the two servers called in turn, call by call."""
    clients: dict[str, Client] = {}
    transports: tuple[Literal["http", "stdio"], ...] = ("http", "stdio")
    for transport in transports:
        settings = Settings(api_token=SecretStr(TOKEN), api_url=URL, transport=transport, log_level="WARNING")
        composed = compose(settings, transport=asgi_transport(create_app(seeded_state(), token=TOKEN)))
        assert (composed.metrics is not None) == (transport == "http")
        clients[transport] = Client(composed.server, mode="legacy")
    async with clients["http"] as on, clients["stdio"] as off:
        actions = {
            name: partial(client.call_tool, "get_snapshot", {"snapshot_id": 801})
            for name, client in (("http", on), ("stdio", off))
        }
        times = await in_turn(actions, CALLS, CALLS // 10)  # warm: the tools load at the first call
    return statistics.median(times["http"]) * 1000, statistics.median(times["stdio"]) * 1000


def traced(every: bool) -> None:
    """Install the SDK's tracer provider, spans batched to an exporter that drops them (no network); with the
    server's default sampler, or (`every`) the SDK's own default, which records every span."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Dropped(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=None if every else tracing.default_sampler({}))
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    trace.set_tracer_provider(provider)


def one_span() -> None:
    """One of our spans with an attribute, as the request path makes them."""
    with tracing.span("GET /snapshots/{id}/") as span:
        if span.is_recording():
            span.set_attribute("http.response.status_code", 200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--every", action="store_true", help="record every span (the SDK's default sampler)")
    every = parser.parse_args().every
    on, off = anyio.run(calls)
    off_span = per_call_us(one_span)
    traced(every)
    on_span = per_call_us(one_span)
    metrics = Metrics(tools=["get_snapshot"], endpoints=["/snapshots/"])
    operation = per_call_us(lambda: metrics.operation_done("tools/call", "get_snapshot", "", 0.001))
    provider = per_call_us(lambda: metrics.provider_request("GET", "/snapshots/", 200, 0.001, 1234))
    consent = per_call_us(lambda: metrics.consent("restore", "token", "redeemed"))
    scrape = per_call_us(lambda: metrics.exposition(), calls=200)
    sampler = "every span recorded" if every else "the default sampler, a read's trace not sampled"
    print(f"one get_snapshot call, metrics on:  {on:.3f} ms")
    print(f"one get_snapshot call, metrics off: {off:.3f} ms")
    print(f"difference:                         {(on - off) * 1000:+.1f} µs")
    print(f"recording an MCP operation:         {operation:.2f} µs")
    print(f"recording a provider request:       {provider:.2f} µs")
    print(f"counting a consent stage:           {consent:.2f} µs")
    print(f"one scrape (the exposition):        {scrape:.0f} µs")
    print(f"one span, no tracer provider:       {off_span:.2f} µs")
    print(f"one span, the SDK on ({sampler}): {on_span:.2f} µs")


if __name__ == "__main__":
    main()
