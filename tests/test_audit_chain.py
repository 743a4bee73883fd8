"""The audit trail is a hash chain: a real trail verifies, and any one line changed, removed or reordered is named.

The trail is made by real calls (the in-process server on the simulator); it is then tampered with as bytes
and checked by `verify` and by the real command line (`vps-snapshots-mcp audit verify FILE`). The chain
continues across a restart and through two processes appending to one file at once.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from vps_snapshots_mcp.audit import Attempt, AuditLog
from vps_snapshots_mcp.audit_chain import GENESIS, seal, verify
from vps_snapshots_mcp.simulator import Fault, ManualClock, seeded_state

from .support.mcp_client import preview_token
from .support.world import NOW, SimTime, server_factory

LINES = 9
"""The lines the real trail has (its calls are in `calls`)."""


async def calls(client: Client, inject: Callable[[Fault], object]) -> None:
    """Every outcome an audited call can have, as in the hardening test: nine lines."""
    await client.call_tool("create_snapshot", {"server_id": 12345, "name": "before-update"})
    await client.call_tool("create_snapshot", {"server_id": 12345, "name": "before-update"})
    await client.call_tool("create_snapshot", {"server_id": 34567, "name": "full"})
    token = await preview_token(client, "delete_snapshot", 798)
    await client.call_tool("delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": token})
    await client.call_tool("restore_snapshot", {"snapshot_id": 801, "confirm": True, "confirmation_token": "v1.x.y"})
    inject(Fault.error(503, method="POST"))
    token = await preview_token(client, "restore_snapshot", 801)
    await client.call_tool("restore_snapshot", {"snapshot_id": 801, "confirm": True, "confirmation_token": token})
    await client.call_tool("delete_snapshot", {"snapshot_id": 0})
    await client.call_tool("list_snapshots", {})  # not audited


def run_calls(path: Path) -> None:
    """A server on a fresh simulator making the nine lines on `path`, in a run of its own."""

    async def main() -> None:
        clock = ManualClock(NOW)
        provider = seeded_state(clock=clock, snapshot_seconds=240, restore_seconds=600)
        make = server_factory(provider, SimTime(clock))
        async with Client(make(audit_log=str(path), consent="token")) as client:
            await calls(client, provider.inject)

    anyio.run(main)


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("trail") / "audit.jsonl"
    run_calls(path)
    data = path.read_bytes()
    assert data.count(b"\n") == LINES
    return data


def lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def resealed(line: bytes, **changes: Any) -> bytes:
    """The line with fields changed and its own hash made right again: a careful forger's edit."""
    record = json.loads(line)
    seq, prev = record.pop("seq"), record.pop("prev")
    record.pop("hash")
    return seal({**record, **changes}, seq, prev).rstrip(b"\n")


EVERY_LINE = list(range(1, LINES + 1))
BUT_THE_LAST = EVERY_LINE[:-1]


# --- a real trail verifies ---------------------------------------------------------------------------------


def test_a_real_trail_verifies_and_every_line_is_chained(trail: bytes) -> None:
    verdict = verify(trail)
    assert verdict.ok, verdict.message
    assert verdict.message.startswith(f"{LINES} lines, chain intact; last line {LINES} hash ")
    records = [json.loads(line) for line in lines_of(trail)]
    assert [r["seq"] for r in records] == EVERY_LINE
    assert records[0]["prev"] == GENESIS
    assert all(r["prev"] == before["hash"] for before, r in itertools.pairwise(records))
    assert all(list(r)[-3:] == ["seq", "prev", "hash"] for r in records)


# --- tampering: the first line changed, removed or reordered is named -------------------------------------


@pytest.mark.parametrize("number", EVERY_LINE)
def test_an_edited_line_is_named(trail: bytes, number: int) -> None:
    lines = lines_of(trail)
    lines[number - 1] = lines[number - 1].replace(b'"outcome":"', b'"outcome":"x', 1)
    verdict = verify(joined(lines))
    assert not verdict.ok and verdict.message == f"line {number} was changed: it does not match its hash"


@pytest.mark.parametrize("number", BUT_THE_LAST)
def test_an_edited_line_with_its_own_hash_remade_is_named_by_the_next_line(trail: bytes, number: int) -> None:
    lines = lines_of(trail)
    lines[number - 1] = resealed(lines[number - 1], outcome="previewed", server_id=1)
    verdict = verify(joined(lines))
    assert (
        not verdict.ok
        and verdict.message == f"line {number} was changed: line {number + 1} chains from a different line"
    )


@pytest.mark.parametrize("number", BUT_THE_LAST)
def test_a_removed_line_is_named(trail: bytes, number: int) -> None:
    lines = lines_of(trail)
    del lines[number - 1]
    verdict = verify(joined(lines))
    assert not verdict.ok
    assert verdict.message == f"line {number}: 1 line removed before it (it was written as line {number + 1})"


def test_the_last_lines_removed_are_seen_only_against_a_head_kept_elsewhere(trail: bytes) -> None:
    # Nothing comes after the newest line to vouch for it: verify says how far the chain goes, to compare.
    cut = verify(joined(lines_of(trail)[:-1]))
    assert cut.ok and cut.message.startswith(f"{LINES - 1} lines, chain intact; last line {LINES - 1} hash ")
    assert cut.message.split()[-1] != verify(trail).message.split()[-1]


@pytest.mark.parametrize("number", BUT_THE_LAST)
def test_two_lines_swapped_are_named(trail: bytes, number: int) -> None:
    lines = lines_of(trail)
    lines[number - 1], lines[number] = lines[number], lines[number - 1]
    verdict = verify(joined(lines))
    assert not verdict.ok and verdict.message == f"line {number} is out of order: it was written as line {number + 1}"


def test_a_line_repeated_is_named(trail: bytes) -> None:
    lines = lines_of(trail)
    lines.insert(4, lines[2])
    verdict = verify(joined(lines))
    assert not verdict.ok and verdict.message == "line 5 is out of order or repeated: it was written as line 3"


def test_a_line_added_at_the_end_is_named(trail: bytes) -> None:
    verdict = verify(trail + b'{"tool":"delete_snapshot","outcome":"executed"}\n')
    assert not verdict.ok and verdict.message == f"line {LINES + 1} was changed: it does not match its hash"


@pytest.mark.parametrize("keep", [1, 40, -2, -1])
def test_a_last_line_cut_short_is_reported_as_truncated(trail: bytes, keep: int) -> None:
    lines = lines_of(trail)
    cut = joined(lines[:-1]) + lines[-1][:keep]
    verdict = verify(cut)
    assert not verdict.ok
    assert verdict.message == f"line {LINES}: truncated: the last line is cut short (a write interrupted)"


def test_a_line_cut_short_by_a_crash_is_chained_over_by_the_next_writer(trail: bytes, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = lines_of(trail)
    path.write_bytes(joined(lines[:-1]) + lines[-1][:50])  # the crash: the last write cut short

    async def append() -> None:
        log = AuditLog(str(path), now=lambda: NOW)
        await log.write(Attempt(tool="delete_snapshot", outcome="refused", error_code="forbidden"))
        log.close()

    anyio.run(append)
    verdict = verify(path.read_bytes())
    assert verdict.ok, verdict.message
    assert verdict.message.startswith(f"{LINES + 1} lines, chain intact")
    assert verdict.message.endswith(
        f"not covered by the chain (cut short by a crash, or written before it): lines {LINES}"
    )


def test_a_trail_written_before_the_chain_is_continued(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"tool":"create_snapshot","outcome":"executed"}\n' * 2)

    async def append() -> None:
        log = AuditLog(str(path), now=lambda: NOW)
        for _ in range(2):
            await log.write(Attempt(tool="create_snapshot", outcome="executed"))
        log.close()

    anyio.run(append)
    verdict = verify(path.read_bytes())
    assert verdict.ok and verdict.message.endswith("written before it): lines 1-2"), verdict.message
    assert [json.loads(line).get("seq") for line in lines_of(path.read_bytes())] == [None, None, 3, 4]


# --- the chain continues across a restart and through two processes at once -------------------------------


def test_the_chain_continues_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    run_calls(path)  # one server, then another on the same file
    run_calls(path)
    verdict = verify(path.read_bytes())
    assert verdict.ok and verdict.message.startswith(f"{2 * LINES} lines, chain intact"), verdict.message


WRITER = textwrap.dedent(
    """
    import sys, time, anyio
    from datetime import datetime, UTC
    from pathlib import Path
    from vps_snapshots_mcp.audit import Attempt, AuditLog
    path, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    async def main():
        log = AuditLog(path, now=lambda: datetime.now(UTC))
        (go.parent / f"ready-{name}").touch()  # opened: the test starts both only when both are here
        while not go.exists():
            time.sleep(0.001)
        for n in range(count):
            await log.write(Attempt(tool="create_snapshot", snapshot_name=f"{name}-{n}", outcome="executed"))
    anyio.run(main)
    """
)


def test_two_processes_appending_to_one_file_keep_one_chain(tmp_path: Path) -> None:
    path, go, count = tmp_path / "audit.jsonl", tmp_path / "go", 150
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(count), str(go)]) for name in ("a", "b")
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{name}").exists() for name in ("a", "b")):  # a start has no event to wait on
        assert time.monotonic() < deadline and all(w.poll() is None for w in writers), "a writer did not start"
        time.sleep(0.01)
    go.touch()  # both start writing at once, each already past its start-up
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    verdict = verify(path.read_bytes())
    assert verdict.ok and verdict.message.startswith(f"{2 * count} lines, chain intact"), verdict.message
    names = [json.loads(line)["snapshot_name"] for line in lines_of(path.read_bytes())]
    assert sorted(names) == sorted(f"{w}-{n}" for w in "ab" for n in range(count))
    assert names != sorted(names, key=lambda n: n[0]), "the writers did not interleave: nothing was tested"


def test_two_writers_with_long_lines_take_turns_on_one_file(tmp_path: Path) -> None:
    # Each writer reads back the other's last line, longer than one read from the end, before its own.
    path = tmp_path / "audit.jsonl"

    async def take_turns() -> None:
        first, second = (AuditLog(str(path), now=lambda: NOW) for _ in range(2))
        for n in range(6):
            writer = first if n % 2 == 0 else second
            await writer.write(Attempt(tool="create_snapshot", outcome="executed", details={"pad": "x" * 9000 * n}))
        first.close()
        second.close()

    anyio.run(take_turns)
    verdict = verify(path.read_bytes())
    assert verdict.ok and verdict.message.startswith("6 lines, chain intact"), verdict.message


def test_a_long_trail_written_before_the_chain_is_counted_to_its_start(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"tool":"create_snapshot","outcome":"executed","details":{}}\n' * 500)  # 30 KB, no chain

    async def append() -> None:
        log = AuditLog(str(path), now=lambda: NOW)
        await log.write(Attempt(tool="create_snapshot", outcome="executed"))
        log.close()

    anyio.run(append)
    assert json.loads(lines_of(path.read_bytes())[-1])["seq"] == 501
    assert verify(path.read_bytes()).ok


# --- the command line ------------------------------------------------------------------------------------


def audit_verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vps_snapshots_mcp", "audit", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_audit_verify_on_the_command_line(trail: bytes, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(trail)
    intact = audit_verify(path)
    assert intact.returncode == 0, intact.stderr
    [line] = intact.stdout.splitlines()
    assert line.startswith(f"{path}: ok: {LINES} lines, chain intact; last line {LINES} hash ")

    lines = lines_of(trail)
    lines[3] = lines[3].replace(b'"tool":"', b'"tool":"x', 1)
    path.write_bytes(joined(lines))
    edited = audit_verify(path)
    assert (edited.returncode, edited.stdout) == (
        1,
        f"{path}: BROKEN: line 4 was changed: it does not match its hash\n",
    )

    path.write_bytes(trail[:-10])
    cut = audit_verify(path)
    assert cut.returncode == 1 and cut.stdout.endswith(
        f"BROKEN: line {LINES}: truncated: the last line is cut short (a write interrupted)\n"
    )

    missing = audit_verify(tmp_path / "nothing.jsonl")
    assert missing.returncode == 2 and "cannot read the audit trail" in missing.stderr and missing.stdout == ""


def test_an_empty_trail_verifies() -> None:
    assert verify(b"").ok and verify(b"").message == "empty: no lines"
