"""Scale-out, the team configuration, a soak and the stdio measures: one command, one table for docs/performance.md.

    .venv/bin/python -m tests.benchmarks.scale --out DIR        # the full run: about 40 minutes, 20 of them soak
    .venv/bin/python -m tests.benchmarks.scale --quick          # seconds per measure: proves it works (CI)

Run it as root on an idle machine with at least 3 cores: each replica runs in a cgroup capped at 0.25 CPU (as a
Kubernetes `limits.cpu: 250m` does), which it makes and removes; where cgroups cannot be written it says so and
runs the replicas uncapped (the scaling figures then measure the machine, and are marked so). Measures:

    1. scale-out: 1, 2 and 4 capped replicas on one Redis, light clients balanced by least requests (`scale_out`)
    2. the team configuration against our bare server and the floor, over HTTP (`team_config`), and each
       team part's cost per call on its own, in process (`team_parts`)
    3. a soak of two capped replicas under a mixed load (`soak`)
    4. the stdio measures kept: one call over the floor, cold start, `tools/list` bytes (`stdio`)

Writes DIR/scale.md (the table, with the machine and the date) and DIR/scale.json (every figure); prints the table.
Times are a report, never a test: the smoke test asserts only that it runs and that the counts are exact.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import anyio

from . import scale_out, soak, team_config, team_parts
from .cgroups import CpuCaps
from .fleet import PROVIDER_TOKEN, provider
from .run import machine
from .stdio import REVISIONS, cold_starts, output_check_us, per_call, per_call_raw, per_call_ts, tools_list_bytes

ROOT = Path(__file__).parent.parent.parent
Row = tuple[str, str, str, str, str, bool | None]


def redis_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        return "not installed"
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return next((w.removeprefix("v=") for w in done.stdout.split() if w.startswith("v=")), "unknown")


def stdio_rows(calls: int, starts: int) -> tuple[list[Row], dict[str, Any]]:
    """The stdio targets, kept: one call within +0.3 ms of the floor, cold start within 1.05x, tools/list size."""
    found: dict[str, Any] = {}
    out: list[Row] = []
    with provider(servers=0, snapshots_each=0) as url:
        for revision, mode in REVISIONS.items():
            one = anyio.run(per_call, url, PROVIDER_TOKEN, calls, mode)
            found[f"per_call_{revision}"] = one
            over = one["ours_median_ms"] - one["typed_floor_median_ms"]
            out.append((f"stdio, one call, {revision}, against the floor answering under our output schema (the "
                        "client checks the same contract on both) (ms, median)", f"{one['ours_median_ms']:.2f}",
                        f"floor {one['typed_floor_median_ms']:.2f}", f"{over:+.2f} ms", "<= +0.3 ms",
                        over <= 0.3))  # fmt: skip
            over = one["ours_median_ms"] - one["floor_median_ms"]
            out.append((f"stdio, one call, {revision}, against the floor answering one string (`{{\"result\": "
                        "string}`), in the same turns (ms, median)", f"{one['ours_median_ms']:.2f}",
                        f"floor {one['floor_median_ms']:.2f}", f"{over:+.2f} ms", "", None))  # fmt: skip
            over = one["unchecked_ours_median_ms"] - one["unchecked_floor_median_ms"]
            out.append((f"stdio, one call, {revision}, the SDK client's output-schema check off on both, in the "
                        "same turns (ms, median)", f"{one['unchecked_ours_median_ms']:.2f}",
                        f"floor {one['unchecked_floor_median_ms']:.2f}", f"{over:+.2f} ms", "", None))  # fmt: skip
            over = one["check_us_ours"] - one["check_us_floor"]
            out.append((f"stdio, one call, {revision}: the SDK client's output-schema check, timed within the "
                        "checked calls (µs, median)", f"{one['check_us_ours']:.0f}",
                        f"floor {one['check_us_floor']:.0f}; under our schema {one['check_us_typed_floor']:.0f}",
                        f"{over:+.0f} µs", "", None))  # fmt: skip
        raw = per_call_raw(url, PROVIDER_TOKEN, calls)
        found["per_call_raw"] = raw
        over = raw["ours_median_ms"] - raw["floor_median_ms"]
        out.append(("stdio, one call, bare JSON-RPC client: the servers' own share (ms, median)",
                    f"{raw['ours_median_ms']:.2f}", f"floor {raw['floor_median_ms']:.2f}", f"{over:+.2f} ms", "",
                    None))  # fmt: skip
        typescript = per_call_ts(url, PROVIDER_TOKEN, calls)
        found["per_call_ts"] = typescript
        if typescript is None:
            out.append(("stdio, one call, the TypeScript SDK's client: not measured (its npm package is not "
                        "installed: run .ci/tools.sh's ensure_node_tools)", "", "", "", "", None))  # fmt: skip
        else:
            over = typescript["ours_median_ms"] - typescript["floor_median_ms"]
            out.append((f"stdio, one call, {typescript['protocol']}, the TypeScript SDK's client "
                        f"{typescript['sdk_version']} (its output-schema check compiled once) (ms, median)",
                        f"{typescript['ours_median_ms']:.2f}", f"floor {typescript['floor_median_ms']:.2f}",
                        f"{over:+.2f} ms", "<= +0.3 ms", over <= 0.3))  # fmt: skip
        checked = anyio.run(output_check_us, url, PROVIDER_TOKEN, calls)
        found["output_check_us"] = checked
        out.append(("stdio, one call: the SDK client checking the result against the tool's output schema, in a "
                    "loop of checks alone (µs)",
                    f"{checked['ours']:.0f}", f"floor {checked['floor']:.0f}",
                    f"{checked['ours'] - checked['floor']:+.0f} µs", "", None))  # fmt: skip
        start = cold_starts(url, PROVIDER_TOKEN, starts)
        found["cold_start"] = start
        ratio = start["ours_median_ms"] / start["floor_median_ms"]
        out.append(("stdio, cold start to tools/list (ms, median)", f"{start['ours_median_ms']:.0f}",
                    f"floor {start['floor_median_ms']:.0f}", f"{ratio:.3f}x", "<= 1.05x", ratio <= 1.05))  # fmt: skip
        for revision, mode in REVISIONS.items():
            listed = anyio.run(tools_list_bytes, url, PROVIDER_TOKEN, mode)
            found[f"tools_list_{revision}"] = listed
            out.append((f"stdio, tools/list result, {revision} (bytes)", str(listed["ours"]), "", "", "<= 7168",
                        listed["ours"] <= 7168))  # fmt: skip
    return out, found


def table(rows: list[Row], header: str) -> str:
    lines = [header, "", "| measure | ours | against | ratio | target | met |", "|---|---|---|---|---|---|"]
    for measure, ours, against, ratio, target, met in rows:
        shown = "" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {measure} | {ours} | {against} | {ratio} | {target} | {shown} |")
    return "\n".join(lines) + "\n"


def stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (a `kill`, a CI job cancelled) ends the run as Ctrl-C does: every `with` unwinds, so the replicas,
    Redis servers, simulators and spinners it started are stopped and its cgroups removed."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, stopped)
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "benchmarks", help="where to write results")
    parser.add_argument("--quick", action="store_true", help="seconds per measure: proves it works")
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="per scale-out configuration (saturated and paced), team run (default 20)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=scale_out.ROUNDS,
        help=f"scale-out slices per configuration (default {scale_out.ROUNDS})",
    )
    parser.add_argument("--soak-minutes", type=float, default=20.0, help="the soak's length (default 20)")
    parser.add_argument("--sample-seconds", type=float, default=30.0, help="memory sampled this often (default 30)")
    parser.add_argument("--cpus", type=float, default=0.25, help="each replica's CPU limit (default 0.25)")
    parser.add_argument("--clients-per-replica", type=int, default=8, help="scale-out load per replica (default 8)")
    parser.add_argument("--team-clients", type=int, default=50, help="team configuration load (default 50)")
    parser.add_argument("--soak-clients", type=int, default=8, help="soak load clients (default 8)")
    parser.add_argument("--skip", action="append", default=[], choices=["scale", "team", "soak", "stdio"])
    args = parser.parse_args(argv)
    counts, mixes = ((1, 2), ("consent",)) if args.quick else (scale_out.COUNTS, scale_out.MIXES)
    if args.quick:  # every measure once, briefly: CI proves it runs, in about a minute
        args.seconds, args.soak_minutes, args.sample_seconds, args.rounds = 2.0, 0.2, 3.0, 2
        args.clients_per_replica, args.team_clients, args.soak_clients = 2, 4, 2
    warmup = 0.5 if args.quick else 3.0
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "quick": args.quick,
                              "machine": machine() | {"redis": redis_version()}, "arguments": vars(args) | {
                                  "out": str(args.out), "skip": args.skip}}  # fmt: skip
    rows: list[Row] = []
    caps = CpuCaps()
    capped = f"capped at {args.cpus:g} CPU" if caps.root else f"UNCAPPED ({caps.unavailable})"
    report["caps"] = {"cgroup_version": caps.version, "unavailable": caps.unavailable}
    if caps.root is None:
        print(f"replicas run uncapped: {caps.unavailable}; the scaling figures measure this machine", flush=True)
    took: dict[str, float] = {}
    report["took_s"] = took
    clock = time.monotonic()
    if "scale" not in args.skip:
        runs = scale_out.scale_out(
            caps if caps.root else None,
            cpus=args.cpus,
            seconds=args.seconds,
            clients_per_replica=args.clients_per_replica,
            warmup_s=0.5 if args.quick else 1.0,  # a slice's processes are up and warm: this fills the pipeline
            counts=counts,
            mixes=mixes,
            rounds=args.rounds,
        )
        report["scale_out"] = runs
        rows += scale_out.rows(runs, capped)
        took["scale"], clock = time.monotonic() - clock, time.monotonic()
    if "team" not in args.skip:
        team = team_config.team_configuration(clients=args.team_clients, seconds=args.seconds, warmup_s=warmup)
        report["team"] = team
        rows += team_config.rows(team, args.team_clients)
        took["team"], clock = time.monotonic() - clock, time.monotonic()
    if "team" not in args.skip:
        parts = team_parts.measure(0.02 if args.quick else 1.0)
        report["team_parts_us"] = parts
        rows += [(f"team part on its own: {team_parts.LABELS[k]} (µs a call)", f"{v:.1f}", "", "", "", None)
                 for k, v in parts.items()]  # fmt: skip
        took["team_parts"], clock = time.monotonic() - clock, time.monotonic()
    if "soak" not in args.skip:
        soaked = soak.soak(caps if caps.root else None, cpus=args.cpus, seconds=args.soak_minutes * 60,
                           sample_s=args.sample_seconds, clients=args.soak_clients)  # fmt: skip
        report["soak"] = soaked
        rows += soak.rows(soaked, args.soak_minutes)
        took["soak"], clock = time.monotonic() - clock, time.monotonic()
    if "stdio" not in args.skip:
        found, report["stdio"] = stdio_rows(*((10, 1) if args.quick else (1000, 61)))
        rows += found
        took["stdio"] = time.monotonic() - clock
    m = report["machine"]
    header = (f"Measured {report['date']}: {m['cpu']}, {m['cores']} cores, Python {m['python']}, Redis {m['redis']}, "
              f"replicas {capped}{' (--quick: figures prove only that it runs)' if args.quick else ''}.")  # fmt: skip
    text = table(rows, header)
    report["rows"] = [dict(zip(("measure", "ours", "against", "ratio", "target", "met"), r, strict=True)) for r in rows]
    (args.out / "scale.md").write_text(text)
    (args.out / "scale.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(text)
    print(f"written to {args.out}/scale.md and scale.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
