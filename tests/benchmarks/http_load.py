"""Load over streamable HTTP, for teams: ours against a bare MCPServer HTTP app with the same GET tool.

- stateless: 50 concurrent clients, each making 40 list_snapshots calls; throughput, p50/p99, errors;
- two replicas of ours sharing one Redis, the clients spread round-robin, against one replica;
- stateful: the memory each open session costs, with 1,000 sessions open.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client

from ..support.redis_server import free_port, running_redis
from .stdio import FLOOR, OURS, median, provider_env, rss_kb

SECRET = "bench-confirm-secret-0123456789"


@contextmanager
def http_process(command: list[str], env: dict[str, str], port: int | None = None) -> Iterator[tuple[str, int]]:
    """The command serving HTTP on `port` (a free one if None; put where `{port}` is); yields (MCP URL, pid) once
    it listens."""
    port = port or free_port()
    full = [part.replace("{port}", str(port)) for part in command]
    process = subprocess.Popen(full, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:  # poll until it listens, with a deadline: a process start has no event to wait on
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, f"{full} did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp", process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


def ours_http(url: str, token: str, *extra: str, state_url: str | None = None) -> tuple[list[str], dict[str, str]]:
    env = provider_env(url, token) | {"VPS_MCP_LOG_LEVEL": "WARNING"}
    if state_url:
        env |= {"VPS_MCP_STATE_URL": state_url, "VPS_MCP_CONFIRM_SECRET": SECRET}
    return [*OURS, "--transport", "http", "--port", "{port}", *extra], env


def floor_http(url: str, token: str, *extra: str) -> tuple[list[str], dict[str, str]]:
    return [*FLOOR, "http", "{port}", *extra], provider_env(url, token)


CALL = json.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
     "params": {"name": "list_snapshots", "arguments": {"server_id": 12345}}}
).encode()  # fmt: skip
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}


async def load(
    urls: list[str], clients: int, calls: int, server_pids: tuple[int, ...] = (), *, light: bool = False
) -> dict[str, float]:
    """`clients` MCP clients (2025-11-25) at once, each making `calls` calls; client i talks to urls[i % len].

    `light`: each client is a bare JSON-RPC POST per call on one shared connection pool (what a stateless
    server needs, nothing more), so the load costs the machine less CPU than the SDK's client.
    Besides times: how many cores the whole machine, the load client and the servers (`server_pids`) kept busy.
    """
    latencies: list[float] = []
    errors = 0
    pool = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=clients, max_keepalive_connections=clients))

    async def one_client(index: int) -> None:
        nonlocal errors
        async with Client(urls[index % len(urls)], mode="legacy") as session:
            for _ in range(calls):
                started = time.perf_counter()
                result = await session.call_tool("list_snapshots", {"server_id": 12345})
                latencies.append(time.perf_counter() - started)
                errors += result.is_error

    async def one_light_client(index: int) -> None:
        nonlocal errors
        for _ in range(calls):
            started = time.perf_counter()
            answer = await pool.post(urls[index % len(urls)], content=CALL, headers=HEADERS, timeout=60)
            latencies.append(time.perf_counter() - started)
            data = answer.text.partition("data: ")[2] if answer.status_code == 200 else ""
            errors += not data or json.loads(data).get("result", {}).get("isError", True)

    started, cpu_started, machine_started = time.perf_counter(), time.process_time(), _cpu_ticks()
    servers_started = sum(_process_cpu_s(pid) for pid in server_pids)
    async with pool, anyio.create_task_group() as group:
        for index in range(clients):
            group.start_soon(one_light_client if light else one_client, index)
    elapsed = time.perf_counter() - started
    # The load client is Python too: the share of a core it burns says how much machine the servers had left.
    client_cpu = (time.process_time() - cpu_started) / elapsed
    busy, total = (after - before for after, before in zip(_cpu_ticks(), machine_started, strict=True))
    servers_cpu = (sum(_process_cpu_s(pid) for pid in server_pids) - servers_started) / elapsed
    ordered = sorted(latencies)
    return {
        "calls_per_s": len(latencies) / elapsed,
        "p50_ms": median(latencies) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000,
        "errors": float(errors),
        "client_cpu_cores": client_cpu,
        "machine_busy": busy / total if total else 0.0,
        "servers_cpu_cores": servers_cpu,
    }


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_delay_s(pid: int | str = "self", proc: Path = Path("/proc")) -> float:
    """Seconds the process's threads have spent runnable but not running so far (the second field of each
    thread's /proc/PID/task/TID/schedstat): waiting for a core, and, in a capped cgroup, held by its quota."""
    total = 0
    for task in (proc / str(pid) / "task").glob("*"):
        with contextlib.suppress(OSError, IndexError, ValueError):  # a thread may end meanwhile
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def throughput(url: str, token: str, clients: int, calls: int) -> dict[str, Any]:
    """Ours and the floor, stateless; then two replicas of ours on one Redis."""
    with http_process(*ours_http(url, token, "--stateless")) as (ours_url, _):
        ours = anyio.run(load, [ours_url], clients, calls)
    with http_process(*floor_http(url, token)) as (floor_url, _):
        floor = anyio.run(load, [floor_url], clients, calls)
    with tempfile.TemporaryDirectory() as tmp, running_redis(Path(tmp)) as redis, ExitStack() as stack:
        one = stack.enter_context(http_process(*ours_http(url, token, "--stateless", state_url=redis.url)))
        single = anyio.run(load, [one[0]], clients, calls, (one[1],))
        single_light = anyio.run(partial(load, [one[0]], clients, calls, (one[1],), light=True))
        two = stack.enter_context(http_process(*ours_http(url, token, "--stateless", state_url=redis.url)))
        anyio.run(load, [two[0]], 2, 5)  # warm-up, as the first replica had: its first call loads the tools
        pair = anyio.run(load, [one[0], two[0]], clients, calls, (one[1], two[1]))
        pair_light = anyio.run(partial(load, [one[0], two[0]], clients, calls, (one[1], two[1]), light=True))
    return {
        "ours": ours, "floor": floor, "one_replica_redis": single, "two_replicas_redis": pair,
        "one_replica_light_client": single_light, "two_replicas_light_client": pair_light,
    }  # fmt: skip


def _open_sessions(url: str, count: int) -> None:
    init = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "b", "version": "0"}},
    }  # fmt: skip
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with httpx2.Client(timeout=30) as http:
        for _ in range(count):
            answer = http.post(url, json=init, headers=headers)
            assert answer.status_code == 200 and "mcp-session-id" in answer.headers, answer.text[:200]


def memory_per_session(url: str, token: str, sessions: int) -> dict[str, float]:
    """RSS growth per open stateful session, ours and the floor, with `sessions` sessions open."""
    found: dict[str, float] = {}
    for name, (command, env) in {"ours": ours_http(url, token), "floor": floor_http(url, token, "stateful")}.items():
        with http_process(command, env) as (mcp_url, pid):
            _open_sessions(mcp_url, 20)  # warm-up: code paths and caches loaded
            before = rss_kb(pid)
            _open_sessions(mcp_url, sessions)
            found[f"{name}_kb_per_session"] = (rss_kb(pid) - before) / sessions
    return found


__all__ = ["memory_per_session", "throughput"]
