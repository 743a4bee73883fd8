"""A real Prometheus (Debian's `prometheus`), started by the test that needs it on a free loopback port.

Its configuration is generated: one job scraping the given target every second with the bearer token, as
docs/observability.md documents it. It keeps its TSDB in the test's temporary directory and is stopped after.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from .redis_server import free_port

SCRAPE_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: vps-snapshots-mcp
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials_file: {token_file}
    static_configs:
      - targets: ["{target}"]
"""


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if found is None:
        pytest.skip("Debian's prometheus is not installed (.ci/run installs it)")
    return found


@dataclass
class Prometheus:
    url: str

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector `promql` evaluates to now, through the HTTP API."""
        answer = httpx2.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The single value `promql` evaluates to now, or None when it has none."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def until(self, promql: str, expected: float, within_s: float = 30.0) -> float | None:
        """Query until `promql` is `expected` (scrapes come each second), with a deadline; the last value."""
        deadline = time.monotonic() + within_s
        while True:
            found = self.value(promql)
            if found == expected or time.monotonic() > deadline:
                return found
            time.sleep(0.25)


@contextmanager
def running_prometheus(directory: Path, target: str, token: str) -> Iterator[Prometheus]:
    """Prometheus scraping `target` (host:port) every second with `token`; stopped (and waited for) after."""
    token_file = directory / "scrape-token"
    token_file.write_text(token)
    config = directory / "prometheus.yml"
    config.write_text(SCRAPE_CONFIG.format(token_file=token_file, target=target))
    port = free_port()
    process = subprocess.Popen(
        [
            prometheus_binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # a process start has no event to wait on: poll its readiness, with a deadline
            try:
                if httpx2.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.1)
        yield Prometheus(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
