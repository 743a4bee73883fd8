"""CI proves the scale benchmark runs end to end, briefly, and asserts only what is exact: counts, never times."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest

from vps_snapshots_mcp.protocol.published import TOOLS_JSON

from .cgroups import PREFIX, V1_CPU, V2_ROOT, CpuCaps
from .fleet import exactly_once
from .http_load import run_delay_s
from .soak import audited_approvals, growth
from .stdio import FLOOR_TYPED, client, provider_env, simulator


def test_every_confirmed_consent_must_reach_the_provider_exactly_once() -> None:
    confirmed = [("delete", 7), ("restore", 8), ("restore", 8)]
    changes = [["DELETE", "/api/v1/snapshots/7/"], ["POST", "/api/v1/snapshots/8/restore/"]]
    assert exactly_once(confirmed, changes) == {"confirmed": 3, "provider_changes": 2, "missing": 1, "extra": 0}
    twice = [*changes, ["POST", "/api/v1/snapshots/8/restore/"], ["DELETE", "/api/v1/snapshots/7/"]]
    assert exactly_once(confirmed, twice)["extra"] == 1
    created = [*changes, ["POST", "/api/v1/snapshots/8/restore/"], ["POST", "/api/v1/snapshots/"]]
    assert exactly_once(confirmed, created) == {"confirmed": 3, "provider_changes": 3, "missing": 0, "extra": 0}


def test_memory_growth_counts_from_the_first_sample_after_the_settling_time() -> None:
    samples = [
        {"at_s": 0.0, "replica_rss_mb": [50.0, 50.0], "redis_used_mb": 1.0},
        {"at_s": 120.0, "replica_rss_mb": [70.0, 71.0], "redis_used_mb": 3.0},
        {"at_s": 240.0, "replica_rss_mb": [71.5, 71.0], "redis_used_mb": 3.5},
    ]
    found = growth(samples, 120.0)
    assert found["replica_growth_mb"] == [1.5, 0.0] and found["redis_growth_mb"] == 0.5


def test_the_approvals_audited_are_counted_by_event_and_by_where_they_were_decided(tmp_path: Path) -> None:
    def line(outcome: str, approval: str = "", consent: str | None = None) -> str:
        return json.dumps({"outcome": outcome, "consent": consent, "details": {"approval": approval}})

    here, there = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    here.write_text("\n".join([line("requested", "k1"), line("requested", "k2"), line("approved", "k2"),
                               line("executed", consent="approval"), line("executed", consent="token")]))  # fmt: skip
    there.write_text("\n".join([line("approved", "k1"), line("executed", consent="approval")]))
    found = audited_approvals([here, there, tmp_path / "none.jsonl"])
    assert found == {"requested": 2, "approved": 2, "executed": 2, "elsewhere": 1}


def test_the_typed_floor_publishes_our_output_schema_and_its_answer_passes_the_clients_check() -> None:
    published = json.loads(TOOLS_JSON.read_text())
    ours = next(tool["outputSchema"] for tool in published if tool["name"] == "list_snapshots")

    async def listed(url: str, token: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        async with client(FLOOR_TYPED, provider_env(url, token), "legacy") as session:
            tools = await session.list_tools()
            result = await session.call_tool("list_snapshots", {"server_id": 12345})  # the client checks it
            assert not result.is_error
            return tools.tools[0].output_schema, result.structured_content

    with simulator() as (url, token):
        schema, answer = anyio.run(listed, url, token)
    assert schema == ours
    assert answer is not None and [s["id"] for s in answer["snapshots"]] == [801, 798] and answer["count"] == 2


def test_run_delay_is_read_from_every_thread_and_is_nothing_for_a_process_that_is_gone(tmp_path: Path) -> None:
    for thread, fields in (("41", "900 2000000000 5"), ("42", "10 500000000 1"), ("43", "")):  # 43 just ended
        (tmp_path / "41" / "task" / thread).mkdir(parents=True)
        (tmp_path / "41" / "task" / thread / "schedstat").write_text(fields + "\n")
    assert run_delay_s(41, proc=tmp_path) == 2.5
    assert run_delay_s(7, proc=tmp_path) == 0.0  # gone
    assert run_delay_s() >= 0.0 and run_delay_s(os.getpid()) >= 0.0  # the real /proc reads


@pytest.mark.slow
@pytest.mark.benchmark
@pytest.mark.timeout(600)
def test_the_scale_benchmark_runs_and_reports_every_measure(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.scale", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=Path(__file__).parent.parent.parent,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "scale.md").read_text()
    for measure in ("1 replica(s), consent", "2 replica(s), consent", "exactly one each",
                    "team configuration, 4 clients", "team configuration, one call", "soak, ", "audit verify",
                    "stdio, one call, 2025-11-25", "stdio, cold start", "team part on its own: OAuth",
                    "servers' own share", "output schema", "output-schema check off", "timed within the checked calls",
                    "answering under our output schema", "waited for a core",
                    "stdio, tools/list result, 2026-07-28", "saturated: p99 vs one replica's (its 95% interval",
                    "consent, paced at", "p99 not above one's", "consent, paced: confirmed",
                    "the TypeScript SDK's client"):  # fmt: skip
        assert measure in table and measure in done.stdout, measure
    assert "Redis " in table.splitlines()[0] and " cores" in table.splitlines()[0]
    report = json.loads((tmp_path / "scale.json").read_text())
    for run in report["scale_out"].values():
        assert run["errors"] == 0, run["error_samples"]
        assert all(0.0 <= wait < 1.0 for wait in [*run["core_wait"], run["client_core_wait"]]), run
        once = run["exactly_once"]
        assert once["confirmed"] > 0 and once["missing"] == 0 and once["extra"] == 0, once
    team = report["team"]
    assert all(team[k][m]["errors"] == 0 for k in ("team", "bare", "floor") for m in ("load", "one_call")), team
    soaked = report["soak"]
    assert soaked["errors"] == 0, soaked["error_samples"]
    assert soaked["created"] > 0 and soaked["exactly_once"]["missing"] == soaked["exactly_once"]["extra"] == 0
    assert all(code == 0 for code, _ in soaked["audit_verify"]), soaked["audit_verify"]
    assert all(lines > 0 for lines in soaked["audit_lines"])
    assert report["stdio"]["tools_list_2025-11-25"]["ours"] <= 7168
    assert report["stdio"]["tools_list_2026-07-28"]["ours"] <= 7168
    checked = report["stdio"]["output_check_us"]  # the client's output-schema check, ours and the floor's
    assert checked["ours"] > checked["floor"] > 0, checked
    within = report["stdio"]["per_call_2025-11-25"]  # the same check, timed within the calls
    assert within["check_us_ours"] > within["check_us_floor"] > 0, within
    # The typed floor publishes our output schema: the client's check there costs what it costs on ours.
    assert within["typed_floor_median_ms"] > 0 and within["check_us_typed_floor"] > 2 * within["check_us_floor"]
    typescript = report["stdio"]["per_call_ts"]  # installed with the CI's npm tools, which run before this
    assert typescript is not None and typescript["protocol"] == "2025-11-25", typescript
    assert typescript["ours_median_ms"] > 0 and typescript["floor_median_ms"] > 0, typescript
    assert soaked["resumed"] > 0  # a stream dropped and resumed
    audited = soaked["audit_approvals"]  # a person approved on the page, on the other replica, and it ran once
    assert soaked["approved"] > 0 and audited["approved"] == audited["executed"] == soaked["approved"], audited
    assert audited["elsewhere"] == audited["approved"] and audited["requested"] >= audited["approved"], audited
    for root in (V1_CPU, V2_ROOT):  # every cgroup the run made is gone
        assert not list(root.glob(f"{PREFIX}*"))


def one_slice(caps: CpuCaps | None, sharing: str, mix: str, counts: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """A control's processes started, one slice of light load on them, and stopped."""
    from .scale_out import _processes, _slice, _stand, control_count

    count = control_count(sharing, counts)
    with ExitStack() as stack:
        standing = _stand(stack, caps, count, _processes(sharing), cpus=0.25, servers=2 * max(counts))
        return _slice(standing, caps, mix, sharing=sharing, cpus=0.25, clients=2 * count, seconds=2.0, warmup_s=0.5)


@pytest.mark.benchmark
@pytest.mark.timeout(300)
@pytest.mark.parametrize("sharing", ["pinned", "alone", "crowded"])
def test_the_scale_out_controls_run_and_count_every_redis_they_start(sharing: str) -> None:
    from .scale_out import control_count

    count = control_count(sharing, (1, 2))
    run = one_slice(None, sharing, "lists")
    assert run["errors"] == 0 and run["calls"] > 0, run["error_samples"]
    # A list sends no Redis command: the INFO the count itself sends is taken out on each Redis the run started.
    assert run["redis_commands"] == 0
    assert len(run["core_wait"]) == count and run["throttled_s"] == []  # uncapped: no quota held them
    assert run["spinner_cpu_cores"] == []  # uncapped, no spinner runs (a crowded run included)


@pytest.mark.benchmark
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mix", ["lists", "consent"])
def test_the_crowded_control_runs_three_spinners_each_held_to_its_quota_and_removes_their_groups(mix: str) -> None:
    caps = CpuCaps()
    if caps.root is None:
        pytest.skip(caps.unavailable)
    run = one_slice(caps, "crowded", mix)
    assert run["errors"] == 0 and run["calls"] > 0, run["error_samples"]
    if mix == "consent":  # one provider's log: every confirmed change in it once
        once = run["exactly_once"]
        assert once["confirmed"] > 0 and once["missing"] == once["extra"] == 0, once
    assert len(run["spinner_cpu_cores"]) == 3 and all(0 < cpu <= 0.3 for cpu in run["spinner_cpu_cores"]), run
    for root in (V1_CPU, V2_ROOT):
        assert not list(root.glob(f"{PREFIX}{os.getpid()}-*"))


def listing(api: str, server: int) -> dict[str, Any]:
    """The simulator's answer to a list of one server's snapshots (its `count` and `results`)."""
    import httpx2

    from .fleet import PROVIDER_TOKEN

    answer = httpx2.get(f"{api}/snapshots/", params={"server_id": server}, timeout=10,
                        headers={"Authorization": f"Bearer {PROVIDER_TOKEN}"})  # fmt: skip
    result: dict[str, Any] = answer.json()
    return result


@pytest.mark.benchmark
@pytest.mark.timeout(300)
def test_slices_on_standing_processes_each_check_only_their_own_changes_and_the_account_keeps_its_size() -> None:

    from .fleet import provider_changes
    from .light_load import SNAPSHOTS_EACH
    from .provider_process import FIRST_SERVER
    from .scale_out import _slice, _stand

    with ExitStack() as stack:
        standing = _stand(stack, None, 2, "", cpus=0.25, servers=4)
        runs = [_slice(standing, None, "consent", sharing="", cpus=0.25, clients=4, seconds=2.0, warmup_s=0.5,
                       seed=str(number)) for number in range(2)]  # fmt: skip
        log = provider_changes(standing.apis[0])
        held = [listing(standing.apis[0], FIRST_SERVER + index)["count"] for index in range(4)]
    for run in runs:  # the second slice's check is against its own changes, not the first's too
        once = run["exactly_once"]
        assert run["errors"] == 0 and once["confirmed"] > 0 and once["missing"] == once["extra"] == 0, (run, once)
        # CPU and waits over the measured window (2 s), not the load process's start, warm-up (0.5 s) and
        # wind-down; the window opens when the watcher wakes at its start, which may be a little late.
        assert abs(run["watched_s"] - 2.0) < 0.25 and len(run["replica_cpu_cores"]) == 2, run["watched_s"]
    assert sum(run["exactly_once"]["provider_changes"] for run in runs) == len(log["changes"])
    assert standing.changes_seen == [len(log["changes"])]
    deleted = sum(method == "DELETE" for method, _ in log["changes"])
    assert deleted > 0 and held == [SNAPSHOTS_EACH] * 4  # every deleted snapshot replaced


@pytest.mark.timeout(60)
def test_a_replenishing_simulator_replaces_a_load_servers_deleted_snapshot_and_no_other() -> None:
    import httpx2

    from .fleet import PROVIDER_TOKEN, provider
    from .provider_process import FIRST_SERVER, REPLACEMENTS_FROM, snapshot_ids

    def ids(api: str, server: int) -> list[int]:
        return sorted(int(s["id"]) for s in listing(api, server)["results"])

    auth = {"Authorization": f"Bearer {PROVIDER_TOKEN}"}
    for replenish in (True, False):
        with provider(servers=1, snapshots_each=2, replenish=replenish) as api:
            first, second = snapshot_ids(0, 2)
            assert httpx2.delete(f"{api}/snapshots/{second}/", headers=auth, timeout=10).status_code == 204
            assert httpx2.delete(f"{api}/snapshots/{second}/", headers=auth, timeout=10).status_code == 404
            assert httpx2.delete(f"{api}/snapshots/798/", headers=auth, timeout=10).status_code == 204
            assert ids(api, FIRST_SERVER) == ([first, REPLACEMENTS_FROM] if replenish else [first])
            assert ids(api, 12345) == [801]  # the documented account's snapshot is not replaced


@pytest.mark.benchmark
@pytest.mark.timeout(300)
def test_a_pinned_client_sends_to_its_replica_alone_and_a_balanced_one_to_every_replica(tmp_path: Path) -> None:
    from ..support.redis_server import free_port, running_redis
    from .fleet import AUTH_TOKEN, drive, provider, replica_command, replicas

    with ExitStack() as stack:
        redis = stack.enter_context(running_redis(tmp_path))
        api = stack.enter_context(provider(servers=2, snapshots_each=2))
        command = replica_command(api, redis.url, "--stateless", "--consent", "token")
        command[1]["VPS_MCP_AUTH_TOKEN"] = AUTH_TOKEN
        (live,) = stack.enter_context(replicas(stack, 1, command, None, 0.25))
        nobody = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens: a call sent there is an error
        # Client 1 of two URLs: pinned to the second, so a pinning that took the first URL would fail here.
        spec = {"urls": [nobody, live.url], "clients": 1, "first_client": 1, "seconds": 1.0, "warmup_s": 0.0,
                "mix": "lists", "bearer": AUTH_TOKEN, "lean": True}  # fmt: skip
        pinned, balanced = drive(spec | {"pinned": True}), drive(spec)
    assert pinned["errors"] == 0 and pinned["calls"] > 0, pinned["error_samples"]
    assert balanced["errors"] > 0 and balanced["calls"] > 0  # taken in turn: both replicas
    assert set(balanced["error_samples"]) == {"list_snapshots: LeanError"}, balanced["error_samples"]


def test_the_table_has_a_row_for_every_control_and_every_controls_consent_once() -> None:
    from .scale_out import CONTROLS, rows

    def run(count: int, consent: bool, *, spinners: int = 0, extra: int = 0) -> dict[str, Any]:
        return {"calls_per_s": 10.0 * count, "p50_ms": 100.0, "p99_ms": 200.0, "p99_interval_ms": [199.0, 201.0],
                "replica_cpu_cores": [0.24] * count, "machine_busy_cores": 1.0, "provider_cpu_cores": 0.1,
                "redis_commands_per_call": 0.0, "provider_gets_per_call": 0.2, "core_wait": [0.01] * count,
                "client_core_wait": 0.02, "errors": 0, "spinner_cpu_cores": [0.25] * spinners}  | (
                {"exactly_once": {"confirmed": 5, "provider_changes": 5 + extra, "missing": 0, "extra": extra}}
                if consent else {})  # fmt: skip

    runs = {f"{n}:{mix}": run(n, mix == "consent") for n in (1, 2, 4) for mix in ("lists", "consent")}
    runs |= {"4-pinned:lists": run(4, False), "4-alone:lists": run(4, False),
             "1-crowded:lists": run(1, False, spinners=3), "1-crowded:consent": run(1, True, spinners=3)}  # fmt: skip
    table = rows(runs, "capped")
    for what in CONTROLS.values():
        assert sum(what in row[0] for row in table) == (2 if "spinners" in what else 1), what
    assert any(row[0].startswith("consent, one replica beside") and row[1].endswith("0.25/0.25/0.25")
               for row in table)  # fmt: skip
    once = next(row for row in table if row[0].startswith("scale-out controls, consent"))
    assert once[1:] == ("5 / 5 / 0 / 0", "", "", "exactly one each", True)
    runs["1-crowded:consent"] = run(1, True, spinners=3, extra=1)  # a change the provider saw twice
    assert next(row for row in rows(runs, "capped") if row[0].startswith("scale-out controls"))[5] is False


def test_the_p99_target_is_judged_on_the_paced_runs_and_saturated_p99_is_shown_without_a_verdict() -> None:
    from .scale_out import rows

    def run(count: int, p99: float, *, consent: bool = False) -> dict[str, Any]:
        return {"calls_per_s": 10.0 * count, "p50_ms": 10.0, "p99_ms": p99, "p99_interval_ms": [p99 - 1, p99 + 1],
                "replica_cpu_cores": [0.24] * count, "machine_busy_cores": 1.0, "provider_cpu_cores": 0.1,
                "redis_commands_per_call": 0.0, "provider_gets_per_call": 0.2, "core_wait": [0.01] * count,
                "client_core_wait": 0.02, "errors": 0, "offered_per_replica": 5.0, "paced_share": 0.5} | (
                {"exactly_once": {"confirmed": 3, "provider_changes": 3, "missing": 0, "extra": 0}}
                if consent else {})  # fmt: skip

    runs = {"1:lists": run(1, 100.0), "4:lists": run(4, 300.0),  # saturated: far above, no verdict
            "1:lists:paced": run(1, 50.0), "2:lists:paced": run(2, 50.0), "4:lists:paced": run(4, 51.0),
            "1:consent:paced": run(1, 80.0, consent=True)}  # fmt: skip
    table = rows(runs, "capped")
    saturated = next(row for row in table if row[0].startswith("4 replicas, lists, saturated: p99"))
    assert saturated[1].startswith("300 ms") and saturated[4:] == ("", None)
    paced = {row[0].split(",")[0]: row for row in table if ", lists, paced at 5 calls/s a replica (50%" in row[0]}
    assert paced["1 replica(s)"][5] is None and paced["2 replica(s)"][5] is True and paced["4 replica(s)"][5] is False
    assert paced["4 replica(s)"][4] == "p99 not above one's" and paced["4 replica(s)"][1].startswith("40; 10/51 ")
    assert any(row[0] == "1 replica(s), consent, paced: confirmed / provider changes / missing / extra" and row[5]
               for row in table)  # fmt: skip


@pytest.mark.benchmark
@pytest.mark.timeout(300)
def test_a_run_killed_with_sigterm_stops_every_process_it_started_and_removes_its_cgroups(tmp_path: Path) -> None:
    import signal
    import time

    def processes() -> dict[int, tuple[int, str]]:  # pid -> (parent, start time), for every process there is
        found = {}
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (proc / "stat").read_text().rpartition(")")[2].split()
                found[int(proc.name)] = (int(fields[1]), fields[19])
        return found

    def descendants(root: int) -> set[tuple[int, str]]:  # (pid, start time): a reused pid is another process
        table, found, todo = processes(), set(), [root]
        while todo:
            parent = todo.pop()
            children = [pid for pid, (ppid, _) in table.items() if ppid == parent]
            found |= {(pid, table[pid][1]) for pid in children}
            todo += children
        return found

    command = [sys.executable, "-m", "tests.benchmarks.scale", "--quick", "--out", str(tmp_path)]
    command += ["--skip", "team", "--skip", "soak", "--skip", "stdio"]
    run = subprocess.Popen(command, cwd=Path(__file__).parent.parent.parent, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline, started = time.monotonic() + 120, set[tuple[int, str]]()
        while len(started) < 8:  # the first configurations' replicas, Redis servers and simulators
            assert run.poll() is None and time.monotonic() < deadline, "the run ended before it started them"
            time.sleep(0.1)
            started = descendants(run.pid)
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        run.kill()
    alive = processes()
    left = [pid for pid, began in started if alive.get(pid, (0, ""))[1] == began]
    assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]
    for root in (V1_CPU, V2_ROOT):
        assert not list(root.glob(f"{PREFIX}{run.pid}-*"))
