"""Scale-out: 1, 2 and 4 replicas, each capped like a pod, on one Redis, with light clients (a least-request balancer).

Per replica count: a Redis (the consent ledger; the replicas are stateless) and a provider simulator, both
uncapped, all started once and kept up for the whole run (`Standing`); the replicas share one client token (one
caller everywhere, so a confirmation token made by one replica is honoured by the next) and run `--consent
token` (light clients cannot answer a question). The load grows with the replicas (`clients_per_replica`
each), so a replica's load is the same in every run, and is made by light JSON-RPC clients over plain sockets
(`lean_http`), all in one uncapped load process behind one least-request balancer, as one ingress in front of
pods; the provider's account is the same in every configuration and stays that size (one server per client of
the largest run, each deleted snapshot replaced). Two mixes:

- `lists`: list_snapshots only;
- `consent`: six lists, a confirmed restore and a confirmed delete (each a preview, then the confirmation);
  after each slice every confirmed consent is matched against the simulator's request log: exactly one
  provider request each, and no other change.

The load moves between the configurations in short rotated slices (`scale_out`), first saturated (the
throughput ratios), then paced at the same offered rate a replica (the p99 comparison).

Three controls: at four replicas, lists only, four sharing Redis and the provider, each client sending to one
replica alone (`4-pinned`), and four that share nothing but the machine and the load process (`4-alone`), each
with its own Redis and its own provider simulator, its clients pinned to it; and on both mixes one replica with
its own Redis and provider beside three processes that only burn CPU, each capped as a replica is (`1-crowded`:
the machine kept busy, nothing shared). Where four replicas' p99 is above one replica's, these tell the design
(a shared Redis or provider) and the balancing from the machine (two cores under four replicas, their load and
the simulator). Each run also reports the share of its time each replica and
the load process was runnable but waiting for a core (`core_wait`, `client_core_wait`; a replica's time held by
its quota is taken out, from its cgroup's throttled time), and the provider GETs a call cost (a replica's
concurrent identical reads share one GET).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..support.redis_server import running_redis
from .cgroups import CpuCaps
from .fleet import (
    AUTH_TOKEN,
    RedisCommands,
    Replica,
    drive,
    exactly_once,
    latency_figures,
    provider,
    provider_changes,
    replica_command,
    replicas,
)
from .light_load import SNAPSHOTS_EACH

COUNTS = (1, 2, 4)
CONTROLS = {
    "pinned": "Redis and the provider shared, each client sending to one replica alone",
    "alone": "sharing nothing but the machine and the load process (each its own Redis and provider)",
    "crowded": "one replica beside three capped spinners (the machine's cores as busy, nothing else shared)",
}
"""The controls, each with its table row's words: four replicas (`pinned`, `alone`), and one replica whose machine
is kept as busy as four replicas keep it (`crowded`)."""
CONTROL_MIXES = {"pinned": ("lists",), "alone": ("lists",), "crowded": ("lists", "consent")}
"""The mixes each control runs: `alone` cannot run consent (its changes are spread over four providers' logs)."""
MIXES = ("lists", "consent")
ROUNDS = 8
"""Rounds of slices: every configuration runs once in each, for `seconds / ROUNDS`."""
PACED_SHARE = 0.5
"""The paced runs offer each replica this share of the calls a second one replica answers saturated (half the
calls, not half the CPU: paced lists overlap less, so share fewer provider GETs, and cost a replica more each)."""


@dataclass
class Standing:
    """A configuration's processes, started once and kept for every slice of the run: its replicas, and the
    provider simulator and Redis (one each, or, for `alone`, one for each replica) they use."""

    fleet: list[Replica]
    apis: list[str]
    redis_urls: list[str]
    provider_pids: list[int] = field(default_factory=list)
    changes_seen: list[int] = field(default_factory=list)
    """How many changes each simulator's log held after the last slice: a slice checks only its own."""


def scale_out(
    caps: CpuCaps | None,
    *,
    cpus: float,
    clients_per_replica: int,
    seconds: float,
    warmup_s: float,
    counts: tuple[int, ...] = COUNTS,
    mixes: tuple[str, ...] = MIXES,
    rounds: int = ROUNDS,
    paced_share: float = PACED_SHARE,
) -> dict[str, Any]:
    """Every replica count and mix, saturated then paced; `caps` None runs the replicas uncapped (where cgroups
    cannot be written).

    Every configuration's processes start once and stay up, and the load moves from one to the next in short
    slices: `rounds` rounds, each running every configuration once for `seconds / rounds`, the plan's order
    reversed from one round to the next. This machine's speed drifts by a fifth within a
    minute (a fixed loop's rate, while other virtual machines share the host), so configurations measured
    minutes apart differ by more than the gaps compared; slices a few seconds long, rotated, put every
    configuration through the same drift. A configuration's slices are pooled (each slice's p99 is kept in
    `p99_ms_each_run`).

    Saturated: each client calls again as soon as it is answered, so every replica is at its quota (the throughput
    ratios). Paced: after that, each replica count again, each client at a mean rate (`Pace`) that offers every
    replica `paced_share` of the calls a second one replica answered saturated: the p99 at the same load per
    replica; and the most replicas paced with each client pinned to one replica, where no queue is pooled over
    replicas (a balancer lets four replicas share out a burst one replica must take). A round's slices share their
    seed: within a round the first clients (one replica's whole load) send the same arrivals at every replica count,
    and each round others. Saturated, a closed loop's latency is its clients over the calls a second a replica
    answers (Little's law), so a saturated p99 only restates the throughput ratio."""
    servers = clients_per_replica * max(counts)
    controls = [(control_count(sharing, counts), sharing) for sharing in CONTROLS] if "lists" in mixes else []
    configurations = [(count, "") for count in counts] + controls
    plan = [(count, sharing, mix) for count, sharing in configurations
            for mix in mixes if not sharing or mix in CONTROL_MIXES[sharing]]  # fmt: skip
    with ExitStack() as stack:
        standing: dict[tuple[int, str], Standing] = {}
        for count, sharing in configurations:
            where = (count, _processes(sharing))
            if where not in standing:  # `pinned` calls the four replicas the balanced runs use
                made = sum(len(s.fleet) for s in standing.values())
                standing[where] = _stand(stack, caps, count, where[1], cpus=cpus, servers=servers, first=made)

        def one_slice(
            count: int, sharing: str, mix: str, number: int, rate_each: float | None = None
        ) -> dict[str, Any]:
            return _slice(standing[(count, _processes(sharing))], caps, mix, sharing=sharing, cpus=cpus,
                          clients=clients_per_replica * count, seconds=seconds / rounds, warmup_s=warmup_s,
                          rate_each=rate_each, seed=str(number))  # fmt: skip

        def in_rounds(plan: list[tuple[int, str, str]], offered: dict[str, float] | None) -> dict[str, Any]:
            """Every configuration of `plan` in each round, the order reversed from round to round, its slices
            pooled; paced when `offered` gives each mix's calls a second a replica."""
            slices: dict[str, list[dict[str, Any]]] = {}
            for number in range(rounds):
                for count, sharing, mix in plan if number % 2 == 0 else reversed(plan):
                    rate_each = offered[mix] / clients_per_replica if offered else None
                    slices.setdefault(_key(count, sharing, mix, paced=bool(offered)), []).append(
                        one_slice(count, sharing, mix, number, rate_each)
                    )
            return {key: pooled(parts) for key, parts in slices.items()}

        runs = in_rounds(plan, None)
        one = min(counts)
        offered = {mix: paced_share * runs[_key(one, "", mix)]["calls_per_s"] / one for mix in mixes}
        # And the most replicas with each client sending to one replica alone: no queue pooled over replicas.
        paced_plan = [(count, "", mix) for count in counts for mix in mixes]
        paced_plan += [(max(counts), "pinned", mix) for mix in mixes if max(counts) > 1]
        for key, run in in_rounds(paced_plan, offered).items():
            runs[key] = run | {"offered_per_replica": offered[key.split(":")[1]], "paced_share": paced_share}
    return runs


def _processes(sharing: str) -> str:
    """Which standing processes a configuration calls: `pinned` calls those of the balanced runs."""
    return "" if sharing == "pinned" else sharing


def _key(count: int, sharing: str, mix: str, *, paced: bool = False) -> str:
    """A configuration's key in the results: `4:lists`, `4-pinned:lists`, `2:consent:paced`."""
    return f"{count}{'-' if sharing else ''}{sharing}:{mix}" + (":paced" if paced else "")


def control_count(sharing: str, counts: tuple[int, ...] = COUNTS) -> int:
    """The replicas a control runs: one when crowded (by spinners in the others' place), else the most."""
    return 1 if sharing == "crowded" else max(counts)


def _spinners(stack: ExitStack, caps: CpuCaps, number: int, cpus: float) -> list[int]:
    """`number` processes that only burn CPU, each capped at `cpus` as a replica is: what a replica's quota
    does to the machine's cores, without a replica's work; stopped on the way out."""
    pids = []
    for index in range(number):
        group = stack.enter_context(caps.capped(f"spinner{index}", cpus))
        spin = f"import os\nwhile os.getppid() == {os.getpid()}: pass"  # ends with this process, even killed
        spinner = subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.DEVNULL)
        stack.callback(spinner.wait, 10)  # after the kill below, and both before the group is removed
        stack.callback(spinner.kill)
        CpuCaps.move(group, spinner.pid)
        pids.append(spinner.pid)
    return pids


def _stand(
    stack: ExitStack, caps: CpuCaps | None, count: int, sharing: str, *, cpus: float, servers: int, first: int = 0
) -> Standing:
    """A configuration's processes, stopped when `stack` closes: `count` replicas (their cgroups named from
    `first`) on one Redis and one simulator, or with `sharing` "alone" each replica with its own."""
    alone = sharing == "alone"
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    standing = Standing([], [], [])
    for index in range(count if alone else 1):
        (tmp / str(index)).mkdir()
        redis = stack.enter_context(running_redis(tmp / str(index)))
        # One account, the same size in every configuration and all run long: the API has no single-snapshot
        # endpoint, so the look-up before a change lists the whole account, and an account grown with the load
        # would make each call dearer with every replica added (it did: 4 replicas, 4 times the records each
        # look-up); one shrunk by the deletes would make it cheaper where more clients delete (`replenish`).
        api = stack.enter_context(provider(servers=servers, snapshots_each=SNAPSHOTS_EACH, replenish=True))
        command = replica_command(api, redis.url, "--stateless", "--consent", "token")
        command[1]["VPS_MCP_AUTH_TOKEN"] = AUTH_TOKEN
        made = stack.enter_context(replicas(stack, 1 if alone else count, command, caps, cpus,
                                            first=first + len(standing.fleet)))  # fmt: skip
        standing.fleet += made
        standing.apis.append(api)
        standing.redis_urls.append(redis.url)
        standing.provider_pids.append(int(provider_changes(api)["pid"]))
        standing.changes_seen.append(0)
    return standing


def _slice(
    standing: Standing,
    caps: CpuCaps | None,
    mix: str,
    *,
    sharing: str,
    cpus: float,
    clients: int,
    seconds: float,
    warmup_s: float,
    rate_each: float | None = None,
    seed: str = "",
) -> dict[str, Any]:
    """One slice on a standing configuration; `sharing` "pinned" or "alone": each client sends to one replica
    alone; "crowded": beside three capped spinners (when capped) for the slice; `rate_each`: paced clients,
    their arrivals (and where each client begins its first round) seeded with `seed`. CPU, waits and
    throttling are taken by the load process over its measured window alone."""
    with ExitStack() as stack:
        spinning = _spinners(stack, caps, 3, cpus) if sharing == "crowded" and caps is not None else []
        watch = {"pids": [r.pid for r in standing.fleet], "groups": [str(r.group) for r in standing.fleet if r.group],
                 "spinners": spinning, "providers": standing.provider_pids}  # fmt: skip
        spec: dict[str, Any] = {"urls": [r.url for r in standing.fleet], "clients": clients, "seconds": seconds,
                                "warmup_s": warmup_s, "mix": mix, "bearer": AUTH_TOKEN, "lean": True,
                                "pinned": sharing in ("pinned", "alone"), "seed": seed, "watch": watch}  # fmt: skip
        if rate_each is not None:
            spec["rate_each"] = rate_each
        commands = RedisCommands(standing.redis_urls)
        before = [provider_changes(a) for a in standing.apis]
        result = drive(spec, processes=1, keep_latencies=True)  # one balancer for every client, as one ingress
        answered = [provider_changes(a) for a in standing.apis]
        result["provider_gets"] = sum(b["gets"] - a["gets"] for a, b in zip(before, answered, strict=True))
        result["redis_commands"] = commands.stop()  # every call, warm-up included, against every command sent
    (window,) = result.pop("windows")
    result |= {
        key: window[key]
        for key in (
            "replica_cpu_cores",
            "machine_busy_cores",
            "replica_run_delay_s",
            "watched_s",
            "spinner_cpu_cores",
            "throttled_s",
            "provider_cpu_cores",
        )
    }
    result["client_cpu_cores"] = window["client_cpu_s"] / window["watched_s"]
    result["client_core_wait"] = window["client_run_delay_s"] / window["watched_s"]
    held = result["throttled_s"] or [0.0] * len(standing.fleet)
    result["core_wait"] = [max(0.0, delayed - quota) / result["watched_s"]
                           for delayed, quota in zip(result["replica_run_delay_s"], held, strict=True)]  # fmt: skip
    changes = [log["changes"][seen:] for log, seen in zip(answered, standing.changes_seen, strict=True)]
    standing.changes_seen = [len(log["changes"]) for log in answered]
    if mix == "consent":
        assert len(changes) == 1, "alone runs lists only: one provider's log holds every change"
        result["exactly_once"] = exactly_once(result["confirmed"], changes[0])
    elif any(changes):  # a list changes nothing: a change here was late from an earlier slice, or worse
        result["exactly_once"] = exactly_once([], [change for log in changes for change in log])
    result["confirmed"] = len(result["confirmed"])
    return result


def pooled(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs of one configuration as one: calls, latencies and counts together; CPU figures averaged."""
    latencies = sorted(x for part in parts for x in part.pop("latencies_s"))
    seconds = sum(part["seconds"] for part in parts)
    calls, all_calls = sum(part["calls"] for part in parts), sum(part["all_calls"] for part in parts)

    def mean(key: str) -> float:
        return sum(float(part[key]) for part in parts) / len(parts)

    result: dict[str, Any] = {
        "runs": len(parts),
        "seconds": seconds,
        "calls": calls,
        "all_calls": all_calls,
        "calls_per_s": calls / seconds if seconds > 0 else 0.0,
        **latency_figures(latencies),
        "p99_ms_each_run": [part["p99_ms"] for part in parts],
        "errors": sum(part["errors"] for part in parts),
        "error_samples": [s for part in parts for s in part["error_samples"]][:5],
        "confirmed": sum(part["confirmed"] for part in parts),
        "redis_commands_per_call": sum(part["redis_commands"] for part in parts) / max(1, all_calls),
        "provider_gets_per_call": sum(part["provider_gets"] for part in parts) / max(1, all_calls),
        "replica_cpu_cores": [
            sum(cpu) / len(parts) for cpu in zip(*(p["replica_cpu_cores"] for p in parts), strict=True)
        ],
        "throttled_s": [sum(t) for t in zip(*(p["throttled_s"] for p in parts), strict=True)],
        "core_wait": [sum(w) / len(parts) for w in zip(*(p["core_wait"] for p in parts), strict=True)],
        "spinner_cpu_cores": [sum(c) / len(parts) for c in zip(*(p["spinner_cpu_cores"] for p in parts), strict=True)],
        "client_core_wait": mean("client_core_wait"),
        "machine_busy_cores": mean("machine_busy_cores"),
        "provider_cpu_cores": mean("provider_cpu_cores"),
        "client_cpu_cores": mean("client_cpu_cores"),
    }
    if any("exactly_once" in part for part in parts):
        result["exactly_once"] = _summed([part["exactly_once"] for part in parts])
    return result


def saturated(run: dict[str, Any]) -> bool:
    """The machine, not the replicas' quota, was the limit: its cores were (nearly) all busy."""
    return bool(run["machine_busy_cores"] >= 0.9 * (os.cpu_count() or 1))


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    """Exactly-once counts of several runs as one."""
    return {key: sum(c[key] for c in counts) for key in counts[0]}


def _once_row(what: str, once: dict[str, int]) -> tuple[str, str, str, str, str, bool | None]:
    """Confirmed consents against the provider's changes: met when each reached it once and nothing else did."""
    return (f"{what}: confirmed / provider changes / missing / extra",
            f"{once['confirmed']} / {once['provider_changes']} / {once['missing']} / {once['extra']}", "", "",
            "exactly one each",
            once["missing"] == 0 and once["extra"] == 0 and once["confirmed"] == once["provider_changes"])  # fmt: skip


def _control_row(
    sharing: str, what: str, mix: str, control: dict[str, Any], one: dict[str, Any], shared: dict[str, Any]
) -> tuple[str, str, str, str, str, bool | None]:
    crowded = sharing == "crowded"
    spun = "/".join(f"{c:.2f}" for c in control["spinner_cpu_cores"])
    return (f"{mix if crowded else f'4 replicas, {mix}'}, {what}, a control: calls/s; p50/p99 ms (p99's 95% "
            "interval); waiting for a core; provider GETs a call" + ("; the spinners' CPU" if crowded else ""),
            f"{control['calls_per_s']:.0f}; {control['p50_ms']:.0f}/{control['p99_ms']:.0f} "
            f"({_interval(control)}); {_waits(control)}; {control['provider_gets_per_call']:.2f}"
            + (f"; {spun or 'none (uncapped)'}" if crowded else ""),
            f"one {one['p50_ms']:.0f}/{one['p99_ms']:.0f} ({_interval(one)}); balanced over all "
            f"{shared['p50_ms']:.0f}/{shared['p99_ms']:.0f} ({_interval(shared)})", "", "", None)  # fmt: skip


def _interval(run: dict[str, Any]) -> str:
    low, high = run["p99_interval_ms"]
    return f"{low:.0f}-{high:.0f}"


def _waits(run: dict[str, Any]) -> str:
    replicas = "/".join(f"{w:.1%}" for w in run["core_wait"])
    return f"{replicas}; {run['client_core_wait']:.1%}"


def _against_one(runs: dict[str, Any], suffix: str) -> Iterator[tuple[str, int, dict[str, Any], dict[str, Any]]]:
    """Each mix and replica count run (keys ending in `suffix`), with one replica's run on that mix."""
    for mix in MIXES:
        one = runs.get(f"1:{mix}{suffix}")
        for count in COUNTS:
            run = runs.get(f"{count}:{mix}{suffix}")
            if one is not None and run is not None:
                yield mix, count, one, run


def rows(runs: dict[str, Any], capped: str) -> list[tuple[str, str, str, str, str, bool | None]]:
    """Table rows: measure, value, against one replica, ratio, target, met."""
    out: list[tuple[str, str, str, str, str, bool | None]] = []
    for mix, count, one, run in _against_one(runs, ""):
        ratio = run["calls_per_s"] / one["calls_per_s"] if one["calls_per_s"] else 0.0
        target = {1: "", 2: ">= 1.8x", 4: ">= 3.4x"}[count]
        met = None if count == 1 else ratio >= (1.8 if count == 2 else 3.4)
        cpu = "/".join(f"{c:.2f}" for c in run["replica_cpu_cores"])
        out.append((
            f"{count} replica(s), {mix}, {capped}: calls/s; p50/p99 ms; replica CPU; machine busy; "
            "the simulator's CPU; Redis commands a call (with those its scripts run); provider GETs a call",
            f"{run['calls_per_s']:.0f}; {run['p50_ms']:.0f}/{run['p99_ms']:.0f}; {cpu}; "
            f"{run['machine_busy_cores']:.2f}; {run['provider_cpu_cores']:.2f}; "
            f"{run['redis_commands_per_call']:.2f}; {run['provider_gets_per_call']:.2f}",
            f"{one['calls_per_s']:.0f}; {one['p50_ms']:.0f}/{one['p99_ms']:.0f}",
            f"{ratio:.2f}x" + (" (machine saturated)" if saturated(run) else ""), target, met,
        ))  # fmt: skip
        if count > 1:  # saturated, a closed loop's latency is its clients over the calls a replica answers
            out.append((f"{count} replicas, {mix}, saturated: p99 vs one replica's (its 95% interval; each "
                        "replica at its quota, so this follows the ratio above)",
                        f"{run['p99_ms']:.0f} ms ({_interval(run)})", f"{one['p99_ms']:.0f} ms ({_interval(one)})",
                        "", "", None))  # fmt: skip
        out.append((f"{count} replica(s), {mix}: the share of its time each replica waited for a core (its "
                    "quota's hold aside); the load process", _waits(run), _waits(one), "", "",
                    None))  # fmt: skip
        once = run.get("exactly_once")
        if once:
            out.append(_once_row(f"{count} replica(s), consent", once))
    for mix, count, one, run in _against_one(runs, ":paced"):
        out.append((f"{count} replica(s), {mix}, paced at {run['offered_per_replica']:.0f} calls/s a replica "
                    f"({run['paced_share']:.0%} of one replica's saturated): calls/s answered; p50/p99 ms (p99's "
                    "95% interval); waiting for a core",
                    f"{run['calls_per_s']:.0f}; {run['p50_ms']:.0f}/{run['p99_ms']:.0f} ({_interval(run)}); "
                    f"{_waits(run)}",
                    f"{one['calls_per_s']:.0f}; {one['p50_ms']:.0f}/{one['p99_ms']:.0f} ({_interval(one)})",
                    "", "" if count == 1 else "p99 not above one's",
                    None if count == 1 else run["p99_ms"] <= one["p99_ms"]))  # fmt: skip
        once = run.get("exactly_once")
        if once:
            out.append(_once_row(f"{count} replica(s), consent, paced", once))
    for mix in MIXES:
        single = runs.get(f"1:{mix}:paced")
        control, shared = runs.get(f"{max(COUNTS)}-pinned:{mix}:paced"), runs.get(f"{max(COUNTS)}:{mix}:paced")
        if control and single and shared:
            out.append((f"{max(COUNTS)} replicas, {mix}, paced, each client sending to one replica alone (no "
                        "queue pooled over replicas), a control: calls/s; p50/p99 ms (p99's 95% interval); waiting "
                        "for a core",
                        f"{control['calls_per_s']:.0f}; {control['p50_ms']:.0f}/{control['p99_ms']:.0f} "
                        f"({_interval(control)}); {_waits(control)}",
                        f"one {single['p50_ms']:.0f}/{single['p99_ms']:.0f} ({_interval(single)}); balanced over all "
                        f"{shared['p50_ms']:.0f}/{shared['p99_ms']:.0f} ({_interval(shared)})",
                        "", "", None))  # fmt: skip
    for sharing, what in CONTROLS.items():
        for mix in CONTROL_MIXES[sharing]:
            single, shared = runs.get(f"1:{mix}"), runs.get(f"{max(COUNTS)}:{mix}")
            control = runs.get(f"{control_count(sharing)}-{sharing}:{mix}")
            if control and single and shared:
                out.append(_control_row(sharing, what, mix, control, single, shared))
    once = [run["exactly_once"] for key, run in runs.items() if "-" in key and "exactly_once" in run]
    if once:
        out.append(_once_row("scale-out controls, consent", _summed(once)))
    errors = sum(run["errors"] for run in runs.values())
    out.append(("scale-out: errors in every run", str(errors), "", "", "0", errors == 0))
    return out
