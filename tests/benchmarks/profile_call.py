"""Where one call's time goes: cProfile over many list_snapshots calls, in process, against the simulator app.

Reports the share of the time spent in this package's own code (the rest is the SDK, pydantic, httpx2, the
event loop and the simulator), and our most expensive functions.
"""

from __future__ import annotations

import cProfile
import pstats
from typing import Any

import anyio
from mcp import Client

from .economy import _world

PACKAGE = "vps_snapshots_mcp"


async def _calls(count: int) -> None:
    _, _, server = _world()
    async with Client(server, mode="legacy") as client:
        for _ in range(count):
            await client.call_tool("list_snapshots", {"server_id": 12345})


def profile(calls: int, top: int = 10) -> dict[str, Any]:
    profiler = cProfile.Profile()
    profiler.enable()
    anyio.run(_calls, calls)
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # (file, line, name) -> (cc, nc, tt, ct, callers)
    total = sum(entry[2] for entry in raw.values())
    ours = {key: entry for key, entry in raw.items() if f"/{PACKAGE}/" in key[0] and "/simulator/" not in key[0]}
    ours_time = sum(entry[2] for entry in ours.values())
    ranked = sorted(ours.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return {
        "calls": calls,
        "total_ms_per_call": total / calls * 1000,
        "ours_ms_per_call": ours_time / calls * 1000,
        "ours_share": ours_time / total,
        "top": [
            {"function": f"{key[0].split(f'/{PACKAGE}/')[-1]}:{key[2]}", "us_per_call": entry[2] / calls * 1e6}
            for key, entry in ranked
        ],
    }
