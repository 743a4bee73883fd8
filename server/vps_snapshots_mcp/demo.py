"""A scripted runbook through a real MCP client, against the server over stdio in sandbox mode.

    list → create `before-update`, waiting with progress → the same create again
    (no duplicate) → restore preview (the warning) → confirmed restore → delete
    an old snapshot with confirmation → final list

It is what an assistant does when an operator says "snapshot web-server-01
before the update, then roll back", shown step by step in the terminal.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult

SERVER_ID = 12345
OLD_SNAPSHOT_ID = 798


class DemoFailed(Exception):
    pass


def _say(text: str = "") -> None:
    print(text, flush=True)


def _step(number: int, title: str) -> None:
    _say()
    _say(f"── {number}. {title} " + "─" * max(0, 60 - len(title)))


def _show_call(tool: str, arguments: dict[str, Any]) -> None:
    shown = {k: (v[:16] + "…" if k == "confirmation_token" and isinstance(v, str) else v) for k, v in arguments.items()}
    _say(f"   → {tool}({', '.join(f'{k}={v!r}' for k, v in shown.items())})")


async def _show_progress(progress: float, total: float | None, message: str | None) -> None:
    _say(f"     … {message}")


async def _call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    _show_call(tool, arguments)
    result: CallToolResult = await client.call_tool(tool, arguments, progress_callback=_show_progress)
    if result.is_error:
        text = " ".join(getattr(block, "text", "") for block in result.content)
        raise DemoFailed(f"{tool} failed: {text}")
    return dict(result.structured_content or {})


def _table(snapshots: list[dict[str, Any]]) -> None:
    _say(f"   {'id':>5}  {'name':<28} {'status':<12} {'size':>8}  created")
    for snap in snapshots:
        size = f"{snap['size_mb']} MB" if snap.get("size_mb") is not None else "-"
        _say(f"   {snap['id']:>5}  {snap['name'][:28]:<28} {snap['status']:<12} {size:>8}  {snap.get('created_at')}")


def _wrapped(text: str) -> None:
    for line in textwrap.wrap(text, width=76):
        _say(f"   │ {line}")


class _Runbook:
    """The runbook's client, and what to do after each of its calls (the benchmark counts requests per step)."""

    def __init__(self, client: Client, after_call: Callable[[], None]) -> None:
        self.client, self.after_call = client, after_call

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        found = await _call(self.client, tool, arguments)
        self.after_call()
        return found


async def play_runbook(client: Client, *, after_call: Callable[[], None] = lambda: None) -> None:
    """The demo's eight calls: list, create and wait, create again, restore (preview, confirm), delete (same), list."""
    runbook = _Runbook(client, after_call)
    _step(1, f"What snapshots does server {SERVER_ID} have?")
    listing = await runbook.call("list_snapshots", {"server_id": SERVER_ID})
    _table(listing["snapshots"])

    _step(2, "Snapshot it before the update, waiting until it is completed")
    arguments = {"server_id": SERVER_ID, "name": "before-update", "description": "Before the system update"}
    created = await runbook.call("create_snapshot", {**arguments, "wait": True})
    snapshot = created["snapshot"]
    if snapshot["status"] != "completed":
        raise DemoFailed(f"snapshot {snapshot['id']} is {snapshot['status']}")
    _say(f"   {created['message']}")

    _step(3, "Asked again (say, after a dropped connection), it makes no duplicate")
    again = await runbook.call("create_snapshot", arguments)
    _say(f"   already_exists={again['already_exists']}: {again['message']}")

    _say()
    _say("   (the update is applied... and breaks the server; time to roll back)")

    _step(4, "Restore: first a preview, which changes nothing")
    preview = await runbook.call("restore_snapshot", {"snapshot_id": snapshot["id"]})
    _say(f"   status: {preview['status']}; token expires {preview['expires_at']}")
    _wrapped(preview["warning"])
    _say("   The assistant shows this to the operator, who answers: yes, restore it.")

    _step(5, "Confirmed restore, with the token from the preview")
    restored = await runbook.call(
        "restore_snapshot",
        {"snapshot_id": snapshot["id"], "confirm": True, "confirmation_token": preview["confirmation_token"]},
    )
    server = restored["server"]
    _say(f"   {restored['status']}: server {server['name']} ({server['id']}) is {server['status']}")
    _say(f"   {restored['message']}")

    _step(6, f"Clean up: delete the old snapshot {OLD_SNAPSHOT_ID}, with confirmation")
    delete_preview = await runbook.call("delete_snapshot", {"snapshot_id": OLD_SNAPSHOT_ID})
    _wrapped(delete_preview["warning"])
    _say("   The operator agrees.")
    deleted = await runbook.call(
        "delete_snapshot",
        {
            "snapshot_id": OLD_SNAPSHOT_ID,
            "confirm": True,
            "confirmation_token": delete_preview["confirmation_token"],
        },
    )
    _say(f"   {deleted['status']}: {deleted['message']}")

    _step(7, "Final list")
    listing = await runbook.call("list_snapshots", {"server_id": SERVER_ID})
    _table(listing["snapshots"])


async def _main(sandbox_seconds: float) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "vps_snapshots_mcp",
            "--sandbox",
            "--sandbox-seconds",
            str(sandbox_seconds),
            "--log-level",
            "WARNING",
        ],
    )
    _say("vps-snapshots-mcp demo: a real MCP client drives the server over stdio, in sandbox mode")
    _say("(a built-in provider simulator; no real server is touched).")
    async with Client(params) as client:
        tools = await client.list_tools()
        _say(f"Connected ({client.protocol_version}); tools: {', '.join(t.name for t in tools.tools)}")
        await play_runbook(client)
    _say()
    _say("Done: every destructive step needed a preview and a confirmation token bound to its snapshot.")


def run_demo(*, sandbox_seconds: float = 4.0) -> int:
    try:
        anyio.run(_main, sandbox_seconds)
    except DemoFailed as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


__all__ = ["run_demo"]
