"""The alert rules in manifests/prometheus/: valid (`promtool check rules`), tested (`promtool test rules`), on
metrics the server exports, and each explained in docs/observability.md.

Real parts: Debian's `promtool` (skipped where it is not installed; .ci/run installs it and runs both checks).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vps_snapshots_mcp.metrics import Metrics

ROOT = Path(__file__).parent.parent
RULES = sorted((ROOT / "manifests" / "prometheus").glob("*.rules.yaml"))
RULE_TESTS = sorted((ROOT / "manifests" / "prometheus" / "tests").glob("*.yaml"))
DOC = ROOT / "docs" / "observability.md"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian's prometheus package; .ci/run installs it)")
    return found


def alerts() -> list[dict[str, Any]]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def test_promtool_finds_the_rules_valid() -> None:
    assert RULES
    done = subprocess.run([promtool(), "check", "rules", *RULES], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    assert RULE_TESTS
    done = subprocess.run([promtool(), "test", "rules", *RULE_TESTS], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_reads_metrics_the_server_exports() -> None:
    exported = set()
    for metric in Metrics().described():
        exported.add(metric.name)
        if metric.kind == "histogram":
            exported |= {f"{metric.name}_{part}" for part in ("bucket", "count", "sum")}
    for rule in alerts():
        used = set(re.findall(r"\b(?:mcp_server|http_client|vps_snapshots)_[a-z_]+", rule["expr"]))
        assert used and used <= exported, (rule["alert"], used - exported)


def test_every_alert_says_what_to_do_in_the_docs() -> None:
    text = DOC.read_text()
    for rule in alerts():
        name = rule["alert"]
        assert f"### {name}" in text, name
        assert rule["annotations"]["runbook"] == f"docs/observability.md#{name.lower()}"
