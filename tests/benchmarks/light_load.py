"""Light JSON-RPC load clients, in a process of their own: one POST per call, no SDK client.

    python -m tests.benchmarks.light_load < SPEC_JSON      # prints the result as JSON on stdout

The spec names the MCP URLs, how many clients (numbered from `first_client`, so several load processes own
different servers), how long to run (`seconds`, after `warmup_s` not measured), the mix, and the bearer token
every request carries (a static token or an OAuth access token: one caller on every replica, so a confirmation
token made by one replica is honoured by another). Instead of `bearer`, `idp` names an OpenID Connect provider
(its issuer, the token client's id, secret and redirect URI, the `user`): the process signs the user in there
for an access token per URL (each replica's public URL is its tokens' audience) and fetches new ones before they
expire (`Bearers`); with `person` too, that person signs in on the approval page once (`Person`) and approves
the soak's approval leg there.

Mixes (client i owns simulator server `FIRST_SERVER + i` and its seeded snapshots, `provider_process`):

- `lists`: `list_snapshots` of server 12345, again and again;
- `consent`: six lists, a restore previewed then confirmed, a delete (of the oldest other snapshot the last list
  showed) previewed then confirmed, again;
- `soak` (stateful sessions, pinned to a replica like a sticky load balancer): lists, a create that waits,
  previews left unconfirmed, restores and deletes confirmed by token, every few rounds a create whose stream is
  dropped and resumed with `Last-Event-ID`, and the session closed and a new one opened; with a `person`, one
  round in `APPROVAL_EVERY` (the second, the seventh, ...) deletes its snapshot through the approval page
  instead: a second session on the client's replica declares URL elicitation (a host that opens links), its
  confirming call is held while the person approves on the other replica (`Caller.approved`), then runs once.

`alternate` (a spec naming `targets`, each a URL and its bearer, instead of `urls`): one client with a session on
each target calls `list_snapshots` on each in turn, call by call, so that whatever the machine does meanwhile
falls on every target alike; each target's latencies come back on their own.

Stateless requests go to the URL with the fewest calls in flight from this process (`Balancer`), call by call,
so a preview and its confirmation are often answered by different replicas; with `pinned`, client i sends to
`urls[i % len(urls)]` alone. With `lean`, stateless calls go over `lean_http` (plain sockets) instead of
`httpx2`. With `rate_each`, each client calls at that mean rate (calls a second) instead of as fast as it is
answered (`Pace`: an open loop, its latencies counted from when each call was due). Every confirmed change is
reported (with its snapshot id), so the caller can check the provider saw exactly one request per confirmed
consent.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2

from ..support.oidc import TOKEN_CLIENT, Client, Issuer
from ..support.signin_http import sign_in_over_http
from .cgroups import CpuCaps
from .fleet import CpuWatch
from .http_load import run_delay_s
from .lean_http import LeanError, LeanPool, LeanResponse
from .provider_process import FIRST_SERVER, snapshot_ids

VERSION = "2025-11-25"
LISTS_PER_ROUND = 6
APPROVAL_EVERY = 5
"""The soak's approval leg: one round in this many, from the second round on (so a short run has one)."""
REFRESH_BEFORE_S = 120.0
"""Access tokens are fetched again this long before the first of them expires."""
MIN_REFRESH_GAP_S = 5.0
"""At least this long between two fetches (a short-lived token, or an identity provider that fails)."""


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
    approved: int = 0
    seed: str = ""
    """What the load's random choices are seeded with, beside each client's number (`seed` in the spec)."""
    paced: bool = False
    """Paced clients: every call due within the window counts, however late it ends (a closed loop counts the
    calls that ended within it: its calls a second)."""

    def timed(self, started: float, ended: float) -> None:
        self.all_calls += 1
        if self.measure_from <= started and (started < self.measure_to if self.paced else ended <= self.measure_to):
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


class Pace:
    """One client's calls at a mean rate, whatever their answers take (an open loop): the gaps are drawn from an
    exponential distribution (Poisson arrivals, seeded by the spec's `seed` and the client's number: the same
    pattern wherever the seed is the same), and each call is due at its time even when the one before came back
    late. As wrk2 does, a late call's latency counts from when it was due, and every call due within the window
    counts however late it ends: a slow answer is not hidden by the calls it holds up (the closed loop's coordinated
    omission)."""

    def __init__(self, rate: float, seed: str) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.due = time.perf_counter() + self.rng.expovariate(rate)

    async def wait(self) -> float:
        """Sleep until the next call is due (not at all when it is late); when it was due."""
        due = self.due
        self.due += self.rng.expovariate(self.rate)
        early = due - time.perf_counter()
        if early > 0:
            await anyio.sleep(early)
        return due


Bearer = str | Callable[[str], str] | None
"""What a request carries as its bearer: one token for every URL, the token for the URL (`Bearers`), or none."""


class Caller:
    """One client: a bearer token, stateless calls through the process's balancer, or one session on its replica."""

    def __init__(
        self,
        pool: httpx2.AsyncClient,
        urls: list[str],
        index: int,
        bearer: Bearer,
        balancer: Balancer | None = None,
        *,
        capabilities: dict[str, Any] | None = None,
        person: Person | None = None,
        lean: LeanPool | None = None,
        pace: Pace | None = None,
    ) -> None:
        self.pool, self.urls, self.index = pool, urls, index
        self.lean = lean
        """Where stateless calls go instead of `pool`, when given (`lean_http`)."""
        self.pace = pace
        """When each call is due, when the client keeps a rate (else each call follows the answer before)."""
        self.balancer = balancer or Balancer(urls)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                        "MCP-Protocol-Version": VERSION}  # fmt: skip
        self.bearer = bearer
        self.capabilities = capabilities or {}
        self.person = person
        """Who approves this client's changes on the approval page (the soak's approval leg), if anyone."""
        self.ids = count(2)
        self.session: str | None = None

    def more(self, tally: Tally) -> bool:
        """Whether the client goes on: a paced one while its next call is due within the window (a call due
        in it and sent late still counts), else while the window lasts."""
        return (self.pace.due if self.pace is not None else time.perf_counter()) < tally.measure_to

    def url(self) -> str:
        """The session's replica (for opening, closing and streams)."""
        return self.urls[self.index % len(self.urls)]

    def headers_for(self, url: str, **more: str) -> dict[str, str]:
        """The headers of a request to `url`: the session's, and the bearer token for `url`."""
        bearer = self.bearer(url) if callable(self.bearer) else self.bearer
        return self.headers | ({"Authorization": f"Bearer {bearer}"} if bearer else {}) | more

    async def open(self) -> None:
        init = {"protocolVersion": VERSION, "capabilities": self.capabilities,
                "clientInfo": {"name": "bench", "version": "0"}}  # fmt: skip
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}
        answer = await self.pool.post(self.url(), json=body, headers=self.headers_for(self.url()))
        assert answer.status_code == 200, answer.text[:300]
        self.session = answer.headers["mcp-session-id"]
        self.headers["mcp-session-id"] = self.session
        done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await self.pool.post(self.url(), json=done, headers=self.headers_for(self.url()))

    async def close(self) -> None:
        if self.session:
            await self.pool.delete(self.url(), headers=self.headers_for(self.url()))
            del self.headers["mcp-session-id"]
            self.session = None

    async def call(self, tally: Tally, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """The call's structured result, or None (counted as an error)."""
        request_id = next(self.ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}}  # fmt: skip
        due = await self.pace.wait() if self.pace is not None else None
        url = self.url() if self.session else self.balancer.pick()
        started = time.perf_counter() if due is None else due
        try:
            if self.lean is not None and not self.session:
                answer: httpx2.Response | LeanResponse = await self.lean.post(
                    url, json=body, headers=self.headers_for(url), timeout=120
                )
            else:
                answer = await self.pool.post(url, json=body, headers=self.headers_for(url), timeout=120)
        except (httpx2.HTTPError, LeanError) as exc:
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
        headers = self.headers_for(self.url())
        async with self.pool.stream("POST", self.url(), json=body, headers=headers, timeout=120) as response:
            async for event_id, message in _events(response):
                last = event_id or last
                if message.get("method") == "notifications/progress":
                    break  # the connection drops here
        resume = self.headers_for(self.url(), Accept="text/event-stream", **{"Last-Event-ID": last})
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

    async def approved(self, tally: Tally, tool: str, snapshot_id: int) -> bool:
        """The approval leg: on a second session of this client's replica that declares URL elicitation (a host
        that opens links for its user), a preview, then the confirming call, held open while `self.person`
        approves on the approval page (`held`); recorded when executed."""
        assert self.person is not None
        host = Caller(self.pool, [self.url()], 0, self.bearer, capabilities={"elicitation": {"url": {}}})
        try:  # a connection that fails, or a session that will not open, is one error: the load goes on
            await host.open()
            try:
                preview = await host.call(tally, tool, {"snapshot_id": snapshot_id})
                if preview is None:
                    return False
                arguments: dict[str, Any] = {"snapshot_id": snapshot_id, "confirm": True}
                if preview.get("confirmation_token"):  # a model passes it on; the page decides all the same
                    arguments["confirmation_token"] = preview["confirmation_token"]
                done = await host.held(tally, tool, arguments, self.person)
            finally:
                await host.close()
        except (httpx2.HTTPError, AssertionError) as exc:
            tally.error(f"{tool} {snapshot_id} approval leg: {type(exc).__name__}")  # the type only: no page text
            return False
        if done is not None and done.get("status") in ("deleted", "restore_started"):
            tally.confirmed.append((tool.removesuffix("_snapshot"), snapshot_id))
            tally.approved += 1
            return True
        if done is not None:
            tally.error(f"{tool} {snapshot_id} approved: {done.get('status')}")
        return False

    async def held(self, tally: Tally, tool: str, arguments: dict[str, Any], person: Person) -> dict[str, Any] | None:
        """A confirming call the server holds for the approval page (2025-11-25: `elicitation/create` in mode url
        on the call's stream): the link opened (answered accept), the person approves, and the result comes."""
        request_id = next(self.ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}}  # fmt: skip
        started, links = time.perf_counter(), 0
        headers = self.headers_for(self.url())
        async with self.pool.stream("POST", self.url(), json=body, headers=headers, timeout=120) as response:
            async for _, message in _events(response):
                if message.get("method") == "elicitation/create":
                    links += 1
                    params = message.get("params") or {}
                    answer = {"jsonrpc": "2.0", "id": message["id"], "result": {"action": "accept"}}
                    opened = await self.pool.post(self.url(), json=answer, headers=headers)
                    if params.get("mode") != "url" or opened.status_code != 202:
                        tally.error(f"{tool} held: {params.get('mode')} elicitation, answered {opened.status_code}")
                        return None
                    refused = await person.approve(str(params["url"]))
                    if refused is not None:
                        tally.error(f"{tool} held: the person could not approve: {refused}")
                        return None
                elif message.get("id") == request_id:
                    tally.timed(started, time.perf_counter())
                    result = message.get("result") or {}
                    if links != 1 or result.get("isError") or "structuredContent" not in result:
                        tally.error(f"{tool} held ({links} links): {json.dumps(message)[:300]}")
                        return None
                    structured: dict[str, Any] = result["structuredContent"]
                    return structured
        tally.error(f"{tool} held: the stream ended without the result")
        return None


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Person:
    """A person at the approval page, signed in once (`sign_in`) and kept signed in by their session cookie, as a
    browser keeps it: each link is opened on the replica other than the one that asked (the sessions live in the
    shared ledger), and approved with the page's CSRF token and this site's origin, as the page's form posts it."""

    def __init__(self, http: httpx2.AsyncClient, bases: list[str]) -> None:
        self.http, self.bases = http, bases

    @staticmethod
    def sign_in(issuer: Issuer, user: str, base: str) -> dict[str, str]:
        """Sign `user` in on the server at `base` through the identity provider's login form, over plain HTTP (no
        browser); the session cookie. Blocking: run before the load starts."""
        with httpx2.Client(timeout=20, follow_redirects=False) as http:
            back = http.get(sign_in_over_http(http, base, issuer, user))
            assert back.status_code == 303, f"the sign-in did not come back: HTTP {back.status_code}"
            return {c.name: str(c.value) for c in http.cookies.jar if c.name.endswith("vps-approve") and c.value}

    async def approve(self, link: str) -> str | None:
        """Open `link` on another replica and approve it there; None when approved, else why not (no secrets)."""
        path = urlsplit(link).path
        asked_on = link.removesuffix(path)
        base = next((b for b in self.bases if b != asked_on), asked_on)
        page = await self.http.get(f"{base}{path}")
        found = CSRF.search(page.text)
        if page.status_code != 200 or found is None or 'id="approve"' not in page.text:
            return f"the page answered HTTP {page.status_code} without an Approve button"
        same_origin = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
        decided = await self.http.post(
            f"{base}{path}", data={"decision": "approve", "csrf": found.group(1)}, headers=same_origin
        )
        if decided.status_code != 200 or "You approved" not in decided.text:
            return f"the decision answered HTTP {decided.status_code}"
        return None


class Bearers:
    """OAuth access tokens from the spec's identity provider (`idp`): one per URL (each replica is its own
    audience), for one user, fetched again `REFRESH_BEFORE_S` before the first of them expires."""

    def __init__(self, idp: dict[str, Any], urls: list[str]) -> None:
        client = Client(idp["client_id"], idp["client_secret"], (idp["redirect_uri"],))
        self.issuer = Issuer(issuer=idp["issuer"], resource=urls[0], clients={TOKEN_CLIENT: client})
        self.user, self.urls = str(idp["user"]), urls
        self.current: dict[str, str] = {}
        self.expires_at = 0.0

    def __call__(self, url: str) -> str:
        return self.current[url]

    def fetch(self) -> None:
        """Sign in at the identity provider for a token per URL (blocking: in a worker thread once running)."""
        fresh = {url: self.issuer.access_token(self.user, resource=url) for url in self.urls}
        self.current, self.expires_at = fresh, min(_expiry(t) for t in fresh.values())

    async def keep_fresh(self, until: float) -> None:
        """Fetch new tokens before these expire, until `until` (`time.perf_counter`)."""
        while (left := until - time.perf_counter()) > 0:
            due = self.expires_at - REFRESH_BEFORE_S - time.time()
            if due > 0:
                await anyio.sleep(min(due, left))
                continue
            with contextlib.suppress(httpx2.HTTPError, AssertionError):  # the tokens in hand work till they expire
                await anyio.to_thread.run_sync(self.fetch)
            await anyio.sleep(min(MIN_REFRESH_GAP_S, max(left, 0.0)))  # never a busy loop, whatever the lifetime


def _expiry(token: str) -> float:
    """A JWT's `exp` (read for scheduling only: the servers verify the token)."""
    payload = token.split(".")[1]
    return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


async def _events(response: httpx2.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    event_id = ""
    async for line in response.aiter_lines():
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:") and line[5:].strip():
            yield event_id, json.loads(line[5:])


async def lists(caller: Caller, tally: Tally, index: int) -> None:
    while caller.more(tally):
        await caller.call(tally, "list_snapshots", {"server_id": 12345})


async def consent(caller: Caller, tally: Tally, index: int) -> None:
    restore_target = snapshot_ids(index, 1)[0]
    # Clients begin their first round at different lists (seeded), so a short window does not catch every
    # client at the same point of its round.
    skip = random.Random(f"{tally.seed}-{index}-start").randrange(LISTS_PER_ROUND)
    while caller.more(tally):
        listed: dict[str, Any] | None = None
        for _ in range(LISTS_PER_ROUND - skip):
            listed = await caller.call(tally, "list_snapshots", {"server_id": FIRST_SERVER + index}) or listed
        await caller.confirmed(tally, "restore_snapshot", restore_target)
        # The oldest other snapshot listed: a seeded one, or (where the simulator replenishes) its replacement.
        others = sorted(int(s["id"]) for s in (listed or {}).get("snapshots", []) if s["id"] != restore_target)
        if others:
            await caller.confirmed(tally, "delete_snapshot", others[0])
        skip = 0


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
        if created is not None and caller.person is not None and number % APPROVAL_EVERY == 1:
            await caller.approved(tally, "delete_snapshot", created)  # a person approves it on the page
        elif created is not None:
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
    urls = list(spec["urls"])
    bearer: Bearer = spec.get("bearer")
    bearers, cookies = None, None
    if "idp" in spec:  # signed in before the clock starts, as the people are before their day's work
        bearer = bearers = Bearers(spec["idp"], urls)
        bearers.fetch()
        if spec["idp"].get("person"):  # signed in on the last replica: the first client's session is elsewhere
            cookies = Person.sign_in(bearers.issuer, spec["idp"]["person"], urls[-1].removesuffix("/mcp"))
    started = time.perf_counter()
    tally = Tally(measure_from=started + float(spec.get("warmup_s", 0)), seed=str(spec.get("seed", "")),
                  paced=bool(spec.get("rate_each")))  # fmt: skip
    tally.measure_to = tally.measure_from + float(spec["seconds"])
    window: dict[str, Any] = {}
    mix = MIXES[spec["mix"]]
    cpu, delay = time.process_time(), run_delay_s()
    balancer = Balancer(urls)
    lean = LeanPool() if spec.get("lean") else None
    try:
        async with (
            httpx2.AsyncClient(limits=limits, timeout=120) as pool,
            httpx2.AsyncClient(timeout=120, follow_redirects=False, cookies=cookies) as browser,
            anyio.create_task_group() as group,
        ):
            person = Person(browser, [u.removesuffix("/mcp") for u in urls]) if cookies else None
            if bearers is not None:
                group.start_soon(bearers.keep_fresh, tally.measure_to)
            if spec.get("watch"):
                group.start_soon(watched, spec["watch"], tally, window)
            for index in range(first, first + clients):
                pace = Pace(float(spec["rate_each"]), f"{tally.seed}-{index}") if tally.paced else None
                if spec.get("pinned"):  # client i sends to replica i alone (modulo their number), its own balancer
                    caller = Caller(pool, [urls[index % len(urls)]], index, bearer, person=person, lean=lean, pace=pace)
                else:
                    caller = Caller(pool, urls, index, bearer, balancer, person=person, lean=lean, pace=pace)
                if spec.get("sessions") and mix is not soak:
                    group.start_soon(in_a_session, mix, caller, tally, index)
                else:
                    group.start_soon(mix, caller, tally, index)
    finally:
        if lean is not None:
            await lean.aclose()
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
        "approved": tally.approved,
        "client_cpu_s": time.process_time() - cpu,
        "client_run_delay_s": run_delay_s() - delay,
        "elapsed_s": time.perf_counter() - started,
        "window": window,
    }


async def watched(watch: dict[str, Any], tally: Tally, out: dict[str, Any]) -> None:
    """Over the measured window alone (not this process's start, warm-up or wind-down): the CPU and run delay
    of the processes `watch` names (`pids`, `spinners`, and `providers`, summed), their cgroups' throttled time
    (`groups`) and this process's own CPU and run delay. Into `out`, as `CpuWatch.stop` names them."""
    await anyio.sleep(max(0.0, tally.measure_from - time.perf_counter()))
    groups = [Path(group) for group in watch.get("groups", [])]
    replicas, spinners = CpuWatch(list(watch["pids"])), CpuWatch(list(watch.get("spinners", [])))
    providers = CpuWatch(list(watch.get("providers", [])))
    throttled = [CpuCaps.throttled_s(group) for group in groups]
    cpu, delay = time.process_time(), run_delay_s()
    await anyio.sleep(max(0.0, tally.measure_to - time.perf_counter()))
    out |= replicas.stop()
    out["spinner_cpu_cores"] = spinners.stop()["replica_cpu_cores"]
    out["provider_cpu_cores"] = sum(providers.stop()["replica_cpu_cores"])
    out["throttled_s"] = [CpuCaps.throttled_s(group) - before for group, before in zip(groups, throttled, strict=True)]
    out["client_cpu_s"], out["client_run_delay_s"] = time.process_time() - cpu, run_delay_s() - delay


if __name__ == "__main__":  # the spec on stdin: the identity provider's client secret stays out of `ps`
    print(json.dumps(anyio.run(run, json.loads(sys.stdin.read()))))
