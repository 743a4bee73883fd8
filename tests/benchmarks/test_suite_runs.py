"""CI proves the benchmark suite works, with few repetitions, and asserts no times: timings are a report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.benchmark
@pytest.mark.timeout(900)
def test_the_benchmark_suite_runs_and_reports_every_measure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parent.parent.parent,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for measure in ("a. one call, 2025-11-25", "a. one call, 2026-07-28", "a. one call, bare JSON-RPC client",
                    "b. 100 concurrent calls", "c. cold start",
                    "c. RSS", "c. tools/list", "d. 100 identical lists", "d. 300 waiters", "d. demo runbook",
                    "e. HTTP", "e. 2 replicas",
                    "e. 1 replica, SDK clients: cores busy", "e. 2 replicas, light JSON-RPC clients: cores busy",
                    "SDK clients: cores for 1.6x", "e. 2 replicas + Redis vs 1, light JSON-RPC clients",
                    "f. memory per open session", "g. our code's share"):  # fmt: skip
        assert measure in done.stdout, measure
    report = json.loads(out.read_text())
    assert set(report["measured"]) == set(report["targets"])
    # Request counts are exact, so they are asserted; times are only reported.
    assert report["measured"]["identical_lists_gets"] <= 2
    assert report["measured"]["waiter_gets_per_interval"] <= 1
    load = report["details"]["load"]
    assert all(run["errors"] == 0 for run in load.values())
    replica_runs = ("one_replica_redis", "two_replicas_redis", "one_replica_light_client", "two_replicas_light_client")
    assert all(load[run]["servers_cpu_cores"] > 0 for run in replica_runs)


def test_a_run_writes_its_results_outside_tracked_files_unless_told() -> None:
    from .run import OUT, TRACKED, default_output

    root = Path(__file__).parent.parent.parent
    ignored = (root / ".gitignore").read_text().splitlines()
    assert OUT.relative_to(root).parts[0] + "/" in ignored  # build/: never committed by accident
    for quick in (True, False):
        assert default_output(quick=quick) != TRACKED and default_output(quick=quick).is_relative_to(OUT)
