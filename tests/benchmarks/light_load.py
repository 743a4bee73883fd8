"""Light JSON-RPC load clients, in a process of their own: one POST per call, no SDK client.

    python -m tests.benchmarks.light_load SPEC_JSON        # prints the result as JSON on stdout

The spec names the MCP URLs, how many clients (numbered from `first_client`, so several load processes own
different servers), how long to run (`seconds`, after `warmup_s` not measured), the mix, and the bearer token
every request carries (a static token or an OAuth access token: one caller on every replica, so a confirmation
token made by one replica is honoured by another).

Mixes (client i owns simulator server `FIRST_SERVER + i` and its seeded snapshots, `provider_process`):

- `lists`: `list_snapshots` of server 12345, again and again;
- `consent`: six lists, a restore previewed then confirmed, a delete previewed then confirmed, again;
- `soak` (stateful sessions, pinned to a replica like a sticky load balancer): lists, a create that waits,
  previews left unconfirmed, confirmed restores and deletes, every few rounds a create whose stream is dropped
  and resumed with `Last-Event-ID`, and the session closed and a new one opened.

`alternate` (a spec naming `targets`, each a URL and its bearer, instead of `urls`): one client with a session on
each target calls `list_snapshots` on each in turn, call by call, so that whatever the machine does meanwhile
falls on every target alike; each target's latencies come back on their own.

Stateless requests go to the URL with the fewest calls in flight from this process (`Balancer`), call by call,
so a preview and its confirmation are often answered by different replicas. Every confirmed change is reported (with its
snapshot id), so the caller can check the provider saw exactly one request per confirmed consent.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import anyio
import httpx2

from .provider_process import FIRST_SERVER, snapshot_ids

VERSION = "2025-11-25"
LISTS_PER_ROUND = 6


@dataclass
class Tally:
    measure_from: float = 0.0
    measure_to: float = 0.0
    latencies: list[float] = field(default_factory=list)
    calls: int = 0
    all_calls: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    confirmed: list[tuple[str, int]] = field(default_factory=list)
    resumed: int = 0
    created: int = 0

    def timed(self, started: float, ended: float) -> None:
        self.all_calls += 1
        if self.measure_from <= started and ended <= self.measure_to:
            self.calls += 1
            self.latencies.append(ended - started)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:300])


def _messages(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ") and len(line) > 6]


class Balancer:
    """The load process's balancer for stateless calls: the replica with the fewest calls in flight from this
    process, ties taken in turn, as a least-request load balancer does. (Plain round-robin, call by call,
    piles the clients up behind whichever capped replica is being throttled, while the others idle.)"""

    def __init__(self, urls: list[str]) -> None:
        self.in_flight = dict.fromkeys(urls, 0)
        self.turn = count()

    def pick(self) -> str:
        urls = list(self.in_flight)
        start = next(self.turn) % len(urls)
        url = min(urls[start:] + urls[:start], key=self.in_flight.__getitem__)
        self.in_flight[url] += 1
        return url

    def done(self, url: str) -> None:
        self.in_flight[url] -= 1


class Caller:
    """One client: a bearer token, stateless calls through the process's balancer, or one session on its replica."""

    def __init__(
        self,
        pool: httpx2.AsyncClient,
        urls: list[str],
        index: int,
        bearer: str | None,
        balancer: Balancer | None = None,
    ) -> None:
        self.pool, self.urls, self.index = pool, urls, index
        self.balancer = balancer or Balancer(urls)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                        "MCP-Protocol-Version": VERSION}  # fmt: skip
        if bearer:
            self.headers["Authorization"] = f"Bearer {bearer}"
        self.ids = count(2)
        self.session: str | None = None

    def url(self) -> str:
        """The session's replica (for opening, closing and streams)."""
        return self.urls[self.index % len(self.urls)]

    async def open(self) -> None:
        init = {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}
        answer = await self.pool.post(self.urls[self.index % len(self.urls)], json=body, headers=self.headers)
        assert answer.status_code == 200, answer.text[:300]
        self.session = answer.headers["mcp-session-id"]
        self.headers["mcp-session-id"] = self.session
        done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await self.pool.post(self.url(), json=done, headers=self.headers)

    async def close(self) -> None:
        if self.session:
            await self.pool.delete(self.url(), headers=self.headers)
            del self.headers["mcp-session-id"]
            self.session = None

    async def call(self, tally: Tally, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """The call's structured result, or None (counted as an error)."""
        request_id = next(self.ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}}  # fmt: skip
        url = self.url() if self.session else self.balancer.pick()
        started = time.perf_counter()
        try:
            answer = await self.pool.post(url, json=body, headers=self.headers, timeout=120)
        except httpx2.HTTPError as exc:
            tally.error(f"{tool}: {type(exc).__name__}")
            return None
        finally:
            if not self.session:
                self.balancer.done(url)
        tally.timed(started, time.perf_counter())
        found = [m for m in _messages(answer.text) if m.get("id") == request_id] if answer.status_code == 200 else []
        result = found[0].get("result") if found else None
        if not result or result.get("isError") or "structuredContent" not in result:
            tally.error(f"{tool} {arguments}: HTTP {answer.status_code} {answer.text[-300:]}")
            return None
        structured: dict[str, Any] = result["structuredContent"]
        return structured

    async def confirmed(self, tally: Tally, tool: str, snapshot_id: int) -> bool:
        """Preview, then confirm with the preview's token; the change is recorded when executed."""
        preview = await self.call(tally, tool, {"snapshot_id": snapshot_id})
        if preview is None:
            return False
        token = preview["confirmation_token"]
        done = await self.call(tally, tool, {"snapshot_id": snapshot_id, "confirm": True, "confirmation_token": token})
        if done is not None and done.get("status") in ("deleted", "restore_started"):
            tally.confirmed.append((tool.removesuffix("_snapshot"), snapshot_id))
            return True
        if done is not None:
            tally.error(f"{tool} {snapshot_id} confirmed: {done.get('status')}")
        return False

    async def dropped_and_resumed(self, tally: Tally, server_id: int, name: str) -> int | None:
        """create_snapshot wait:true; the stream dropped after the first progress and resumed; the new id."""
        request_id = next(self.ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                "params": {"name": "create_snapshot", "arguments": {"server_id": server_id, "name": name,
                                                                     "wait": True, "wait_timeout_s": 60},
                           "_meta": {"progressToken": name}}}  # fmt: skip
        last = ""
        async with self.pool.stream("POST", self.url(), json=body, headers=self.headers, timeout=120) as response:
            async for event_id, message in _events(response):
                last = event_id or last
                if message.get("method") == "notifications/progress":
                    break  # the connection drops here
        resume = {**self.headers, "Accept": "text/event-stream", "Last-Event-ID": last}
        async with self.pool.stream("GET", self.url(), headers=resume, timeout=120) as response:
            async for _, message in _events(response):
                if message.get("id") == request_id:
                    result = message.get("result") or {}
                    snapshot = (result.get("structuredContent") or {}).get("snapshot") or {}
                    if result.get("isError") or snapshot.get("status") != "completed":
                        tally.error(f"resumed create: {json.dumps(message)[:300]}")
                        return None
                    tally.resumed += 1
                    return int(snapshot["id"])
        tally.error("resumed create: the stream ended without the result")
        return None


async def _events(response: httpx2.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    event_id = ""
    async for line in response.aiter_lines():
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:") and line[5:].strip():
            yield event_id, json.loads(line[5:])


async def lists(caller: Caller, tally: Tally, index: int) -> None:
    while time.perf_counter() < tally.measure_to:
        await caller.call(tally, "list_snapshots", {"server_id": 12345})


async def consent(caller: Caller, tally: Tally, index: int) -> None:
    restore_target, *deletable = snapshot_ids(index, SNAPSHOTS_EACH)
    while time.perf_counter() < tally.measure_to:
        for _ in range(LISTS_PER_ROUND):
            await caller.call(tally, "list_snapshots", {"server_id": FIRST_SERVER + index})
        await caller.confirmed(tally, "restore_snapshot", restore_target)
        if deletable:
            await caller.confirmed(tally, "delete_snapshot", deletable.pop(0))


async def soak(caller: Caller, tally: Tally, index: int) -> None:
    server_id = FIRST_SERVER + index
    restore_target = snapshot_ids(index, 1)[0]
    rounds = count()
    await caller.open()
    while time.perf_counter() < tally.measure_to:
        number = next(rounds)
        for _ in range(LISTS_PER_ROUND):
            await caller.call(tally, "list_snapshots", {"server_id": server_id})
        await caller.call(tally, "restore_snapshot", {"snapshot_id": restore_target})  # a preview, left there
        await caller.confirmed(tally, "restore_snapshot", restore_target)
        name = f"soak-{index}-{number}"
        if number % 5 == 1:  # the second round, so that a short run has one too
            created = await caller.dropped_and_resumed(tally, server_id, name)
        else:
            arguments = {"server_id": server_id, "name": name, "wait": True, "wait_timeout_s": 60}
            made = await caller.call(tally, "create_snapshot", arguments)
            created = int(made["snapshot"]["id"]) if made else None
        tally.created += created is not None
        if created is not None:
            await caller.confirmed(tally, "delete_snapshot", created)
        if number % 10 == 9:  # sessions come and go, as clients do
            await caller.close()
            await caller.open()
    await caller.close()


MIXES = {"lists": lists, "consent": consent, "soak": soak}


async def in_a_session(mix: Any, caller: Caller, tally: Tally, index: int) -> None:
    """The mix on one session of the client's replica, opened first and closed at the end."""
    await caller.open()
    try:
        await mix(caller, tally, index)
    finally:
        await caller.close()


SNAPSHOTS_EACH = 24
"""A client's snapshots: one to restore, the rest to delete (a 20-second run deletes about five; past them,
only restores)."""


async def alternate(spec: dict[str, Any]) -> dict[str, Any]:
    """One client, one call after another, on each target in turn (see the module's text)."""
    targets: list[dict[str, Any]] = spec["targets"]
    started = time.perf_counter()
    measure_from = started + float(spec.get("warmup_s", 0))
    tallies = [Tally(measure_from=measure_from, measure_to=measure_from + float(spec["seconds"])) for _ in targets]
    async with httpx2.AsyncClient(timeout=120) as pool:
        callers = [Caller(pool, [t["url"]], 0, t.get("bearer")) for t in targets]
        for caller in callers:
            await caller.open()
        while time.perf_counter() < tallies[0].measure_to:
            for caller, tally in zip(callers, tallies, strict=True):
                await caller.call(tally, "list_snapshots", {"server_id": 12345})  # as `lists` does
        for caller in callers:
            await caller.close()
    return {
        "targets": [
            {
                "calls": t.calls,
                "errors": t.errors,
                "error_samples": t.error_samples,
                "latencies_s": [round(x, 6) for x in t.latencies],
            }
            for t in tallies
        ]
    }


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    if "targets" in spec:
        return await alternate(spec)
    clients, first = int(spec["clients"]), int(spec.get("first_client", 0))
    limits = httpx2.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    started = time.perf_counter()
    tally = Tally(measure_from=started + float(spec.get("warmup_s", 0)))
    tally.measure_to = tally.measure_from + float(spec["seconds"])
    mix = MIXES[spec["mix"]]
    cpu = time.process_time()
    balancer = Balancer(list(spec["urls"]))
    async with httpx2.AsyncClient(limits=limits, timeout=120) as pool, anyio.create_task_group() as group:
        for index in range(first, first + clients):
            caller = Caller(pool, list(spec["urls"]), index, spec.get("bearer"), balancer)
            if spec.get("sessions") and mix is not soak:
                group.start_soon(in_a_session, mix, caller, tally, index)
            else:
                group.start_soon(mix, caller, tally, index)
    measured = min(time.perf_counter(), tally.measure_to) - tally.measure_from
    return {
        "calls": tally.calls,
        "all_calls": tally.all_calls,
        "seconds": measured,
        "errors": tally.errors,
        "error_samples": tally.error_samples,
        "latencies_s": [round(x, 6) for x in tally.latencies],
        "confirmed": tally.confirmed,
        "resumed": tally.resumed,
        "created": tally.created,
        "client_cpu_s": time.process_time() - cpu,
    }


if __name__ == "__main__":
    print(json.dumps(anyio.run(run, json.loads(sys.argv[1]))))
