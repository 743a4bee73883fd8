"""The benchmark suite: every figure a ratio or difference against a baseline measured in the same run.

    .venv/bin/python -m tests.benchmarks                 # the full run (a few minutes)
    .venv/bin/python -m tests.benchmarks --quick         # a smoke run: few repetitions

It prints a table and writes JSON (default tests/benchmarks/last-run.json).

    a. cold start: spawn -> initialize -> first tools/list answered, ours (--sandbox) vs a bare MCPServer
    b. per call over stdio: list_snapshots against the simulator on a loopback socket, vs the
       hello-world's trivial tool plus a direct httpx2 GET to the same URL (the floor)
    c. concurrency: 100 concurrent list_snapshots in one session, simulator latency 200 ms, vs one call
    d. memory: RSS after start-up vs the hello-world
    e. size: bytes of the tools/list answer and of a 5-snapshot list result

The simulator runs as its own process (`vps-snapshots-mcp sandbox`), so it shares no
interpreter lock with the client doing the timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

HERE = Path(__file__).parent
HELLO = [sys.executable, str(HERE / "hello_server.py")]
OURS = [sys.executable, "-m", "vps_snapshots_mcp"]
TARGETS = {
    "cold_start_ratio": 1.10,
    "per_call_overhead_ms": 0.5,
    "concurrency_ratio": 2.0,
    "memory_extra_mb": 10.0,
    "tools_list_bytes": 8192,
}


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@dataclass
class Sample:
    seconds: float
    rss_kb: int
    tools_list_bytes: int
    list5_bytes: int | None


def _rpc(process: subprocess.Popen[bytes], message: dict[str, Any], *, answer: bool = True) -> bytes:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(message).encode() + b"\n")
    process.stdin.flush()
    return process.stdout.readline() if answer else b""


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cold_start_once(command: list[str], *, list5: bool) -> Sample:
    """Spawn, initialize, list tools (timed); then read RSS and, for ours, a 5-snapshot list's size."""
    env = {"PATH": os.environ.get("PATH", "")}  # both at their default log level; stderr is discarded
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    try:
        init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}
        _rpc(process, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
        _rpc(process, {"jsonrpc": "2.0", "method": "notifications/initialized"}, answer=False)
        listing = _rpc(process, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        seconds = time.perf_counter() - started
        rss = _rss_kb(process.pid)
        list5_bytes = None
        if list5:
            call = {"name": "list_snapshots", "arguments": {"server_id": 34567}}
            list5_bytes = len(
                _rpc(process, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call}).rstrip()
            )
        return Sample(seconds, rss, len(listing.rstrip()), list5_bytes)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


@contextmanager
def simulator(latency_ms: float = 0.0) -> Iterator[tuple[str, str]]:
    """The provider simulator as a separate process on a loopback port; yields (API URL, token)."""
    process = subprocess.Popen(
        [*OURS, "sandbox", "--port", "0", "--token", "bench-token-0123456789", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()
        url = process.stdout.readline().strip().removeprefix("export VPS_API_URL=")
        token = process.stdout.readline().strip().removeprefix("export VPS_API_TOKEN=")
        yield url, token
    finally:
        process.terminate()
        process.wait(timeout=10)


DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the run


def over_stdio(command: list[str], env: dict[str, str] | None = None) -> Client:
    """The SDK's client over stdio (2025-11-25, as most hosts speak today), the server's stderr discarded."""
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    return Client(stdio_client(params, errlog=DEVNULL), mode="legacy")


def ours_over_stdio(url: str, token: str) -> Client:
    return over_stdio(OURS, {"VPS_API_URL": url, "VPS_API_TOKEN": token})


async def timed(action: Callable[[], Awaitable[object]], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await action()
        times.append(time.perf_counter() - started)
    return times


async def per_call(url: str, token: str, calls: int) -> dict[str, float]:
    warmup = max(5, calls // 10)
    async with ours_over_stdio(url, token) as ours:

        async def our_call() -> None:
            result = await ours.call_tool("list_snapshots", {"server_id": 12345})
            assert not result.is_error

        await timed(our_call, warmup)
        ours_times = await timed(our_call, calls)

    hello = over_stdio(HELLO)
    async with hello, httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:

        async def floor_call() -> None:
            await hello.call_tool("ping", {})
            response = await http.get(f"{url}/snapshots/", params={"server_id": 12345})
            assert response.status_code == 200

        await timed(floor_call, warmup)
        floor_times = await timed(floor_call, calls)
    return {
        "ours_median_ms": median(ours_times) * 1000,
        "ours_p95_ms": p95(ours_times) * 1000,
        "floor_median_ms": median(floor_times) * 1000,
        "floor_p95_ms": p95(floor_times) * 1000,
    }


async def concurrency(url: str, token: str, rounds: int) -> dict[str, float]:
    async with ours_over_stdio(url, token) as ours:

        async def one() -> None:
            result = await ours.call_tool("list_snapshots", {"server_id": 12345})
            assert not result.is_error

        async def hundred() -> None:
            async with anyio.create_task_group() as group:
                for _ in range(100):
                    group.start_soon(one)

        await one()
        single = await timed(one, rounds)
        burst = await timed(hundred, rounds)
    return {
        "one_call_median_ms": median(single) * 1000,
        "hundred_median_ms": median(burst) * 1000,
        "hundred_p95_ms": p95(burst) * 1000,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions: proves the suite works")
    parser.add_argument("--json", type=Path, default=HERE / "last-run.json", help="where to write the results")
    args = parser.parse_args(argv)
    starts, calls, rounds = (3, 20, 2) if args.quick else (25, 400, 7)

    ours_samples: list[Sample] = []
    hello_samples: list[Sample] = []
    for _ in range(starts):  # interleaved, so drift on a shared machine hits both alike
        hello_samples.append(cold_start_once(HELLO, list5=False))
        ours_samples.append(cold_start_once([*OURS, "--sandbox"], list5=True))

    with simulator() as (url, token):
        call = anyio.run(per_call, url, token, calls)
    with simulator(latency_ms=200) as (url, token):
        burst = anyio.run(concurrency, url, token, rounds)

    ours_start = [s.seconds * 1000 for s in ours_samples]
    hello_start = [s.seconds * 1000 for s in hello_samples]
    ours_rss = median([s.rss_kb for s in ours_samples]) / 1024
    hello_rss = median([s.rss_kb for s in hello_samples]) / 1024
    tools_list = ours_samples[0].tools_list_bytes
    list5 = ours_samples[0].list5_bytes or 0
    measured = {
        "cold_start_ratio": median(ours_start) / median(hello_start),
        "per_call_overhead_ms": call["ours_median_ms"] - call["floor_median_ms"],
        "concurrency_ratio": burst["hundred_median_ms"] / burst["one_call_median_ms"],
        "memory_extra_mb": ours_rss - hello_rss,
        "tools_list_bytes": tools_list,
    }
    rows = [
        ("a. cold start (ms)", f"{median(ours_start):.0f} / p95 {p95(ours_start):.0f}",
         f"{median(hello_start):.0f} / p95 {p95(hello_start):.0f}", f"{measured['cold_start_ratio']:.3f}x",
         "<= 1.10x", measured["cold_start_ratio"] <= TARGETS["cold_start_ratio"]),
        ("b. per call over stdio (ms)", f"{call['ours_median_ms']:.2f} / p95 {call['ours_p95_ms']:.2f}",
         f"{call['floor_median_ms']:.2f} / p95 {call['floor_p95_ms']:.2f}",
         f"{measured['per_call_overhead_ms']:+.2f} ms", "<= floor + 0.5 ms",
         measured["per_call_overhead_ms"] <= TARGETS["per_call_overhead_ms"]),
        ("c. 100 concurrent calls (ms)", f"{burst['hundred_median_ms']:.0f} / p95 {burst['hundred_p95_ms']:.0f}",
         f"{burst['one_call_median_ms']:.0f} (one call)", f"{measured['concurrency_ratio']:.2f}x", "<= 2x",
         measured["concurrency_ratio"] <= TARGETS["concurrency_ratio"]),
        ("d. RSS after start-up (MB)", f"{ours_rss:.1f}", f"{hello_rss:.1f}", f"{measured['memory_extra_mb']:+.1f} MB",
         "<= +10 MB", measured["memory_extra_mb"] <= TARGETS["memory_extra_mb"]),
        ("e. tools/list answer (bytes)", f"{tools_list}", "", "", "<= 8192", tools_list <= TARGETS["tools_list_bytes"]),
        ("e. 5-snapshot list result (bytes)", f"{list5}", "", "", "", True),
    ]  # fmt: skip
    header = ("measure", "ours (median)", "baseline (median)", "ours vs baseline", "target", "met")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, [*widths, 3], strict=True)))
    print("-|-".join("-" * w for w in [*widths, 3]))
    for row in rows:
        cells = [str(c).ljust(w) for c, w in zip(row[:5], widths, strict=True)]
        print(" | ".join([*cells, "yes" if row[5] else "NO"]))

    report = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "repetitions": {"cold_starts": starts, "calls": calls, "concurrency_rounds": rounds},
        "measured": measured,
        "targets": TARGETS,
        "met": {row[0]: row[5] for row in rows},
        "details": {
            "cold_start_ms": {"ours": ours_start, "hello": hello_start},
            "per_call": call,
            "concurrency": burst,
            "rss_mb": {"ours": ours_rss, "hello": hello_rss},
            "sizes": {"tools_list_bytes": tools_list, "list_5_snapshots_bytes": list5},
        },
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.json}")
    return 0
