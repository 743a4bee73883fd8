"""A long call over HTTP survives a dropped connection: SSE events carry ids, and Last-Event-ID resumes them.

The server runs as its own process in the sandbox (snapshots take 3 s of real time), driven with raw HTTP so
the test can drop the connection mid-call, the way a proxy's idle timeout would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from vps_snapshots_mcp.state import open_event_log
from vps_snapshots_mcp.state.memory import MemoryEventLog

from .support.processes import http_server
from .support.raw_http import events, open_session
from .support.redis_server import RedisServer

pytestmark = pytest.mark.slow


def drop_then_resume(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Call create_snapshot wait:true, drop the stream after the first progress, resume it; both halves' events."""
    call = {
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "create_snapshot", "arguments": {"server_id": 12345, "name": "resumed", "wait": True},
                   "_meta": {"progressToken": "p"}},
    }  # fmt: skip
    with httpx2.Client(timeout=30) as http:
        headers = open_session(http, url)
        before: list[dict[str, Any]] = []
        with http.stream("POST", f"{url}/mcp", json=call, headers=headers) as response:
            for event in events(response):
                before.append(event)
                if event.get("data") and event["data"].get("method") == "notifications/progress":
                    break  # the connection drops here
        resume = {**headers, "Accept": "text/event-stream", "Last-Event-ID": before[-1]["id"]}
        after: list[dict[str, Any]] = []
        with http.stream("GET", f"{url}/mcp", headers=resume) as response:
            assert response.status_code == 200
            for event in events(response):
                after.append(event)
                if event.get("data") and event["data"].get("id") == 2:
                    break
    return before, after


@pytest.fixture
def state_urls(tmp_path: Path, redis_server: RedisServer) -> dict[str, str | None]:
    return {"memory": None, "sqlite": f"sqlite:///{tmp_path}/state.db", "redis": redis_server.url}


@pytest.mark.parametrize("store", ["memory", "sqlite", "redis"])
def test_a_dropped_wait_resumes_with_the_missed_progress_and_the_result(
    store: str, state_urls: dict[str, str | None]
) -> None:
    environment = {"VPS_MCP_SANDBOX_SECONDS": "3"}
    if state_urls[store] is not None:
        environment["VPS_MCP_STATE_URL"] = str(state_urls[store])
    with http_server(["--sandbox"], environment) as url:
        before, after = drop_then_resume(url)
    assert before[0].get("retry") == "3000" and all("id" in e for e in before + after)  # ids and a retry hint
    progress = [e["data"]["params"]["message"] for e in after if e.get("data", {}) and "params" in e["data"]]
    assert progress and all(m.startswith("snapshot 802: ") for m in progress)  # what was missed, then live
    result = after[-1]["data"]["result"]
    assert result["structuredContent"]["snapshot"]["status"] == "completed"
    ids = [e["id"] for e in before + after if "id" in e]
    assert len(set(ids)) == len(ids) and not any(i.isdigit() for i in ids)  # random ids, not a sequence


@pytest.mark.anyio
async def test_events_expire_and_unknown_ids_resume_nothing(tmp_path: Path) -> None:
    clock = [0.0]
    log = MemoryEventLog(ttl_s=10, monotonic=lambda: clock[0])
    await log.append("a", "first", "s1", None)
    await log.append("a", "second", "s1", '{"a": 1}')
    await log.append("a", "third", "s2", '{"b": 2}')
    assert await log.after("a", "first") == ("s1", [("second", '{"a": 1}')])
    assert await log.after("b", "first") is None  # another session's id
    clock[0] = 11
    assert await log.after("a", "first") is None and await log.after("a", "nope") is None
    sqlite_log = open_event_log(f"sqlite:///{tmp_path}/s.db", ttl_s=10)
    await sqlite_log.append("a", "kept", "s", None)
    assert await sqlite_log.after("a", "kept") == ("s", []) and await sqlite_log.after("b", "kept") is None
    await sqlite_log.aclose()
