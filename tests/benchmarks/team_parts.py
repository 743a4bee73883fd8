"""What each team part costs one call, measured on its own: `python -m tests.benchmarks.team_parts`.

The parts a team deployment adds to a call, in microseconds per call (median of 7 rounds):

- the principal: deriving it from the request (here the static-token path, as a contextvar lookup);
- the access policy with a 100-rule permissions file: may this caller touch this server, for this action;
- the audit chain: appending one hash-chained line (fsync left out: it is the disk's, and was paid before);
- the actor, request id and trace id an audited line carries.

Reported, never asserted: times are a report (docs/performance.md holds the last run beside the floor).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from vps_snapshots_mcp.access import AccessPolicy
from vps_snapshots_mcp.audit import Actor, Attempt, trace_id_of
from vps_snapshots_mcp.audit_chain import seal
from vps_snapshots_mcp.protocol.principal import (
    current_principal,
    reset_static_token_principal,
    set_static_token_principal,
    static_token_principal,
)
from vps_snapshots_mcp.settings import Settings

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


def policy_file(folder: Path, rules: int) -> Path:
    lines = []
    for i in range(rules - 1):
        lines += ["[[rule]]", f'principals = ["token:bot-{i}"]', f"servers = [{1000 + i}]", 'actions = ["read"]', ""]
    lines += ["[[rule]]", 'principals = ["token:alice"]', "servers = [12345]", 'actions = "all"', ""]
    path = folder / "policy.toml"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        handle = set_static_token_principal(static_token_principal(b"x" * 32))
        try:
            principal = per_call_us(current_principal)
        finally:
            reset_static_token_principal(handle)
        settings = Settings(api_token=SecretStr("t" * 24), policy=str(policy_file(folder, 100)))
        access = AccessPolicy.from_settings(settings)
        no_policy = AccessPolicy.from_settings(Settings(api_token=SecretStr("t" * 24)))
        alice = "token:alice"
        policy_100 = per_call_us(lambda: access.may_touch(12345, alice, "delete"))
        policy_none = per_call_us(lambda: no_policy.may_touch(12345, alice, "delete"))
        attempt = Attempt(
            tool="delete_snapshot", server_id=12345, snapshot_id=801, snapshot_name="n", outcome="executed"
        )
        attempt.actor = Actor(kind="token", id="alice", client_id=None)
        record = attempt.record
        now = datetime.now(UTC)
        chain = per_call_us(lambda: seal(record(now), 1, "0" * 64), calls=5_000)
        meta = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
        actor = per_call_us(lambda: (Actor(kind="token", id="alice", client_id=None), trace_id_of(meta)))
    print(f"principal, derived per call:             {principal:6.2f} µs")
    print(f"access policy, no policy file:           {policy_none:6.2f} µs")
    print(f"access policy, 100 rules:                {policy_100:6.2f} µs")
    print(f"audit line built and chained (no fsync): {chain:6.2f} µs")
    print(f"actor and trace id:                      {actor:6.2f} µs")


if __name__ == "__main__":
    main()
