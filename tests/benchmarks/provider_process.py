"""The provider simulator as its own (uncapped) process, with its request log readable over HTTP.

    python -m tests.benchmarks.provider_process TOKEN SERVERS SNAPSHOTS_EACH SNAPSHOT_SECONDS [replenish]

Prints its API URL on the first line once it listens. Besides the seeded account, servers 100001.. each hold
SNAPSHOTS_EACH completed snapshots (ids 1_000_000 + server index * 100 + n), so every load client can delete and
restore its own snapshots without contention. Restores finish at once (a server is never left `restoring`).
With `replenish`, each of those servers' snapshots that is deleted is replaced at once by a new one on the same
server (ids from `REPLACEMENTS_FROM` up): the account stays the same size however long a load deletes, so a
look-up before a change (which lists the whole account) costs the same at the end of a run as at its start.

`GET /_bench/log` answers the requests that changed something (every POST and DELETE, in order, as
`[method, path]`) and how many GETs there were: the exact provider side of "one change per confirmed consent";
and the CPU seconds the simulator has used (it is one process, shared by every replica), and its pid.
Only changes are kept, so a long soak does not grow the simulator.
"""

from __future__ import annotations

import os
import re
import sys
import time
from datetime import UTC, datetime
from itertools import count
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vps_snapshots_mcp.simulator import API_PREFIX, RecordedRequest, create_app, seeded_state
from vps_snapshots_mcp.simulator.serve import bind_socket, serve_forever
from vps_snapshots_mcp.simulator.state import ProviderState, SimServer, SimSnapshot

FIRST_SERVER = 100_001
REPLACEMENTS_FROM = 5_000_000
DELETE_PATH = re.compile(rf"{API_PREFIX}/snapshots/(\d+)/")


def snapshot_ids(server_index: int, count: int) -> list[int]:
    """The seeded snapshots of the server_index-th extra server (0-based)."""
    return [1_000_000 + server_index * 100 + n for n in range(count)]


class ChangesOnly(list[RecordedRequest]):
    """The simulator's request log, keeping POSTs and DELETEs and counting the rest."""

    gets = 0

    def append(self, request: RecordedRequest) -> None:
        if request.method in ("POST", "DELETE"):
            super().append(request)
        else:
            self.gets += 1


def replenishing(provider: ASGIApp, state: ProviderState) -> ASGIApp:
    """`provider`, where a load server's snapshot that a DELETE removed is replaced by a new one on its server."""
    made = count(REPLACEMENTS_FROM)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        deleting = scope["type"] == "http" and scope["method"] == "DELETE" and DELETE_PATH.fullmatch(scope["path"])
        gone = state.snapshots.get(int(deleting[1])) if deleting else None
        await provider(scope, receive, send)
        if gone is not None and gone.server_id >= FIRST_SERVER and gone.id not in state.snapshots:
            new = next(made)
            state.snapshots[new] = SimSnapshot(id=new, server_id=gone.server_id, name=f"seed-{new}",
                                               created_at=datetime.now(UTC), size_mb=1000)  # fmt: skip

    return app


def app(
    token: str, servers: int, snapshots_each: int, snapshot_seconds: float, *, replenish: bool = False
) -> Starlette:
    state = seeded_state(snapshot_seconds=snapshot_seconds, restore_seconds=0.0)
    log = ChangesOnly()
    state.requests = log
    made = datetime(2026, 1, 1, tzinfo=UTC)
    for index in range(servers):
        server_id = FIRST_SERVER + index
        state.servers[server_id] = SimServer(server_id, f"bench-{index}", disk_mb=1024)
        for snapshot_id in snapshot_ids(index, snapshots_each):
            state.snapshots[snapshot_id] = SimSnapshot(
                id=snapshot_id, server_id=server_id, name=f"seed-{snapshot_id}", created_at=made, size_mb=1000
            )

    async def changes(request: Request) -> JSONResponse:
        body: dict[str, Any] = {
            "changes": [[r.method, r.path] for r in log],
            "gets": log.gets,
            "cpu_s": time.process_time(),  # how busy the one simulator process is, for the scale-out report
            "pid": os.getpid(),  # to watch its CPU over a window of the load's own choosing
        }
        return JSONResponse(body)

    provider: ASGIApp = create_app(state, token=token)
    if replenish:
        provider = replenishing(provider, state)
    return Starlette(routes=[Route("/_bench/log", changes), Mount("/", app=provider)])


def main(argv: list[str]) -> None:
    token, servers, each, seconds = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    sock = bind_socket("127.0.0.1", 0)
    print(f"http://127.0.0.1:{sock.getsockname()[1]}{API_PREFIX}", flush=True)
    serve_forever(app(token, servers, each, seconds, replenish=argv[4:] == ["replenish"]), sock)


if __name__ == "__main__":
    main(sys.argv[1:])
