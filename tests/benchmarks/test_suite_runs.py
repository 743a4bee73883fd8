"""CI proves the benchmark suite works, with few repetitions, and asserts no times: timings are a report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
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
    for measure in ("a. cold start", "b. per call", "c. 100 concurrent", "d. RSS", "e. tools/list", "e. 5-snapshot"):
        assert measure in done.stdout
    report = json.loads(out.read_text())
    assert set(report["measured"]) == set(report["targets"])
    assert report["details"]["sizes"]["list_5_snapshots_bytes"] > 0
