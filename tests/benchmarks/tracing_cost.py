"""What tracing costs the server alone: `python -m tests.benchmarks.tracing_cost`.

The same `list_snapshots` call sent by a bare JSON-RPC client (no SDK, no tracing on the client's side, so no
traceparent) to the server over stdio, in its own process, against the simulator: off (no variables: the no-op
spans), on with this server's default sampler, and on recording every span (`parentbased_always_on`), the SDK
exporting to a local OTLP/HTTP collector that accepts every batch. Three warm processes per variant, called in
turn, call by call, so that whatever the machine does meanwhile falls on every variant alike (blocks of calls
in fresh processes differed by ±0.5 ms from run to run, more than what is measured).
The differences are what the server pays for tracing a read: the MCP SDK's span per message and ours below it,
sampled, or recorded and exported in the background. Reported, never asserted.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .stdio import OURS, _listed, _rpc, median, p95, provider_env, simulator


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


VARIANTS = ("off", "sampled", "every")
"""off: no OTEL_* variables (the no-op spans); sampled: the SDK on with this server's default sampler (every
change, a share of reads, the client's flag); every: the SDK recording every span (parentbased_always_on)."""


PROCESSES = 3
"""Server processes per variant: a process's own luck (its memory, its core) is averaged over three."""


def measure(calls: int) -> dict[str, float]:
    """Every variant's servers warm side by side, called in turn, call by call: drift falls on all alike."""
    with simulator() as (url, token), collector() as traces, ExitStack() as stack:
        off = provider_env(url, token)
        on = off | {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": traces,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        environments = {"off": off, "sampled": on, "every": on | {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}}
        servers = {name: [stack.enter_context(_listed(OURS, environments[name])) for _ in range(PROCESSES)]
                   for name in VARIANTS}  # fmt: skip
        call = {"name": "list_snapshots", "arguments": {"server_id": 12345}}
        found: dict[str, list[float]] = {name: [] for name in VARIANTS}
        warm_up = max(5, calls // 10)
        for n in range(calls + warm_up):
            for name in VARIANTS:
                process = servers[name][n % PROCESSES]
                started = time.perf_counter()
                answer = _rpc(process, {"jsonrpc": "2.0", "id": n + 3, "method": "tools/call", "params": call})
                if n >= warm_up:
                    found[name].append(time.perf_counter() - started)
                assert b'"isError":false' in answer, answer[:200]
    assert _Collector.batches > 0, "the traced server exported nothing: is the otel extra installed?"
    result = {"batches": float(_Collector.batches)}
    for name, times in found.items():
        result[f"{name}_median_ms"] = median(times) * 1000
        result[f"{name}_p95_ms"] = p95(times) * 1000
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=4000)
    f = measure(parser.parse_args().calls)
    labels = {"off": "tracing off (no-op spans)", "sampled": "tracing on, the default sampler",
              "every": "tracing on, every span recorded"}  # fmt: skip
    for name in VARIANTS:
        over = (f[f"{name}_median_ms"] - f["off_median_ms"]) * 1000
        print(f"one call, {labels[name] + ':':<34} {f[f'{name}_median_ms']:.3f} ms median, "
              f"p95 {f[f'{name}_p95_ms']:.3f}; {over:+.1f} µs")  # fmt: skip
    print(f"batches the collector received: {f['batches']:.0f}")


if __name__ == "__main__":
    main()
