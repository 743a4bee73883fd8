"""The benchmark suite: every figure is ours against a floor measured in the same run, on the same machine.

    .venv/bin/python -m tests.benchmarks                 # the full run (about 4 minutes on 2 cores)
    .venv/bin/python -m tests.benchmarks --quick         # a smoke run: few repetitions, proves the suite works

The floor is a bare MCPServer whose one tool performs the same httpx2 GET to the same simulator (same client
settings, keep-alive), in its own process: what the SDK itself costs for such a tool. Measures:

    a. one call over stdio, median and p95, on 2025-11-25 and 2026-07-28
    b. a burst of 100 concurrent calls at 200 ms provider latency, on both revisions
    c. cold start to the first tools/list, RSS after start-up, tools/list size
    d. provider requests (exact, from the simulator's request log): 100 identical lists, 300 waiters,
       the demo runbook against the fewest the API allows
    e. HTTP, stateless: 50 clients x 40 calls, ours vs the floor's HTTP app; two replicas on one Redis vs one
    f. HTTP, stateful: memory per open session with 1,000 sessions open
    g. where one call's time goes (cProfile over 1,000 calls)

The simulator runs as its own process (`vps-snapshots-mcp sandbox`) for a-c and e-f. It writes a table and
JSON: to build/benchmarks/ (ignored by git) unless --json names a file, such as the tracked
tests/benchmarks/last-run.json when the figures in docs/performance.md are renewed. Times are a report,
never a test: CI runs --quick.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from .economy import economy
from .http_load import memory_per_session, throughput
from .profile_call import profile
from .stdio import REVISIONS, burst, cold_starts, per_call, per_call_raw, simulator, tools_list_bytes

HERE = Path(__file__).parent
TRACKED = HERE / "last-run.json"
"""The run docs/performance.md quotes: written only when --json names it."""
OUT = HERE.parent.parent / "build" / "benchmarks"


def default_output(*, quick: bool) -> Path:
    """Where a run writes unless told: under build/ (ignored by git), never over a tracked file."""
    return OUT / ("quick-run.json" if quick else "last-run.json")


TARGETS: dict[str, tuple[str, float]] = {
    "per_call_ms_over_floor": ("<= +0.3 ms", 0.3),
    "per_call_p95_ms_over_floor": ("<= +0.5 ms", 0.5),
    "burst_ratio": ("<= 1.05x", 1.05),
    "cold_start_ratio": ("<= 1.05x", 1.05),
    "rss_extra_mb": ("<= +5 MB", 5.0),
    "tools_list_bytes": ("<= 7168", 7168),
    "identical_lists_gets": ("<= 2", 2),
    "waiter_gets_per_interval": ("<= 1 (+1 look-up)", 1.0),
    "http_throughput_ratio": (">= 0.95x", 0.95),
    "replicas_scaling": (">= 1.6x", 1.6),
    "session_memory_ratio": ("<= 1.1x", 1.1),
}
AT_LEAST = {"http_throughput_ratio", "replicas_scaling"}


def machine() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )  # fmt: skip
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # With rich installed, a bare MCPServer imports it at start and writes httpx2's INFO line for each provider
        # request through it, which slows the floor (about 15 ms at start, 0.6 ms a call). A user's install has no
        # rich, and nor should this venv (CI keeps build and twine, which bring it, in a venv of their own).
        "rich_installed": importlib.util.find_spec("rich") is not None,
    }


def met(name: str, value: float) -> bool:
    limit = TARGETS[name][1]
    return value >= limit if name in AT_LEAST else value <= limit


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions: proves the suite works")
    parser.add_argument("--json", type=Path, default=None, help=f"where to write the results (default {OUT}/)")
    args = parser.parse_args(argv)
    args.json = args.json or default_output(quick=args.quick)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    starts, calls, rounds, clients, each, sessions, profiled = (
        (3, 20, 1, 5, 4, 20, 50) if args.quick else (41, 1000, 5, 50, 40, 1000, 1000)
    )
    rows: list[tuple[str, str, str, str, str, float | None]] = []  # measure, ours, floor, vs, target name, value

    with simulator() as (url, token):
        for revision, mode in REVISIONS.items():
            one = anyio.run(per_call, url, token, calls, mode)
            over, over95 = one["ours_median_ms"] - one["floor_median_ms"], one["ours_p95_ms"] - one["floor_p95_ms"]
            rows.append(
                (
                    f"a. one call, {revision} (ms, median)",
                    f"{one['ours_median_ms']:.2f}",
                    f"{one['floor_median_ms']:.2f}",
                    f"{over:+.2f} ms",
                    "per_call_ms_over_floor",
                    over,
                )
            )
            rows.append(
                (
                    f"a. one call, {revision} (ms, p95)",
                    f"{one['ours_p95_ms']:.2f}",
                    f"{one['floor_p95_ms']:.2f}",
                    f"{over95:+.2f} ms",
                    "per_call_p95_ms_over_floor",
                    over95,
                )
            )
        raw = per_call_raw(url, token, calls)
        rows.append(
            (
                "a. one call, bare JSON-RPC client, 2025-11-25 (ms, median): the servers' share",
                f"{raw['ours_median_ms']:.2f}",
                f"{raw['floor_median_ms']:.2f}",
                f"{raw['ours_median_ms'] - raw['floor_median_ms']:+.2f} ms",
                "",
                None,
            )
        )
        start = cold_starts(url, token, starts)
        ratio = start["ours_median_ms"] / start["floor_median_ms"]
        rows.append(
            (
                "c. cold start to tools/list (ms)",
                f"{start['ours_median_ms']:.0f}",
                f"{start['floor_median_ms']:.0f}",
                f"{ratio:.3f}x",
                "cold_start_ratio",
                ratio,
            )
        )
        extra = start["ours_rss_mb"] - start["floor_rss_mb"]
        rows.append(
            (
                "c. RSS after start-up (MB)",
                f"{start['ours_rss_mb']:.1f}",
                f"{start['floor_rss_mb']:.1f}",
                f"{extra:+.1f} MB",
                "rss_extra_mb",
                extra,
            )
        )
        for revision, mode in REVISIONS.items():
            listed = anyio.run(tools_list_bytes, url, token, mode)
            rows.append(
                (
                    f"c. tools/list result, {revision} (bytes)",
                    str(listed["ours"]),
                    f"{listed['floor']} (one tool)",
                    "",
                    "tools_list_bytes",
                    listed["ours"],
                )
            )
        load = throughput(url, token, clients, each)
        sessions_memory = memory_per_session(url, token, sessions)
    with simulator(latency_ms=200) as (url, token):
        for revision, mode in REVISIONS.items():
            hundred = anyio.run(burst, url, token, rounds, mode)
            ratio = hundred["ours_median_ms"] / hundred["floor_median_ms"]
            rows.append(
                (
                    f"b. 100 concurrent calls, {revision} (ms)",
                    f"{hundred['ours_median_ms']:.0f}",
                    f"{hundred['floor_median_ms']:.0f}",
                    f"{ratio:.3f}x",
                    "burst_ratio",
                    ratio,
                )
            )

    economical = anyio.run(economy)
    lists, waiters = economical["identical_lists"], economical["many_waiters"]
    rows.append(
        (
            "d. 100 identical lists at once: provider GETs",
            str(lists["provider_gets"]),
            "100",
            "",
            "identical_lists_gets",
            lists["provider_gets"],
        )
    )
    per_interval = (waiters["provider_gets"] - 1) / waiters["poll_intervals"]
    rows.append(
        (
            f"d. 300 waiters, {waiters['poll_intervals']} poll intervals: provider GETs",
            str(waiters["provider_gets"]),
            "",
            f"{per_interval:.2f} per interval",
            "waiter_gets_per_interval",
            per_interval,
        )
    )
    sent = sum(step["sent"] for step in economical["demo_runbook"])
    fewest = sum(step["fewest"] for step in economical["demo_runbook"])
    rows.append(("d. demo runbook: provider requests", str(sent), f"{fewest} (fewest)", f"+{sent - fewest}", "", None))

    ours, floor = load["ours"], load["floor"]
    ratio = ours["calls_per_s"] / floor["calls_per_s"]
    rows.append(
        (
            f"e. HTTP {clients}x{each} calls (calls/s; p50/p99 ms)",
            f"{ours['calls_per_s']:.0f}; {ours['p50_ms']:.0f}/{ours['p99_ms']:.0f}",
            f"{floor['calls_per_s']:.0f}; {floor['p50_ms']:.0f}/{floor['p99_ms']:.0f}",
            f"{ratio:.2f}x",
            "http_throughput_ratio",
            ratio,
        )
    )
    cores = os.cpu_count() or 1
    runs = (
        ("SDK clients", load["one_replica_redis"], load["two_replicas_redis"], "replicas_scaling"),
        ("light JSON-RPC clients", load["one_replica_light_client"], load["two_replicas_light_client"], ""),
    )
    for client_kind, single, pair, target in runs:
        scaling = pair["calls_per_s"] / single["calls_per_s"]
        rows.append(
            (
                f"e. 2 replicas + Redis vs 1, {client_kind} (calls/s)",
                f"{pair['calls_per_s']:.0f}",
                f"{single['calls_per_s']:.0f}",
                f"{scaling:.2f}x",
                target,
                scaling if target else None,
            )
        )
        for label, run in (("1 replica", single), ("2 replicas", pair)):
            busy = run["machine_busy"] * cores
            rows.append(
                (
                    f"e. {label}, {client_kind}: cores busy (load client / replicas / provider, Redis, rest)",
                    f"{busy:.2f} of {cores}",
                    f"{run['client_cpu_cores']:.2f} / {run['servers_cpu_cores']:.2f} / "
                    f"{busy - run['client_cpu_cores'] - run['servers_cpu_cores']:.2f}",
                    "",
                    "",
                    None,
                )
            )
        # Every call costs the machine the same CPU whichever replica serves it (the client, a replica, the
        # provider, Redis): the one-replica run's busy cores times the target ratio is what the target needs.
        needed = TARGETS["replicas_scaling"][1] * single["machine_busy"] * cores
        rows.append((f"e. {client_kind}: cores for 1.6x one replica", f"{needed:.2f}", f"{cores} here", "", "", None))
    errors = sum(run["errors"] for run in load.values())
    rows.append(("e. errors in every HTTP run", f"{errors:.0f}", "", "", "", None))
    memory_ratio = sessions_memory["ours_kb_per_session"] / sessions_memory["floor_kb_per_session"]
    rows.append(
        (
            f"f. memory per open session, {sessions} open (KB)",
            f"{sessions_memory['ours_kb_per_session']:.1f}",
            f"{sessions_memory['floor_kb_per_session']:.1f}",
            f"{memory_ratio:.2f}x",
            "session_memory_ratio",
            memory_ratio,
        )
    )
    profiled_call = profile(profiled)
    rows.append(
        (
            "g. our code's share of one call (in process)",
            f"{profiled_call['ours_ms_per_call']:.3f} ms",
            f"{profiled_call['total_ms_per_call']:.3f} ms (all)",
            f"{profiled_call['ours_share']:.1%}",
            "",
            None,
        )
    )

    header = ("measure", "ours", "floor", "ours vs floor", "target", "met")
    table = [
        (m, o, f, v, TARGETS[t][0] if t else "", ("yes" if met(t, value) else "NO") if t and value is not None else "")
        for m, o, f, v, t, value in rows
    ]
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(6)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    print("\nwhere our share of a call goes (µs per call):")
    for entry in profiled_call["top"]:
        print(f"  {entry['us_per_call']:7.1f}  {entry['function']}")
    print("\ndemo runbook, step by step (sent / fewest the API allows):")
    for step in economical["demo_runbook"]:
        print(f"  {step['sent']:3d} / {step['fewest']}  {step['step']}" + (f": {step['why']}" if step["why"] else ""))

    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "quick": args.quick,
        "rows": [dict(zip(header, row, strict=True)) for row in table],
        "measured": {t: value for _, _, _, _, t, value in rows if t},
        "targets": {name: label for name, (label, _) in TARGETS.items()},
        "details": {"load": load, "sessions": sessions_memory, "economy": economical, "profile": profiled_call},
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    rich = "rich installed (the floor is slowed)" if report["machine"]["rich_installed"] else "no rich"
    print(f"\n{report['machine']['cpu']}, {report['machine']['cores']} cores, {rich}; written to {args.json}")
    return 0
