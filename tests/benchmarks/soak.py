"""A soak: two capped replicas on one Redis under a mixed load for minutes; memory sampled, nothing may grow.

The replicas are a team deployment with sign-in: stateful (sessions pinned to a replica, as a sticky load
balancer does), the consent ledger and the event log in Redis, each its own hash-chained audit trail, OAuth for
MCP callers against a real OpenID Connect provider (`support/oidc.py`; each replica's public URL is its own, so
its tokens' audience), and the approval page's sign-in at the same provider (both replicas' callbacks
registered), with the default `--consent auto`. The load (`light_load`'s `soak` mix, its clients carrying the
user's access tokens): lists, creates that wait, previews left unconfirmed, restores and deletes confirmed by
token, a create whose stream is dropped and resumed, sessions closed and opened again, and one round in five an
approval: a delete confirmed on a session that declares URL elicitation, held by its replica until a person,
signed in once on the page over plain HTTP, approves it on the other replica. (`auto` is what gives that mix:
a client that opens URLs is sent to the page, the others keep the token; `--consent url` would refuse every
token, and the policy's protected servers say only who may approve, not whether the page is used.)

Every `sample_s` the RSS of each replica and Redis's `used_memory` are sampled. At the end: every audit trail
passes `vps-snapshots-mcp audit verify`, every confirmed change (approved ones too) reached the provider exactly
once, and the trails hold each approval: requested, approved (on the other replica) and executed.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..support.oidc import TOKEN_CLIENT, oidc_provider
from ..support.redis_server import free_port, running_redis
from .cgroups import CpuCaps
from .fleet import drive, exactly_once, provider, provider_changes, redis_figures, replica_command, replicas
from .stdio import OURS, rss_kb

SETTLE_S = 120.0
"""Growth counts from here: the first minutes fill caches, pools and the ledger's window."""
APPROVAL_CLIENT = "approval-page"
USER = "alice"
"""Who calls (her access tokens) and who approves her changes on the page (signed in as herself)."""


def soak(caps: CpuCaps | None, *, cpus: float, seconds: float, sample_s: float, clients: int) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, running_redis(Path(tmp)) as redis, ExitStack() as stack:
        api = stack.enter_context(provider(servers=clients, snapshots_each=1, snapshot_seconds=2.0))
        trails = [Path(tmp) / f"audit-{i}.jsonl" for i in range(2)]
        ports = [free_port() for _ in trails]
        mcp = [f"http://127.0.0.1:{port}/mcp" for port in ports]  # each replica's public URL: its tokens' audience
        callbacks = tuple(url.removesuffix("/mcp") + "/approve/callback" for url in mcp)
        idp = stack.enter_context(oidc_provider(mcp[0], also_for=tuple(mcp[1:]), redirect_uris=callbacks,
                                                client_id=APPROVAL_CLIENT, workdir=Path(tmp)))  # fmt: skip
        page, tokens = idp.clients[APPROVAL_CLIENT], idp.clients[TOKEN_CLIENT]
        fleet = []
        for index, trail in enumerate(trails):  # one replica at a time: each writes its own audit trail
            command = replica_command(api, redis.url, "--consent", "auto", "--audit-log", str(trail))
            command[1].update({
                "VPS_MCP_PUBLIC_URL": mcp[index], "VPS_MCP_OAUTH_ISSUER": idp.issuer,
                "VPS_MCP_OAUTH_JWKS_URL": idp.jwks_url, "VPS_MCP_APPROVAL_CLIENT_ID": page.client_id,
                "VPS_MCP_APPROVAL_CLIENT_SECRET": page.client_secret,
            })  # fmt: skip
            fleet += stack.enter_context(replicas(stack, 1, command, caps, cpus, first=index, ports=[ports[index]]))
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
            idp_spec = {"issuer": idp.issuer, "client_id": tokens.client_id, "client_secret": tokens.client_secret,
                        "redirect_uri": tokens.redirect_uris[0], "user": USER, "person": USER}  # fmt: skip
            spec = {"urls": [r.url for r in fleet], "clients": clients, "seconds": seconds, "warmup_s": 0,
                    "mix": "soak", "idp": idp_spec}  # fmt: skip
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
        result["audit_approvals"] = audited_approvals(trails)
    result["samples"] = samples
    result |= growth(samples, min(SETTLE_S, seconds / 3))
    return result


def audited_approvals(trails: list[Path]) -> dict[str, int]:
    """The approval lines in the trails, by event (requested, approved, declined, expired); the changes executed
    with consent `approval`; and `elsewhere`, the approvals decided on another replica than the one asked."""
    found: dict[str, int] = {}
    asked_in: dict[str, int] = {}
    decided_in: dict[str, int] = {}
    for index, trail in enumerate(trails):
        for line in trail.read_text().splitlines() if trail.exists() else []:
            entry = json.loads(line)
            outcome = entry.get("outcome")
            if outcome in ("requested", "approved", "declined", "expired"):
                found[outcome] = found.get(outcome, 0) + 1
                held = {"requested": asked_in, "approved": decided_in}.get(outcome)
                if held is not None:
                    held[entry["details"]["approval"]] = index
            elif outcome == "executed" and entry.get("consent") == "approval":
                found["executed"] = found.get("executed", 0) + 1
    found["elsewhere"] = sum(1 for key, where in decided_in.items() if asked_in.get(key, where) != where)
    return found


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
    audited = result["audit_approvals"]
    return [
        (f"soak, {minutes:g} min, 2 replicas: RSS growth after {result['settle_s']:.0f} s (MB)", grown,
         "/".join(f"{m:.1f}" for m in last["replica_rss_mb"]) + " MB at the end", "", "< 5 MB each",
         all(g < 5 for g in result["replica_growth_mb"])),
        ("soak: Redis used_memory growth (MB)", f"{result['redis_growth_mb']:+.2f}",
         f"{last['redis_used_mb']:.1f} MB at the end", "", "< 10 MB", result["redis_growth_mb"] < 10),
        ("soak: calls; creates waited; streams resumed; approved on the page; errors", f"{result['all_calls']}; "
         f"{result['created']}; {result['resumed']}; {result['approved']}; {result['errors']}", "", "",
         "0 errors", result["errors"] == 0),
        ("soak: confirmed / provider changes / missing / extra",
         f"{once['confirmed']} / {once['provider_changes']} / {once['missing']} / {once['extra']}", "", "",
         "exactly one each", once["missing"] == 0 and once["extra"] == 0),
        ("soak: audit verify on each trail (lines)", "; ".join(
            f"{'ok' if code == 0 else 'FAILED'} ({n})" for (code, _), n in
            zip(result["audit_verify"], result["audit_lines"], strict=True)), "", "", "passes", audit_ok),
        ("soak: approvals in the trails: requested / approved (on the other replica) / executed",
         f"{audited.get('requested', 0)} / {audited.get('approved', 0)} ({audited['elsewhere']}) / "
         f"{audited.get('executed', 0)}", "", "", "one each approved",
         audited.get("approved", 0) == audited.get("executed", 0) == result["approved"]),
    ]  # fmt: skip
