"""Scale-out: 1, 2 and 4 replicas, each capped like a pod, on one Redis, with light clients (a least-request balancer).

Per replica count: a fresh Redis (the consent ledger; the replicas are stateless) and a fresh provider simulator,
both uncapped; the replicas share one client token (one caller everywhere, so a confirmation token made by one
replica is honoured by the next) and run `--consent token` (light clients cannot answer a question). The load
grows with the replicas (`clients_per_replica` each), so a replica's load is the same in every run, and is
made by light JSON-RPC clients, a process of their own per replica's share, uncapped; the provider's account
is the same in every run (one server per client of the largest run). Two mixes:

- `lists`: list_snapshots only;
- `consent`: six lists, a confirmed restore and a confirmed delete (each a preview, then the confirmation);
  afterwards every confirmed consent is matched against the simulator's request log: exactly one provider
  request each, and no other change.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..support.redis_server import running_redis
from .cgroups import CpuCaps
from .fleet import (
    AUTH_TOKEN,
    CpuWatch,
    drive,
    exactly_once,
    latency_figures,
    provider,
    provider_changes,
    redis_figures,
    replica_command,
    replicas,
)
from .light_load import SNAPSHOTS_EACH

COUNTS = (1, 2, 4)
MIXES = ("lists", "consent")


def scale_out(
    caps: CpuCaps | None,
    *,
    cpus: float,
    clients_per_replica: int,
    seconds: float,
    warmup_s: float,
    counts: tuple[int, ...] = COUNTS,
    mixes: tuple[str, ...] = MIXES,
) -> dict[str, Any]:
    """Every replica count and mix; `caps` None runs the replicas uncapped (where cgroups cannot be written).

    Each count runs twice for half of `seconds`, in the order 1, 2, 4, 4, 2, 1, and its two halves are pooled:
    this machine's speed drifts over minutes (one replica's p99 moved 4% between runs of the same
    configuration), and in that order a steady drift moves every count's mean alike. Pooling halves run at
    different speeds widens a count's spread, most for the first count, whose halves are furthest apart: each
    half's p99 is kept (`p99_ms_each_run`) for a comparison half by half."""
    halves: dict[str, list[dict[str, Any]]] = {}
    for count in (*counts, *reversed(counts)):
        for mix in mixes:
            run = _one_run(caps, count, mix, cpus=cpus, clients_per_replica=clients_per_replica, seconds=seconds / 2,
                           warmup_s=warmup_s, servers=clients_per_replica * max(counts))  # fmt: skip
            halves.setdefault(f"{count}:{mix}", []).append(run)
    return {key: pooled(parts) for key, parts in halves.items()}


def _one_run(
    caps: CpuCaps | None,
    count: int,
    mix: str,
    *,
    cpus: float,
    clients_per_replica: int,
    seconds: float,
    warmup_s: float,
    servers: int,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, running_redis(Path(tmp)) as redis, ExitStack() as stack:
        # One account, the same size in every run: the API has no single-snapshot endpoint, so the look-up
        # before a change lists the whole account, and an account grown with the load would make each
        # call dearer with every replica added (it did: 4 replicas, 4 times the records each look-up).
        api = stack.enter_context(provider(servers=servers, snapshots_each=SNAPSHOTS_EACH))
        command = replica_command(api, redis.url, "--stateless", "--consent", "token")
        command[1]["VPS_MCP_AUTH_TOKEN"] = AUTH_TOKEN
        fleet = stack.enter_context(replicas(stack, count, command, caps, cpus))
        watch = CpuWatch([r.pid for r in fleet])
        throttled = [CpuCaps.throttled_s(r.group) for r in fleet if r.group]
        spec = {"urls": [r.url for r in fleet], "clients": clients_per_replica * count, "seconds": seconds,
                "warmup_s": warmup_s, "mix": mix, "bearer": AUTH_TOKEN}  # fmt: skip
        commands = redis_figures(redis.url)["commands"]
        provider_cpu, provider_from = provider_changes(api)["cpu_s"], time.perf_counter()
        result = drive(spec, processes=count, keep_latencies=True)  # a load process per replica's clients
        result["provider_cpu_cores"] = (provider_changes(api)["cpu_s"] - provider_cpu) / (
            time.perf_counter() - provider_from
        )
        # Every call, warm-up included, against every command (INFO itself is one).
        commands = redis_figures(redis.url)["commands"] - commands - 1
        result["redis_commands"] = commands
        result |= watch.stop()
        after = [CpuCaps.throttled_s(r.group) for r in fleet if r.group]
        result["throttled_s"] = [b - a for a, b in zip(throttled, after, strict=True)]
        if mix == "consent":
            result["exactly_once"] = exactly_once(result["confirmed"], provider_changes(api)["changes"])
        result["confirmed"] = len(result["confirmed"])
        return result


def pooled(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs of one configuration as one: calls, latencies and counts together; CPU figures averaged."""
    latencies = sorted(x for part in parts for x in part.pop("latencies_s"))
    seconds = sum(part["seconds"] for part in parts)
    calls, all_calls = sum(part["calls"] for part in parts), sum(part["all_calls"] for part in parts)

    def mean(key: str) -> float:
        return sum(float(part[key]) for part in parts) / len(parts)

    result: dict[str, Any] = {
        "runs": len(parts),
        "seconds": seconds,
        "calls": calls,
        "all_calls": all_calls,
        "calls_per_s": calls / seconds if seconds > 0 else 0.0,
        **latency_figures(latencies),
        "p99_ms_each_run": [part["p99_ms"] for part in parts],
        "errors": sum(part["errors"] for part in parts),
        "error_samples": [s for part in parts for s in part["error_samples"]][:5],
        "confirmed": sum(part["confirmed"] for part in parts),
        "redis_commands_per_call": sum(part["redis_commands"] for part in parts) / max(1, all_calls),
        "replica_cpu_cores": [
            sum(cpu) / len(parts) for cpu in zip(*(p["replica_cpu_cores"] for p in parts), strict=True)
        ],
        "throttled_s": [sum(t) for t in zip(*(p["throttled_s"] for p in parts), strict=True)],
        "machine_busy_cores": mean("machine_busy_cores"),
        "provider_cpu_cores": mean("provider_cpu_cores"),
        "client_cpu_cores": mean("client_cpu_cores"),
    }
    if any("exactly_once" in part for part in parts):
        once = [part["exactly_once"] for part in parts]
        result["exactly_once"] = {key: sum(o[key] for o in once) for key in once[0]}
    return result


def saturated(run: dict[str, Any]) -> bool:
    """The machine, not the replicas' quota, was the limit: its cores were (nearly) all busy."""
    return bool(run["machine_busy_cores"] >= 0.9 * (os.cpu_count() or 1))


def _interval(run: dict[str, Any]) -> str:
    low, high = run["p99_interval_ms"]
    return f"{low:.0f}-{high:.0f}"


def rows(runs: dict[str, Any], capped: str) -> list[tuple[str, str, str, str, str, bool | None]]:
    """Table rows: measure, value, against one replica, ratio, target, met."""
    out: list[tuple[str, str, str, str, str, bool | None]] = []
    for mix in MIXES:
        one = runs.get(f"1:{mix}")
        for count in COUNTS:
            run = runs.get(f"{count}:{mix}")
            if one is None or run is None:
                continue
            ratio = run["calls_per_s"] / one["calls_per_s"] if one["calls_per_s"] else 0.0
            target = {1: "", 2: ">= 1.8x", 4: ">= 3.4x"}[count]
            met = None if count == 1 else ratio >= (1.8 if count == 2 else 3.4)
            cpu = "/".join(f"{c:.2f}" for c in run["replica_cpu_cores"])
            out.append((
                f"{count} replica(s), {mix}, {capped}: calls/s; p50/p99 ms; replica CPU; machine busy; "
                "the simulator's CPU; Redis commands a call (with those its scripts run)",
                f"{run['calls_per_s']:.0f}; {run['p50_ms']:.0f}/{run['p99_ms']:.0f}; {cpu}; "
                f"{run['machine_busy_cores']:.2f}; {run['provider_cpu_cores']:.2f}; "
                f"{run['redis_commands_per_call']:.2f}",
                f"{one['calls_per_s']:.0f}; {one['p50_ms']:.0f}/{one['p99_ms']:.0f}",
                f"{ratio:.2f}x" + (" (machine saturated)" if saturated(run) else ""), target, met,
            ))  # fmt: skip
            if count > 1:
                out.append((f"{count} replicas, {mix}: p99 vs one replica at the same load per replica "
                            "(its 95% interval)",
                            f"{run['p99_ms']:.0f} ms ({_interval(run)})", f"{one['p99_ms']:.0f} ms ({_interval(one)})",
                            "", "not above", run["p99_ms"] <= one["p99_ms"]))  # fmt: skip
            once = run.get("exactly_once")
            if once:
                out.append((
                    f"{count} replica(s), consent: confirmed / provider changes / missing / extra",
                    f"{once['confirmed']} / {once['provider_changes']} / {once['missing']} / {once['extra']}",
                    "", "", "exactly one each",
                    once["missing"] == 0 and once["extra"] == 0 and once["confirmed"] == once["provider_changes"],
                ))  # fmt: skip
    errors = sum(run["errors"] for run in runs.values())
    out.append(("scale-out: errors in every run", str(errors), "", "", "0", errors == 0))
    return out
