"""What each team part costs one call, measured on its own: `python -m tests.benchmarks.team_parts`.

The parts a team deployment adds to a call, in microseconds per call (median of 7 rounds):

- the principal: deriving it from the request (here the static-token path, as a contextvar lookup);
- the access policy with a 100-rule permissions file: may this caller touch this server, for this action;
- the audit chain: one hash-chained line built (fsync left out: it is the disk's), and one line appended to the
  trail as a server does it (in a worker thread: flock, write, fsync);
- the actor, request id and trace id an audited line carries;
- OAuth: one RS256 access token verified as the server's verifier does on every request (the JWKS key is cached
  after the first fetch; signature and claims are checked each time, the key looked up in a worker thread),
  and the signature and claims check alone;
- the event log in Redis: one SSE event appended (a stateful session's response stream writes one per event;
  the server writes them behind the call, batched: `state/behind.py`);
- metrics: a read's MCP operation and provider request recorded; tracing without the otel extra: a read's
  provider-request span (the no-op; with the SDK on, `tracing_cost` measures a whole call).

Reported, never asserted: times are a report (docs/performance.md holds the last run beside the floor).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from vps_snapshots_mcp import tracing
from vps_snapshots_mcp.access import AccessPolicy
from vps_snapshots_mcp.audit import Actor, Attempt, AuditLog, trace_id_of
from vps_snapshots_mcp.audit_chain import seal
from vps_snapshots_mcp.metrics import Metrics
from vps_snapshots_mcp.protocol.auth import JwtTokenVerifier
from vps_snapshots_mcp.protocol.principal import (
    current_principal,
    reset_static_token_principal,
    set_static_token_principal,
    static_token_principal,
)
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.state import open_event_log

from ..support.http_serving import jwks_issuer, mint
from ..support.redis_server import running_redis

ROUNDS = 7
CALLS = 20_000


def per_call_us(fn: Callable[[], object], calls: int = CALLS) -> float:
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(rounds)


def async_per_call_us(make: Callable[[], Any], calls: int) -> float:
    """Microseconds per awaited `make()`, median of the rounds, all in one event loop."""

    async def rounds() -> list[float]:
        found = []
        await make()  # warm-up: a first fetch, a connection
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for _ in range(calls):
                await make()
            found.append((time.perf_counter() - started) / calls * 1e6)
        return found

    return statistics.median(anyio.run(rounds))


def policy_file(folder: Path, rules: int) -> Path:
    lines = []
    for i in range(rules - 1):
        lines += ["[[rule]]", f'principals = ["token:bot-{i}"]', f"servers = [{1000 + i}]", 'actions = ["read"]', ""]
    lines += ["[[rule]]", 'principals = ["token:alice"]', "servers = [12345]", 'actions = "all"', ""]
    path = folder / "policy.toml"
    path.write_text("\n".join(lines))
    return path


def _attempt() -> Attempt:
    attempt = Attempt(tool="delete_snapshot", server_id=12345, snapshot_id=801, snapshot_name="n", outcome="executed")
    attempt.actor = Actor(kind="token", id="alice", client_id=None)
    return attempt


def jwt_costs(calls: int) -> tuple[float, float]:
    """(verify_token as on every request, the RS256 signature and claims check alone), µs per token."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with jwks_issuer(key) as issuer:
        audience = "http://127.0.0.1:1/mcp"
        verifier = JwtTokenVerifier(jwks_url=f"{issuer}/jwks.json", issuer=issuer, audience=audience)
        token = mint(key, iss=issuer, aud=audience, scope="vps-snapshots snapshots:read", exp=2**31 - 1)
        per_request = async_per_call_us(lambda: verifier.verify_token(token), calls)
        public = key.public_key()
        alone = per_call_us(
            lambda: jwt.decode(token, public, algorithms=["RS256"], audience=audience, issuer=issuer), calls
        )
    return per_request, alone


def event_log_append_us(folder: Path, calls: int) -> float:
    """One SSE event appended to the Redis event log."""
    payload = '{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"' + "x" * 600 + '"}]}}'
    with running_redis(folder) as redis:
        log = open_event_log(redis.url, ttl_s=3600)
        numbers = iter(range(10**9))
        return async_per_call_us(lambda: log.append("session-1", f"e{next(numbers)}", "s1", payload), calls)


def audit_append_us(folder: Path, calls: int) -> float:
    """One line appended as the server does it: built, chained, written and synced, in a worker thread."""
    log = AuditLog(str(folder / "audit.jsonl"), now=lambda: datetime.now(UTC))
    attempt = _attempt()
    try:
        return async_per_call_us(lambda: log.write(attempt), calls)
    finally:
        log.close()


def _two_spans() -> None:
    """The spans a read makes of ours: one provider request, answered."""
    with tracing.http_client_span("GET", "/snapshots/", "provider.example", 443, resend=0) as span:
        tracing.answered(span, 200)


def measure(scale: float = 1.0) -> dict[str, float]:
    """Every part's cost per call (µs); `scale` below 1 makes fewer calls (a smoke run)."""

    def n(calls: int) -> int:
        return max(10, int(calls * scale))

    found: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        handle = set_static_token_principal(static_token_principal(b"x" * 32))
        try:
            found["principal"] = per_call_us(current_principal, n(CALLS))
        finally:
            reset_static_token_principal(handle)
        settings = Settings(api_token=SecretStr("t" * 24), policy=str(policy_file(folder, 100)))
        access = AccessPolicy.from_settings(settings)
        no_policy = AccessPolicy.from_settings(Settings(api_token=SecretStr("t" * 24)))
        alice = "token:alice"
        found["policy_none"] = per_call_us(lambda: no_policy.may_touch(12345, alice, "delete"), n(CALLS))
        found["policy_100_rules"] = per_call_us(lambda: access.may_touch(12345, alice, "delete"), n(CALLS))
        record = _attempt().record
        now = datetime.now(UTC)
        found["audit_chain"] = per_call_us(lambda: seal(record(now), 1, "0" * 64), n(5_000))
        found["audit_append"] = audit_append_us(folder, n(300))
        meta = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
        found["actor_trace"] = per_call_us(
            lambda: (Actor(kind="token", id="alice", client_id=None), trace_id_of(meta)), n(CALLS)
        )
        found["jwt_per_request"], found["jwt_signature"] = jwt_costs(n(1_000))
        found["event_log_append"] = event_log_append_us(folder, n(1_000))
        metrics = Metrics(tools=["list_snapshots"], endpoints=["/snapshots/"])

        def read_recorded() -> None:
            metrics.operation_done("tools/call", "list_snapshots", "", 0.001)
            metrics.provider_request("GET", "/snapshots/", 200, 0.001, 1234)

        found["metrics_read"] = per_call_us(read_recorded, n(CALLS))
        found["tracing_off"] = per_call_us(_two_spans, n(CALLS))  # no tracer provider in this process
    return found


LABELS = {
    "principal": "the principal, derived per call",
    "policy_none": "the access policy, no permissions file",
    "policy_100_rules": "the access policy, a permissions file of 100 rules",
    "audit_chain": "an audit line built and hash-chained (no fsync)",
    "audit_append": "an audit line appended as a server does (worker thread, flock, write, fsync)",
    "actor_trace": "the actor and trace id an audited line carries",
    "jwt_per_request": "OAuth: an RS256 token verified per request (JWKS key cached; worker thread)",
    "jwt_signature": "OAuth: the RS256 signature and claims check alone",
    "event_log_append": "the event log in Redis: one SSE event appended (written behind the call: see scale)",
    "metrics_read": "metrics: a read's operation and provider request recorded",
    "tracing_off": "tracing without the otel extra: a read's provider-request span (the no-op)",
}


def main() -> None:
    for name, us in measure().items():
        print(f"{LABELS[name] + ':':<80} {us:9.2f} µs")


if __name__ == "__main__":
    main()
