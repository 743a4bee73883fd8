"""A soak: two capped replicas on one Redis under a mixed load for minutes; memory sampled, nothing may grow.

The replicas are stateful (sessions pinned to a replica, as a sticky load balancer does), keep the consent
ledger and the event log in Redis, and each writes its own hash-chained audit trail. The load (`light_load`'s
`soak` mix): lists, creates that wait, previews left unconfirmed, confirmed restores and deletes, a create
whose stream is dropped and resumed, sessions closed and opened again. Every `sample_s` the RSS of each
replica and Redis's `used_memory` are sampled. At the end: every audit trail passes
`vps-snapshots-mcp audit verify`, and every confirmed change reached the provider exactly once.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..support.redis_server import running_redis
from .cgroups import CpuCaps
from .fleet import AUTH_TOKEN, drive, exactly_once, provider, provider_changes, redis_figures, replica_command, replicas
from .stdio import OURS, rss_kb

SETTLE_S = 120.0
"""Growth counts from here: the first minutes fill caches, pools and the ledger's window."""


def soak(caps: CpuCaps | None, *, cpus: float, seconds: float, sample_s: float, clients: int) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, running_redis(Path(tmp)) as redis, ExitStack() as stack:
        api = stack.enter_context(provider(servers=clients, snapshots_each=1, snapshot_seconds=2.0))
        trails = [Path(tmp) / f"audit-{i}.jsonl" for i in range(2)]
        fleet = []
        for index, trail in enumerate(trails):  # one replica at a time: each writes its own audit trail
            command = replica_command(api, redis.url, "--consent", "token", "--audit-log", str(trail))
            command[1]["VPS_MCP_AUTH_TOKEN"] = AUTH_TOKEN
            fleet += stack.enter_context(replicas(stack, 1, command, caps, cpus, first=index))
        started = time.monotonic()
        done = threading.Event()

        def sample() -> None:
            while True:
                samples.append({
                    "at_s": time.monotonic() - started,
                    "replica_rss_mb": [rss_kb(r.pid) / 1024 for r in fleet],
                    "redis_used_mb": redis_figures(redis.url)["used_memory"] / 2**20,
                })  # fmt: skip
                if done.wait(sample_s):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            spec = {"urls": [r.url for r in fleet], "clients": clients, "seconds": seconds, "warmup_s": 0,
                    "mix": "soak", "bearer": AUTH_TOKEN}  # fmt: skip
            result = drive(spec)
        finally:
            done.set()
            sampler.join(timeout=30)
        result["exactly_once"] = exactly_once(result["confirmed"], provider_changes(api)["changes"])
        result["confirmed"] = len(result["confirmed"])
        stack.close()  # the replicas stopped: their trails are complete
        verified = [
            subprocess.run([*OURS, "audit", "verify", str(t)], capture_output=True, text=True, check=False)
            for t in trails
        ]
        result["audit_verify"] = [(v.returncode, (v.stdout + v.stderr).strip()[-200:]) for v in verified]
        result["audit_lines"] = [sum(1 for _ in t.open()) if t.exists() else 0 for t in trails]
    result["samples"] = samples
    result |= growth(samples, min(SETTLE_S, seconds / 3))
    return result


def growth(samples: list[dict[str, Any]], settle_s: float) -> dict[str, Any]:
    """Memory growth from the first sample after `settle_s` to the last one."""
    settled = next((s for s in samples if s["at_s"] >= settle_s), samples[-1])
    last = samples[-1]
    return {
        "settle_s": settle_s,
        "replica_growth_mb": [b - a for a, b in zip(settled["replica_rss_mb"], last["replica_rss_mb"], strict=True)],
        "redis_growth_mb": last["redis_used_mb"] - settled["redis_used_mb"],
    }


def rows(result: dict[str, Any], minutes: float) -> list[tuple[str, str, str, str, str, bool | None]]:
    grown = "/".join(f"{g:+.1f}" for g in result["replica_growth_mb"])
    last = result["samples"][-1]
    once = result["exactly_once"]
    audit_ok = all(code == 0 for code, _ in result["audit_verify"])
    return [
        (f"soak, {minutes:g} min, 2 replicas: RSS growth after {result['settle_s']:.0f} s (MB)", grown,
         "/".join(f"{m:.1f}" for m in last["replica_rss_mb"]) + " MB at the end", "", "< 5 MB each",
         all(g < 5 for g in result["replica_growth_mb"])),
        ("soak: Redis used_memory growth (MB)", f"{result['redis_growth_mb']:+.2f}",
         f"{last['redis_used_mb']:.1f} MB at the end", "", "< 10 MB", result["redis_growth_mb"] < 10),
        ("soak: calls; creates waited; streams resumed; errors", f"{result['all_calls']}; {result['created']}; "
         f"{result['resumed']}; {result['errors']}", "", "", "0 errors", result["errors"] == 0),
        ("soak: confirmed / provider changes / missing / extra",
         f"{once['confirmed']} / {once['provider_changes']} / {once['missing']} / {once['extra']}", "", "",
         "exactly one each", once["missing"] == 0 and once["extra"] == 0),
        ("soak: audit verify on each trail (lines)", "; ".join(
            f"{'ok' if code == 0 else 'FAILED'} ({n})" for (code, _), n in
            zip(result["audit_verify"], result["audit_lines"], strict=True)), "", "", "passes", audit_ok),
    ]  # fmt: skip
