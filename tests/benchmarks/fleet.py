"""The processes a scale benchmark runs: the provider, Redis, replicas (capped or not), and light load clients.

Each is its own process, started and stopped here; a replica can be put into a CPU-capped cgroup.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from .cgroups import CpuCaps
from .http_load import _cpu_ticks, _process_cpu_s, http_process, run_delay_s
from .stdio import OURS, provider_env

PROVIDER_TOKEN = "bench-provider-token-0123456789"
AUTH_TOKEN = "bench-client-token-0123456789abcdef"
SECRET = "bench-confirm-secret-0123456789"


@contextmanager
def provider(
    servers: int, snapshots_each: int, snapshot_seconds: float = 2.0, *, replenish: bool = False
) -> Iterator[str]:
    """The simulator (`provider_process`) as its own uncapped process (`replenish`: a load server's deleted
    snapshot replaced by a new one); yields its API URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks.provider_process", PROVIDER_TOKEN, str(servers),
         str(snapshots_each), str(snapshot_seconds), *(["replenish"] if replenish else [])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=Path(__file__).parent.parent.parent,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://"), "the provider simulator did not start"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def provider_changes(api_url: str) -> dict[str, Any]:
    """The provider's request log: every change (method, path) and the count of GETs."""
    answer = httpx2.get(api_url.removesuffix("/api/v1") + "/_bench/log", timeout=30)
    result: dict[str, Any] = answer.json()
    return result


def exactly_once(confirmed: list[tuple[str, int]], changes: list[list[str]]) -> dict[str, int]:
    """Confirmed consents against the provider's changes: each must have reached it once, nothing else."""
    expected: dict[tuple[str, str], int] = {}
    for action, snapshot_id in confirmed:
        path = f"/api/v1/snapshots/{snapshot_id}/" + ("restore/" if action == "restore" else "")
        key = ("POST" if action == "restore" else "DELETE", path)
        expected[key] = expected.get(key, 0) + 1
    seen: dict[tuple[str, str], int] = {}
    for method, path in changes:
        if method == "POST" and path == "/api/v1/snapshots/":
            continue  # a create: not a consent
        seen[(method, path)] = seen.get((method, path), 0) + 1
    missing = sum(max(0, n - seen.get(k, 0)) for k, n in expected.items())
    extra = sum(max(0, n - expected.get(k, 0)) for k, n in seen.items())
    return {"confirmed": len(confirmed), "provider_changes": sum(seen.values()), "missing": missing, "extra": extra}


@dataclass
class Replica:
    url: str
    pid: int
    group: Path | None


def replica_command(api_url: str, state_url: str | None, *extra: str) -> tuple[list[str], dict[str, str]]:
    env = provider_env(api_url, PROVIDER_TOKEN) | {"VPS_MCP_LOG_LEVEL": "WARNING"}
    if state_url:
        env |= {"VPS_MCP_STATE_URL": state_url, "VPS_MCP_CONFIRM_SECRET": SECRET}
    return [*OURS, "--transport", "http", "--port", "{port}", *extra], env


@contextmanager
def replicas(
    stack: ExitStack,
    count: int,
    command: tuple[list[str], dict[str, str]],
    caps: CpuCaps | None,
    cpus: float,
    first: int = 0,
    ports: list[int] | None = None,
) -> Iterator[list[Replica]]:
    """`count` replicas (on `ports`, or free ones), each in its own cgroup capped at `cpus` when `caps` is given;
    removed on the way out."""
    made = []
    for index in range(count):
        url, pid = stack.enter_context(http_process(*command, port=ports[index] if ports else None))
        group = None
        if caps is not None:
            group = stack.enter_context(caps.capped(f"replica{first + index}", cpus))
            CpuCaps.move(group, pid)
        made.append(Replica(url, pid, group))
    yield made


def drive(spec: dict[str, Any], processes: int = 1, *, keep_latencies: bool = False) -> dict[str, Any]:
    """The light clients of `spec` split over `processes` load processes; their results merged (with every
    call's latency, sorted, when `keep_latencies`: to pool runs)."""
    clients = int(spec["clients"])
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    running, first = [], 0
    for share in shares:
        part = spec | {"clients": share, "first_client": spec.get("first_client", 0) + first}
        first += share
        with tempfile.TemporaryFile() as given:  # the spec on stdin: a secret in it stays out of the process list
            given.write(json.dumps(part).encode())
            given.seek(0)
            running.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.benchmarks.light_load"],
                    stdin=given,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=Path(__file__).parent.parent.parent,
                )
            )
    # One deadline for them all (they run at once), not one each in turn.
    deadline = time.monotonic() + float(spec["seconds"]) + float(spec.get("warmup_s", 0)) + 300
    try:
        results = [json.loads(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]) for p in running]
    finally:  # a load process outlives neither a failure here nor a run stopped meanwhile
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
    latencies = sorted(x for r in results for x in r["latencies_s"])
    seconds = max(r["seconds"] for r in results)
    waits = [r["client_run_delay_s"] / r["elapsed_s"] for r in results if r.get("elapsed_s")]
    return {
        "calls": sum(r["calls"] for r in results),
        "all_calls": sum(r["all_calls"] for r in results),
        "calls_per_s": sum(r["calls"] for r in results) / seconds if seconds > 0 else 0.0,
        **latency_figures(latencies),
        "errors": sum(r["errors"] for r in results),
        "error_samples": [s for r in results for s in r["error_samples"]][:5],
        "confirmed": [tuple(c) for r in results for c in r["confirmed"]],
        "resumed": sum(r["resumed"] for r in results),
        "created": sum(r["created"] for r in results),
        "approved": sum(r["approved"] for r in results),
        "client_cpu_cores": sum(r["client_cpu_s"] for r in results) / seconds if seconds > 0 else 0.0,
        # The share of its time a load process was runnable but waiting for a core (uncapped: no quota), mean.
        "client_core_wait": sum(waits) / len(waits) if waits else 0.0,
        "seconds": seconds,
        "windows": [r["window"] for r in results],  # what each load process watched over its measured window
    } | ({"latencies_s": latencies} if keep_latencies else {})


def latency_figures(ordered: list[float]) -> dict[str, Any]:
    """What a run reports of its calls' latencies (sorted, in seconds): p50, p99 and the p99's 95% interval."""
    return {
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "p99_interval_ms": [x * 1000 for x in quantile_interval(ordered, 0.99)],
    }


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def quantile_interval(ordered: list[float], fraction: float, z: float = 1.96) -> tuple[float, float]:
    """A distribution-free 95% interval for the `fraction` quantile: the order statistics whose ranks bound it
    (the binomial count of values below the quantile, normal approximation). It takes the calls as independent;
    calls of one load are not quite, so the interval is if anything too narrow. Below about 400 values the
    upper rank is the largest value and the interval covers less than 95% (only `--quick` runs are that short)."""
    if not ordered:
        return (math.nan, math.nan)
    n = len(ordered)
    spread = z * math.sqrt(n * fraction * (1 - fraction))
    low = max(0, math.floor(n * fraction - spread) - 1)
    high = min(n - 1, math.ceil(n * fraction + spread) - 1)
    return (ordered[low], ordered[high])


class CpuWatch:
    """CPU each pid used, the seconds its threads were runnable but not running, and the machine's busy cores,
    between start and stop."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.started = time.perf_counter()
        self.cpu = [_process_cpu_s(pid) for pid in pids]
        self.delay = [run_delay_s(pid) for pid in pids]
        self.machine = _cpu_ticks()

    def stop(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        used = [(_process_cpu_s(pid) - before) / elapsed for pid, before in zip(self.pids, self.cpu, strict=True)]
        delayed = [run_delay_s(pid) - before for pid, before in zip(self.pids, self.delay, strict=True)]
        busy, total = (a - b for a, b in zip(_cpu_ticks(), self.machine, strict=True))
        return {"replica_cpu_cores": used, "machine_busy_cores": busy / total * (os.cpu_count() or 1) if total else 0,
                "replica_run_delay_s": delayed, "watched_s": elapsed}  # fmt: skip


class RedisCommands:
    """Commands the Redis servers at `urls` processed between start and `stop`, less what reading the count
    itself costs them (INFO, and the reading client's connection set-up), measured at start by reading twice."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        first = self._read()
        self.before = self._read()
        self.reading = self.before - first

    def _read(self) -> int:
        return sum(redis_figures(url)["commands"] for url in self.urls)

    def stop(self) -> int:
        return self._read() - self.before - self.reading


def redis_figures(url: str) -> dict[str, int]:
    """Commands Redis has processed so far, and the memory it uses (bytes)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats, memory = client.info("stats"), client.info("memory")
    finally:
        client.close()
    return {"commands": int(stats["total_commands_processed"]), "used_memory": int(memory["used_memory"])}
