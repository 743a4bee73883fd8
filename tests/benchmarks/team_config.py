"""The configuration a team runs, against our bare configuration and the floor, over HTTP (stateful sessions).

Three servers, each its own uncapped process against the same simulator, driven by light JSON-RPC clients
(each opens a session, then calls list_snapshots on it, as the bare SDK server's tool does the same GET):

- the floor: a bare SDK server (`floor_server.py http PORT stateful`);
- ours, bare: nothing but the server;
- ours, the team configuration: every part in `TEAM_PARTS` on at once.

Measured: calls/s and p50/p99 at `clients` clients, each server in turn; and one call (one client, one call
after another), the three servers running side by side and called in turn, call by call, so that whatever the
machine does meanwhile falls on all three alike (`light_load.alternate`). Each part's own cost per call is
measured in process by `team_parts`.

A part is one line in `TEAM_PARTS`: the arguments and environment it adds to the server. Metrics are on in
both configurations (the HTTP transport always keeps them); tracing is the no-op one in both (see below).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from ..support.http_serving import jwks_issuer, mint
from ..support.redis_server import running_redis
from .fleet import PROVIDER_TOKEN, SECRET, CpuWatch, RedisCommands, drive, percentile, provider
from .http_load import http_process
from .stdio import FLOOR, OURS, provider_env
from .team_parts import policy_file


@dataclass
class Setting:
    """Where a part's files, Redis and issuer are, for the part to name in its arguments."""

    folder: Path
    redis_url: str
    issuer: str
    subject: str = "operator-7"

    @property
    def principal(self) -> str:
        return f"oauth:{self.issuer}#{self.subject}"


@dataclass(frozen=True)
class Part:
    name: str
    adds: Callable[[Setting], tuple[list[str], dict[str, str]]]


def _oauth(s: Setting) -> tuple[list[str], dict[str, str]]:
    jwks = f"{s.issuer}/jwks.json"
    return ["--oauth-jwks-url", jwks, "--oauth-issuer", s.issuer, "--public-url", "http://127.0.0.1:{port}/mcp"], {}


def _policy(s: Setting) -> tuple[list[str], dict[str, str]]:
    text = policy_file(s.folder, 100).read_text().replace("token:alice", s.principal)
    path = s.folder / "team-policy.toml"
    path.write_text(text)
    return ["--policy", str(path)], {}


def _redis(s: Setting) -> tuple[list[str], dict[str, str]]:
    return [], {"VPS_MCP_STATE_URL": s.redis_url, "VPS_MCP_CONFIRM_SECRET": SECRET}


def _audit(s: Setting) -> tuple[list[str], dict[str, str]]:
    return ["--audit-log", str(s.folder / "audit.jsonl")], {}


TEAM_PARTS: list[Part] = [
    Part("OAuth, RS256 access tokens checked against a JWKS", _oauth),
    Part("a permissions file of 100 rules", _policy),
    Part("the consent ledger and the event log in Redis", _redis),
    Part("the hash-chained audit trail", _audit),
    # Metrics are always on over HTTP (/metrics), in the bare configuration too: their cost per call is measured
    # on its own by `python -m tests.benchmarks.metrics_cost`. Tracing with an SDK is a deployment's choice
    # (the otel extra and OTEL_* variables); without them its spans are the no-op one, as here.
]


ROOT = Path(__file__).parent.parent.parent


def _load(url: str, pid: int, bearer: str | None, clients: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    spec = {"urls": [url], "mix": "lists", "sessions": True, "bearer": bearer, "warmup_s": warmup_s}
    watch = CpuWatch([pid])
    loaded = drive(spec | {"clients": clients, "seconds": seconds})
    return loaded | watch.stop()


def _one_call(servers: dict[str, tuple[str, str | None]], seconds: float) -> dict[str, dict[str, Any]]:
    """One client, one call after another, on each server in turn, call by call (`light_load.alternate`):
    per server the median call, the calls and the errors."""
    spec = {"targets": [{"url": url, "bearer": bearer} for url, bearer in servers.values()],
            "seconds": seconds, "warmup_s": 1.0}  # fmt: skip
    process = subprocess.run([sys.executable, "-m", "tests.benchmarks.light_load"], input=json.dumps(spec),
                             capture_output=True, text=True, timeout=seconds + 300, cwd=ROOT, check=True)  # fmt: skip
    found = json.loads(process.stdout)["targets"]
    return {
        name: {
            "p50_ms": percentile(sorted(run["latencies_s"]), 0.5) * 1000,
            "p99_ms": percentile(sorted(run["latencies_s"]), 0.99) * 1000,
            "calls": run["calls"],
            "all_calls": run["calls"],
            "errors": run["errors"],
            "error_samples": run["error_samples"],
        }
        for name, run in zip(servers, found, strict=True)
    }


def team_configuration(*, clients: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    """The floor, ours bare and ours with every team part, against one simulator: loaded one after another,
    then one call at a time, in turns."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        api = stack.enter_context(provider(servers=1, snapshots_each=1))
        redis = stack.enter_context(running_redis(Path(tmp)))
        issuer = stack.enter_context(jwks_issuer(key))
        setting = Setting(Path(tmp), redis.url, issuer)
        env = provider_env(api, PROVIDER_TOKEN) | {"VPS_MCP_LOG_LEVEL": "WARNING"}
        results: dict[str, Any] = {"parts": [p.name for p in TEAM_PARTS]}
        ours = [*OURS, "--transport", "http", "--port", "{port}"]
        arguments, team_env = list(ours), dict(env)
        for part in TEAM_PARTS:
            more, more_env = part.adds(setting)
            arguments += more
            team_env |= more_env
        floor_url, floor_pid = stack.enter_context(http_process([*FLOOR, "http", "{port}", "stateful"], env))
        bare_url, bare_pid = stack.enter_context(http_process(ours, env))
        team_url, team_pid = stack.enter_context(http_process(arguments, team_env))
        scope = "vps-snapshots snapshots:read snapshots:create snapshots:restore snapshots:delete"
        token = mint(key, iss=issuer, aud=team_url, sub=setting.subject, scope=scope, exp=2**31 - 1)
        servers = {"floor": (floor_url, floor_pid, None), "bare": (bare_url, bare_pid, None),
                   "team": (team_url, team_pid, token)}  # fmt: skip
        commands = RedisCommands([redis.url])
        for name, (url, pid, bearer) in servers.items():
            results[name] = {"load": _load(url, pid, bearer, clients, seconds, warmup_s)}
        one = _one_call({name: (url, bearer) for name, (url, _, bearer) in servers.items()}, seconds)
        for name in servers:
            results[name]["one_call"] = one[name]
        calls = results["team"]["load"]["all_calls"] + results["team"]["one_call"]["all_calls"]
        results["team"]["redis_commands_per_call"] = commands.stop() / max(1, calls)  # sessions opened and closed too
    return results


def rows(results: dict[str, Any], clients: int) -> list[tuple[str, str, str, str, str, bool | None]]:
    team, bare, floor = (results[k] for k in ("team", "bare", "floor"))
    out: list[tuple[str, str, str, str, str, bool | None]] = []

    def shown(run: dict[str, Any]) -> str:
        return f"{run['calls_per_s']:.0f}; {run['p50_ms']:.1f}/{run['p99_ms']:.1f}"

    ratio = team["load"]["calls_per_s"] / bare["load"]["calls_per_s"] if bare["load"]["calls_per_s"] else 0.0
    out.append((f"team configuration, {clients} clients: calls/s; p50/p99 ms", shown(team["load"]),
                f"bare {shown(bare['load'])}; floor {shown(floor['load'])}", f"{ratio:.2f}x bare", ">= 0.85x",
                ratio >= 0.85))  # fmt: skip
    over = team["one_call"]["p50_ms"] - bare["one_call"]["p50_ms"]
    out.append(("team configuration, one call (ms, median)", f"{team['one_call']['p50_ms']:.2f}",
                f"bare {bare['one_call']['p50_ms']:.2f}; floor {floor['one_call']['p50_ms']:.2f}",
                f"{over:+.2f} ms", "<= +1 ms", over <= 1.0))  # fmt: skip
    cpu = "; ".join(f"{k} {results[k]['load']['replica_cpu_cores'][0]:.2f}" for k in ("team", "bare", "floor"))
    out.append((f"server CPU at {clients} clients (cores)", cpu, "", "", "", None))
    out.append(("team configuration: Redis commands a call (with its scripts' own; sessions opened and closed)",
                f"{team.get('redis_commands_per_call', 0):.2f}", "", "", "", None))  # fmt: skip
    errors = sum(results[k][m]["errors"] for k in ("team", "bare", "floor") for m in ("load", "one_call"))
    out.append(("team configuration: errors", str(errors), "", "", "0", errors == 0))
    out.append(("team configuration: parts on", "; ".join(results["parts"]), "", "", "", None))
    return out
