"""Measures over stdio, ours against the floor (a bare MCPServer doing the same GET), on both protocol revisions.

Each figure pairs our server and the floor in the same run, against the same simulator process.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import CallToolResult

from ..support.oidc import TYPESCRIPT_SDK, node_binary

HERE = Path(__file__).parent
FLOOR = [sys.executable, str(HERE / "floor_server.py")]
FLOOR_TYPED = [*FLOOR, "typed"]  # the same GET, its answer under our output schema
OURS = [sys.executable, "-m", "vps_snapshots_mcp"]
REVISIONS = {"2025-11-25": "legacy", "2026-07-28": "auto"}
"""Protocol revision -> the SDK client's mode that speaks it."""
DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the run


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


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


def provider_env(url: str, token: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "VPS_API_URL": url, "VPS_API_TOKEN": token}


def client(command: list[str], env: dict[str, str], mode: str) -> Client:
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    return Client(stdio_client(params, errlog=DEVNULL), mode=mode)


async def in_turn(
    actions: Mapping[str, Callable[[], Awaitable[object]]], count: int, warm_up: int
) -> dict[str, list[float]]:
    """Each action's times, the actions taken in turn, one after another, `warm_up` + `count` rounds (the first
    `warm_up` not kept): whatever the machine does meanwhile falls on every action alike."""
    times: dict[str, list[float]] = {name: [] for name in actions}
    order = list(actions)
    for n in range(warm_up + count):
        turn = n % len(order)  # each round starts with the next one: none always follows the same other
        for name in order[turn:] + order[:turn]:
            started = time.perf_counter()
            await actions[name]()
            if n >= warm_up:
                times[name].append(time.perf_counter() - started)
    return times


async def timed(action: Callable[[], Awaitable[object]], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await action()
        times.append(time.perf_counter() - started)
    return times


async def _unchecked(name: str, result: CallToolResult) -> None:
    """Stands in for `ClientSession.validate_tool_result` where a measure leaves the client's check out."""


def _timing_the_check(session: Client, into: list[float]) -> None:
    """Time the SDK client's output-schema check of each result, as it runs within the call (this instance)."""
    check = session.session.validate_tool_result

    async def timed_check(name: str, result: CallToolResult) -> None:
        started = time.perf_counter()
        await check(name, result)
        into.append(time.perf_counter() - started)

    session.session.validate_tool_result = timed_check  # type: ignore[method-assign]


async def per_call(url: str, token: str, calls: int, mode: str) -> dict[str, float]:
    """Median and p95 of one list_snapshots, ours and the floor, sessions open side by side and called in turn,
    call by call, so that whatever the machine does meanwhile falls on all alike (blocks of calls in fresh
    processes had differed by 0.5 ms from run to run on a 2-core machine).

    Two more sessions, ours and the floor's, are called in the same turns with the SDK client's output-schema
    check turned off (those instances only): `unchecked_*`, what is left of the gap without that check. In the
    checked sessions the check is timed as it runs within each call (`check_us_*`): there it costs more than
    in a loop of checks alone (`output_check_us`), as a call leaves the processor's caches to the servers.

    A fifth session, in the same turns, is the floor answering under our output schema (`typed_floor_*`): the
    client checks the same contract there as on ours."""
    env = provider_env(url, token)
    checks: dict[str, list[float]] = {"ours": [], "floor": [], "typed_floor": []}
    async with (
        client(OURS, env, mode) as ours,
        client(FLOOR, env, mode) as floor,
        client(OURS, env, mode) as ours_unchecked,
        client(FLOOR, env, mode) as floor_unchecked,
        client(FLOOR_TYPED, env, mode) as typed_floor,
    ):
        for session in (ours_unchecked, floor_unchecked):
            session.session.validate_tool_result = _unchecked  # type: ignore[method-assign]
        _timing_the_check(ours, checks["ours"])
        _timing_the_check(floor, checks["floor"])
        _timing_the_check(typed_floor, checks["typed_floor"])

        def listing(session: Client) -> Callable[[], Awaitable[None]]:
            async def one() -> None:
                result = await session.call_tool("list_snapshots", {"server_id": 12345})
                assert not result.is_error

            return one

        sessions = {"ours": ours, "floor": floor, "unchecked_ours": ours_unchecked, "unchecked_floor": floor_unchecked,
                    "typed_floor": typed_floor}  # fmt: skip
        times = await in_turn({name: listing(s) for name, s in sessions.items()}, calls, max(5, calls // 10))
    found = {f"{name}_median_ms": median(kept) * 1000 for name, kept in times.items()}
    found |= {f"check_us_{name}": median(kept[-calls:]) * 1e6 for name, kept in checks.items()}  # past the warm-up
    return found | {f"{name}_p95_ms": p95(times[name]) * 1000 for name in ("ours", "floor", "typed_floor")}


async def output_check_us(url: str, token: str, count: int) -> dict[str, float]:
    """Microseconds the SDK's client spends checking one `list_snapshots` result against the tool's output schema
    (`ClientSession.validate_tool_result`, its compiled validator cached, as in every call), ours and the floor's:
    a cost of the client's that grows with the schema (ours describes each snapshot; the floor's `-> str` tool
    publishes `{"result": string}`)."""
    found = {}
    for name, command in (("ours", OURS), ("floor", FLOOR)):
        async with client(command, provider_env(url, token), "legacy") as session:
            result = await session.call_tool("list_snapshots", {"server_id": 12345})
            assert result.structured_content is not None

            async def check(session: Client = session, result: CallToolResult = result) -> None:
                await session.session.validate_tool_result("list_snapshots", result)

            found[name] = median(await timed(check, count)) * 1e6
    return found


def per_call_raw(url: str, token: str, calls: int) -> dict[str, float]:
    """One list_snapshots with a bare JSON-RPC client (2025-11-25), ours and the floor: the servers' own share.

    The SDK's client checks a structured result against the tool's output schema (with `jsonschema`) and parses
    it into objects; this client only writes the request and reads the answer's line. Both servers are open side
    by side and called in turn, call by call (blocks of calls in fresh processes differed by 0.4 ms between
    runs); the first tenth warms up.
    """
    env = provider_env(url, token)
    call = {"name": "list_snapshots", "arguments": {"server_id": 12345}}
    request_ids = itertools.count(3)

    def listing(process: subprocess.Popen[bytes]) -> Callable[[], Awaitable[None]]:
        async def one() -> None:  # blocking on the pipe: nothing else runs meanwhile
            message = {"jsonrpc": "2.0", "id": next(request_ids), "method": "tools/call", "params": call}
            answer = _rpc(process, message)
            assert b'"isError":false' in answer, answer[:200]

        return one

    with _listed(OURS, env) as ours, _listed(FLOOR, env) as floor:
        actions = {"ours": listing(ours), "floor": listing(floor)}
        times = anyio.run(in_turn, actions, calls, max(5, calls // 10))
    return {f"{name}_median_ms": median(kept) * 1000 for name, kept in times.items()}


def per_call_ts(url: str, token: str, calls: int) -> dict[str, Any] | None:
    """One list_snapshots with the TypeScript SDK's client, ours and the floor in turn (`ts_stdio_client.mjs`).

    That client checks each structured result against the tool's output schema too, with a validator compiled
    once (ajv), where the Python SDK's walks the schema in Python on every call. None when the TypeScript SDK is
    not installed (run `.ci/tools.sh`'s `ensure_node_tools` first).
    """
    node = node_binary()
    if not (TYPESCRIPT_SDK / "package.json").exists() or shutil.which(node) is None:
        return None
    env = provider_env(url, token)
    servers = {name: {"command": command[0], "args": command[1:], "env": env}
               for name, command in (("ours", OURS), ("floor", FLOOR))}  # fmt: skip
    config = {"sdk": str(TYPESCRIPT_SDK), "servers": servers, "calls": calls, "warm_up": max(5, calls // 10)}
    command = [node, str(HERE / "ts_stdio_client.mjs"), json.dumps(config)]
    answer = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    lines = answer.stdout.strip().splitlines()
    if answer.returncode != 0 or not lines:
        raise RuntimeError(f"the TypeScript client failed (exit {answer.returncode}): {answer.stderr[-2000:]}")
    found = json.loads(lines[-1])
    version = json.loads((TYPESCRIPT_SDK / "package.json").read_text())["version"]
    return {f"{name}_median_ms": median(found[name]) for name in ("ours", "floor")} | {
        "protocol": found["protocol"], "sdk_version": version}  # fmt: skip


async def _bursts(command: list[str], env: dict[str, str], mode: str, rounds: int) -> list[float]:
    async with client(command, env, mode) as session:

        async def one() -> None:
            result = await session.call_tool("list_snapshots", {"server_id": 12345})
            assert not result.is_error

        async def hundred() -> None:
            async with anyio.create_task_group() as group:
                for _ in range(100):
                    group.start_soon(one)

        await one()
        return await timed(hundred, rounds)


async def burst(url: str, token: str, rounds: int, mode: str) -> dict[str, float]:
    """100 concurrent calls (the simulator answers in 200 ms), ours and the floor."""
    env = provider_env(url, token)
    ours: list[float] = []
    floor: list[float] = []
    for _ in range(rounds):
        ours += await _bursts(OURS, env, mode, 1)
        floor += await _bursts(FLOOR, env, mode, 1)
    return {"ours_median_ms": median(ours) * 1000, "floor_median_ms": median(floor) * 1000}


async def tools_list_bytes(url: str, token: str, mode: str) -> dict[str, int]:
    """The tools/list result as a client receives it (the JSON-RPC envelope aside), ours and the floor's."""
    sizes = {}
    for name, command in (("ours", OURS), ("floor", FLOOR)):
        async with client(command, provider_env(url, token), mode) as session:
            listing = await session.list_tools()
            sizes[name] = len(listing.model_dump_json(by_alias=True, exclude_none=True).encode())
    return sizes


@dataclass
class Start:
    seconds: float
    rss_kb: int


def _rpc(process: subprocess.Popen[bytes], message: dict[str, Any], *, answer: bool = True) -> bytes:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(message).encode() + b"\n")
    process.stdin.flush()
    return process.stdout.readline() if answer else b""


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@contextmanager
def _listed(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A server spawned with a bare JSON-RPC pipe: initialized (2025-11-25) and its tools listed once."""
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    try:
        init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}
        _rpc(process, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
        _rpc(process, {"jsonrpc": "2.0", "method": "notifications/initialized"}, answer=False)
        _rpc(process, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        yield process
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def cold_start(command: list[str], env: dict[str, str]) -> Start:
    """Spawn, initialize, list tools (timed); then the process's RSS."""
    started = time.perf_counter()
    with _listed(command, env) as process:
        return Start(time.perf_counter() - started, rss_kb(process.pid))


def cold_starts(url: str, token: str, count: int) -> dict[str, Any]:
    env = provider_env(url, token)
    ours: list[Start] = []
    floor: list[Start] = []
    for _ in range(count):  # interleaved, so drift on a shared machine hits both alike
        floor.append(cold_start(FLOOR, env))
        ours.append(cold_start(OURS, env))
    return {
        "ours_median_ms": median([s.seconds for s in ours]) * 1000,
        "floor_median_ms": median([s.seconds for s in floor]) * 1000,
        "ours_rss_mb": median([s.rss_kb for s in ours]) / 1024,
        "floor_rss_mb": median([s.rss_kb for s in floor]) / 1024,
    }
