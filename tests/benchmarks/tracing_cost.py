"""What tracing costs the server alone: `python -m tests.benchmarks.tracing_cost`.

The same `list_snapshots` call sent by a bare JSON-RPC client (no SDK, no tracing on the client's side) to the
server over stdio, in its own process, against the simulator: with the OpenTelemetry SDK on (the otel extra,
`OTEL_*` variables naming a local OTLP/HTTP collector that accepts every batch) and off (no variables: the no-op
spans), alternating in blocks against drift. The difference is what the server pays for tracing a call: the MCP
SDK's span per message and ours below it, recorded and exported in the background. Reported, never asserted.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .stdio import OURS, _raw_calls, median, p95, provider_env, simulator


class _Collector(BaseHTTPRequestHandler):
    """Accepts every OTLP/HTTP batch and counts them."""

    batches = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).batches += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def collector() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()


def measure(calls: int) -> dict[str, float]:
    with simulator() as (url, token), collector() as traces:
        off = provider_env(url, token)
        on = off | {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": traces,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        traced: list[float] = []
        plain: list[float] = []
        block = max(10, calls // 4)
        while len(traced) < calls:
            traced += _raw_calls(OURS, on, block)
            plain += _raw_calls(OURS, off, block)
    assert _Collector.batches > 0, "the traced server exported nothing: is the otel extra installed?"
    return {
        "on_median_ms": median(traced) * 1000,
        "on_p95_ms": p95(traced) * 1000,
        "off_median_ms": median(plain) * 1000,
        "off_p95_ms": p95(plain) * 1000,
        "batches": float(_Collector.batches),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    f = measure(parser.parse_args().calls)
    print(f"one call, tracing on (SDK, exported): {f['on_median_ms']:.3f} ms median, p95 {f['on_p95_ms']:.3f}")
    print(f"one call, tracing off (no-op spans):  {f['off_median_ms']:.3f} ms median, p95 {f['off_p95_ms']:.3f}")
    print(f"difference (median):                  {(f['on_median_ms'] - f['off_median_ms']) * 1000:+.1f} µs")
    print(f"batches the collector received:       {f['batches']:.0f}")


if __name__ == "__main__":
    main()
