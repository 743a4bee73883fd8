"""SnapshotsClient: the provider's Snapshots API over HTTP.

This is the only module that imports the HTTP library. One request path,
`_send`, owns authentication, timeouts, retries and error mapping, so every
endpoint behaves the same way under failure.

Requests
    Every request carries `Authorization: Bearer <token>` and
    `Content-Type: application/json`, goes to the exact documented path with
    its trailing slash, and never follows redirects (a redirect could carry the
    token to another host). Pagination `next` links are followed only when they
    stay on the API's own origin.

Retry policy
    - Only GET and DELETE are retried. They are safe to repeat: a GET changes
      nothing and a DELETE of an already-deleted snapshot changes nothing more.
      POST (create, restore) is never retried: a second create makes a second
      snapshot and a second restore overwrites the server again.
    - Retried on: connection failures (refused, reset, closed mid-answer) and
      HTTP 429, 502, 503 and 504. Timeouts are not retried, so a call takes at
      most about one timeout; 500 is not retried (it is rarely transient).
    - The MCP server narrows this to GET (`SERVER_RETRY_POLICY`): a delete the
      user consented to is sent at most once, whatever fails.
    - At most `RetryPolicy.max_attempts` (3) attempts in all.
    - Between attempts: exponential backoff (0.5 s, 1 s, 2 s, ... capped at
      `max_backoff_s`) with "equal jitter" (a random point in the upper half of
      that interval), so retries never form a tight loop and clients spread out.
    - `Retry-After` (delta-seconds or HTTP date) replaces the backoff when
      present, but never goes below the backoff floor. If it asks for longer
      than `max_retry_after_s`, the client stops and reports `rate_limited` (or
      `upstream_error`) with the wait the provider asked for, instead of
      blocking the caller.
    - A DELETE whose retry answers 404, after an earlier attempt may have
      reached the provider (it answered 5xx or the connection broke after
      sending), is reported as deleted: that earlier attempt most likely did it.
    - The sleep between attempts comes from `Timing` (`timing=`), so tests never wait.

Errors
    Every failure is a `ProviderError` with a stable code (see `errors.py`).
    The provider's own message is taken from `detail`, `error` or `message`
    (or DRF-style field errors, or plain text), cleaned of control characters
    and truncated; an HTML page is never quoted.

Distrust
    Everything the provider sends is cleaned as it is parsed (`provider_text`):
    bodies are read as UTF-8 only (RFC 8259; an answer in UTF-16 or UTF-32 is an
    `upstream_error`, an error body in them is not quoted), NaN, Infinity and
    numbers too large for a float are refused, and every string, in answers and
    in error bodies, has lone surrogates replaced and the API token (or anything
    shaped like `Bearer <credential>`), plain or percent-encoded, removed,
    before it is stored, quoted, logged or audited, or followed as a link. Records of another server
    than the one asked about are dropped (and logged): the provider's filter is
    not trusted. An answer over `max_response_bytes`, or a list over
    `max_records` records across its pages, is an `upstream_error`.

Reads in flight are shared
    Concurrent identical reads (the list, for one server or all) share one GET
    in flight (`single_flight.py`). A caller that must see the state as it is
    now, such as the look-up before a restore or delete, asks with
    `fresh=True` and always sends its own.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import anyio
import httpx2
from pydantic import SecretStr, ValidationError

from .. import __version__
from ..errors import (
    InvalidRequestError,
    InvalidStateError,
    NotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    QuotaExceededError,
    RateLimitedError,
    UnauthorizedError,
    UpstreamError,
)
from ..models import CreatedSnapshot, RestoreStarted, ServerRef, Snapshot
from ..timing import Timing
from .single_flight import SingleFlight
from .text import NotJson, clean, clean_json, decode_body, parse_clean_json, parse_json_text, quoted

logger = logging.getLogger(__name__)

Operation = Literal["list", "create", "restore", "delete"]


@dataclass(frozen=True)
class ChangeEvent:
    """A change crossing the wire: `sent` before the request goes out, `answered` once the provider said 2xx.

    The operation that asks for a change observes its own (`observe=` on each change method), so its audit
    event records a call cancelled mid-change as what it was (sent, or done), never as "nothing happened".
    """

    method: str
    stage: Literal["sent", "answered"]
    snapshot_id: int | None = None
    operation: Operation | None = None
    """Which change it is; the observer a change method is given hears only that call's change."""


ChangeObserver = Callable[[ChangeEvent], None]
"""Told of one call's change as it crosses the wire; the caller that asked for the change passes it."""


def _unobserved(event: ChangeEvent) -> None:
    pass


Transport = httpx2.AsyncBaseTransport
"""The seam between worlds: the default (real network), or an in-process ASGI app."""


def asgi_transport(app: Callable[..., Awaitable[None]]) -> Transport:
    """A transport that sends requests to an in-process ASGI app (the sandbox and tests)."""
    return httpx2.ASGITransport(app=app)


MAX_MESSAGE_CHARS = 200
"""How much of the provider's own error text is quoted back."""
MAX_PAGES = 100
"""Pagination stops here: 100 pages is far beyond 5 snapshots a server on any real account."""
MAX_RESPONSE_BYTES = 5 * 1024 * 1024
"""The largest answer read (after decompression); a list of 5,000 records is about 1.5 MB."""
MAX_RECORDS = 5000
"""The most snapshot records one list reads, across its pages."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When and how long to retry. See the module docstring for the rules."""

    max_attempts: int = 3
    base_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 20.0
    retry_methods: frozenset[str] = frozenset({"GET", "DELETE"})
    retry_statuses: frozenset[int] = frozenset({429, 502, 503, 504})

    def backoff_s(self, attempt: int, rand: Callable[[], float]) -> float:
        """Delay after failed attempt number `attempt` (1-based), with equal jitter."""
        ceiling = min(self.max_backoff_s, self.base_backoff_s * 2.0 ** (attempt - 1))
        return ceiling / 2 + rand() * ceiling / 2


SERVER_RETRY_POLICY = RetryPolicy(retry_methods=frozenset({"GET"}))
"""What the MCP server uses: reads are retried; every change is sent at most once."""


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit() alone holds for superscripts, which float() refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def clean_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line of printable text, at most `limit` characters."""
    text = " ".join(_CONTROL_CHARS.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _message_from_json(data: Any) -> str | None:
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        parts = [m for m in (_message_from_json(item) for item in data) if m]
        return "; ".join(parts) or None
    if isinstance(data, dict):
        for key in ("detail", "error", "message", "error_description", "errors", "non_field_errors"):
            if key in data:
                found = _message_from_json(data[key])
                if found:
                    return found
        # DRF-style field errors: {"name": ["This field is required."]}
        fields = [f"{key}: {m}" for key, value in data.items() if (m := _message_from_json(value))]
        return "; ".join(fields) or None
    return None


def _looks_like_html(response: httpx2.Response, text: str) -> bool:
    content_type = response.headers.get("content-type", "").lower()
    return "html" in content_type or text.lstrip()[:1] == "<"


def provider_message(response: httpx2.Response, *secrets: str) -> str | None:
    """The provider's own explanation, redacted and cleaned, or None (empty, not UTF-8, or an HTML page).

    Decoded as answers are (`decode_body`): a body in UTF-16 is not quoted at all, rather than quoted with
    its NULs as spaces, which would spell the token out letter by letter past redaction.
    """
    text = _body_text(response)
    if text is None or not text.strip() or _looks_like_html(response, text):
        return None
    try:
        found = _message_from_json(clean_json(parse_json_text(text), *secrets))
    except NotJson:
        found = clean(text, *secrets)
    # Redacted again after truncation could not cut a credential in two: it is gone before.
    return clean_text(found) if found else None


class SnapshotsClient:
    """Async client for the provider's Snapshots API. Use as an async context manager."""

    def __init__(
        self,
        *,
        base_url: str,
        token: SecretStr,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        transport: Transport | None = None,
        retry: RetryPolicy | None = None,
        timing: Timing | None = None,
        rand: Callable[[], float] = random.random,
        max_concurrency: int = 100,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_records: int = MAX_RECORDS,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        base = urlsplit(self._base_url)
        self._origin = (base.scheme, base.netloc)
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy()
        self._secrets = (token.get_secret_value(),)
        self._max_response_bytes = max_response_bytes
        self._max_records = max_records
        self._lists: SingleFlight[int | None, list[Snapshot]] = SingleFlight()
        # At most this many requests in flight; the rest queue here (not in the pool), so a burst of
        # calls neither floods the provider nor fails with pool timeouts.
        self._in_flight = anyio.Semaphore(max_concurrency)
        timing = timing or Timing()
        self._sleep = timing.sleep
        self._rand = rand
        self._now = timing.now
        self._transport = transport
        self._limits = httpx2.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
        self._timeout = httpx2.Timeout(timeout_s, connect=connect_timeout_s)
        self._headers = {
            "Authorization": f"Bearer {token.get_secret_value()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"vps-snapshots-mcp/{__version__}",
        }
        self._http_client: httpx2.AsyncClient | None = None

    @property
    def _http(self) -> httpx2.AsyncClient:
        # Made at the first request, not at start-up: building one loads the CA bundle (about 20 ms), and a
        # host starts the server long before, if ever, it calls a tool. No await here, so no race.
        if self._http_client is None:
            self._http_client = httpx2.AsyncClient(
                transport=self._transport,
                timeout=self._timeout,
                limits=self._limits,
                follow_redirects=False,
                headers=self._headers,
            )
        return self._http_client

    async def __aenter__(self) -> SnapshotsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http_client is not None:
            await self._http_client.aclose()

    @property
    def base_url(self) -> str:
        return self._base_url

    # --- endpoints -------------------------------------------------------------------------------

    async def list_snapshots(self, server_id: int | None = None, *, fresh: bool = False) -> list[Snapshot]:
        """All snapshots (of one server when `server_id` is given), following `next` links.

        Concurrent calls share one request in flight, unless `fresh`: then this call sends its own.
        """
        if fresh:
            return await self._list(server_id)
        return list(await self._lists.run(server_id, lambda: self._list(server_id)))

    async def _list(self, server_id: int | None) -> list[Snapshot]:
        url = f"{self._base_url}/snapshots/"
        params: dict[str, Any] | None = {"server_id": server_id} if server_id is not None else None
        snapshots: list[Snapshot] = []
        read = 0
        visited: set[str] = set()
        for _ in range(MAX_PAGES):
            visited.add(url)
            response = await self._send("GET", url, params=params, operation="list")
            items, next_link, count = self._parse_page(self._json(response))
            read += count
            if read > self._max_records:
                raise UpstreamError(
                    f"the provider's snapshot list has more than {self._max_records} records, the most this "
                    "server reads (--max-records). Nothing was changed."
                )
            snapshots.extend(self._of_server(items, server_id))
            if not next_link:
                return snapshots
            url = self._follow(next_link, current=str(response.request.url))
            if url in visited:
                raise UpstreamError("the provider's pagination links loop back on themselves")
            params = None  # the next link carries the query itself
        raise UpstreamError(f"the provider returned more than {MAX_PAGES} pages of snapshots")

    @staticmethod
    def _of_server(items: list[Snapshot], server_id: int | None) -> list[Snapshot]:
        """The records of the server asked about: the provider's filter is checked, not trusted."""
        if server_id is None:
            return items
        kept = [s for s in items if s.server_id == server_id]
        if len(kept) < len(items):
            logger.warning(
                "dropped %d snapshot records that the provider returned for server %d but that belong to "
                "another server (or name none)",
                len(items) - len(kept),
                server_id,
            )
        return kept

    async def get_snapshot(self, snapshot_id: int, *, fresh: bool = False) -> Snapshot:
        """One snapshot, found through the list endpoint (the API has no single-snapshot endpoint)."""
        for snapshot in await self.list_snapshots(fresh=fresh):
            if snapshot.id == snapshot_id:
                return snapshot
        raise NotFoundError(
            f"snapshot {snapshot_id} does not exist; call list_snapshots to see the snapshots there are. "
            "Nothing was changed.",
            status=None,
        )

    async def create_snapshot(
        self, server_id: int, name: str, description: str | None = None, *, observe: ChangeObserver | None = None
    ) -> CreatedSnapshot:
        """Start a snapshot of `server_id`. The provider answers 201 with status `in_progress`.

        `observe` (each change method takes one) is told when the change is sent and when it is answered.
        """
        observe = observe or _unobserved
        body: dict[str, Any] = {"server_id": server_id, "name": name}
        if description is not None:
            body["description"] = description
        response = await self._send(
            "POST",
            f"{self._base_url}/snapshots/",
            json=body,
            operation="create",
            target=f"server {server_id}",
            observe=observe,
        )
        try:
            data = self._cleaned_json(response)
            created = CreatedSnapshot(snapshot=Snapshot.model_validate(data), message=_optional_str(data, "message"))
        except (ValueError, UnicodeDecodeError):  # ValidationError is a ValueError too
            observe(ChangeEvent("POST", "answered", operation="create"))
            # A 2xx means the provider took it; only its answer is unreadable.
            raise UpstreamError(
                f"the provider accepted the snapshot (HTTP {response.status_code}) but its answer could not be "
                f"read, so the new snapshot's id is unknown. Call list_snapshots for server {server_id} to find "
                "it; creating it again with the same name returns it instead of making a duplicate.",
                status=response.status_code,
            ) from None
        observe(ChangeEvent("POST", "answered", created.snapshot.id, operation="create"))
        if created.snapshot.server_id not in (None, server_id):
            raise UpstreamError(
                f"the provider accepted the snapshot of server {server_id} but answered with snapshot "
                f"{created.snapshot.id} of server {created.snapshot.server_id}, so what it made is uncertain. "
                f"Call list_snapshots for server {server_id} before trying again.",
                status=response.status_code,
            )
        if created.snapshot.server is None:
            # The provider left the server out: it is the one asked for (and the allowed-server checks need it).
            created = created.model_copy(
                update={"snapshot": created.snapshot.model_copy(update={"server": ServerRef(id=server_id)})}
            )
        return created

    async def restore_snapshot(self, snapshot_id: int, *, observe: ChangeObserver | None = None) -> RestoreStarted:
        """Start restoring the snapshot's server to it. Overwrites the server; cannot be undone."""
        observe = observe or _unobserved
        response = await self._send(
            "POST",
            f"{self._base_url}/snapshots/{snapshot_id}/restore/",
            operation="restore",
            target=f"snapshot {snapshot_id}",
            observe=observe,
        )
        observe(ChangeEvent("POST", "answered", snapshot_id, operation="restore"))
        try:
            return RestoreStarted.model_validate(self._cleaned_json(response))
        except (ValueError, UnicodeDecodeError):
            # The provider said 2xx: the restore has started, whatever the body looks like.
            logger.warning("restore of snapshot %s started, but the provider's answer was unreadable", snapshot_id)
            return RestoreStarted(status="success")

    async def delete_snapshot(self, snapshot_id: int, *, observe: ChangeObserver | None = None) -> None:
        """Delete the snapshot for good. The provider answers 204."""
        observe = observe or _unobserved
        url = f"{self._base_url}/snapshots/{snapshot_id}/"
        await self._send("DELETE", url, operation="delete", target=f"snapshot {snapshot_id}", observe=observe)
        observe(ChangeEvent("DELETE", "answered", snapshot_id, operation="delete"))

    # --- the one request path --------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str,
        *,
        operation: Operation,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        target: str = "",
        observe: ChangeObserver = _unobserved,
    ) -> httpx2.Response:
        policy = self._retry
        retryable = method in policy.retry_methods
        may_have_landed = False
        attempt = 0
        while True:
            attempt += 1
            last_attempt = not retryable or attempt >= policy.max_attempts
            started = time.perf_counter()
            if method != "GET":
                observe(ChangeEvent(method, "sent", operation=operation))
            try:
                async with self._in_flight:
                    response = await self._request(method, url, params=params, json=json)
            except httpx2.TimeoutException as exc:
                raise self._timeout_error(exc, method, operation) from None
            except httpx2.TransportError as exc:
                never_sent = isinstance(exc, httpx2.ConnectError)
                if last_attempt:
                    raise self._connection_error(exc, method, operation, never_sent) from None
                may_have_landed = may_have_landed or not never_sent
                delay = policy.backoff_s(attempt, self._rand)
                logger.info(
                    "%s %s: %s; retrying in %.1f s (attempt %d of %d)",
                    method, _path(url), type(exc).__name__, delay, attempt + 1, policy.max_attempts,
                )  # fmt: skip
                await self._sleep(delay)
                continue

            status = response.status_code
            if logger.isEnabledFor(logging.DEBUG):  # its arguments cost a URL parse
                elapsed_ms = (time.perf_counter() - started) * 1000
                logger.debug("%s %s -> %d (%.0f ms)", method, _path(url), status, elapsed_ms)
            if 200 <= status < 300:
                return response
            if status == 404 and method == "DELETE" and may_have_landed:
                # An earlier attempt most likely deleted it; the goal is reached.
                logger.info("%s %s: 404 on a retry after an attempt that may have landed", method, _path(url))
                return response
            if status in policy.retry_statuses and not last_attempt:
                wait = self._retry_delay(response, attempt)
                if wait is not None:
                    may_have_landed = may_have_landed or status != 429
                    logger.info(
                        "%s %s: HTTP %d; retrying in %.1f s (attempt %d of %d)",
                        method, _path(url), status, wait, attempt + 1, policy.max_attempts,
                    )  # fmt: skip
                    await self._sleep(wait)
                    continue
            raise self._error_for(response, operation, target)

    async def _request(self, method: str, url: str, *, params: Mapping[str, Any] | None, json: Any) -> httpx2.Response:
        """One request, its answer read in full but never more than `max_response_bytes` (once decompressed)."""
        request = self._http.build_request(method, url, params=params, json=json)
        response = await self._http.send(request, stream=True)
        try:
            declared = response.headers.get("content-length", "")
            declared = declared if declared.isascii() else ""  # isdigit() holds for superscripts; int() refuses
            if declared.isdigit() and int(declared) > self._max_response_bytes:
                raise self._too_large(method, response.status_code)
            if declared.isdigit() and "content-encoding" not in response.headers:
                # HTTP/1.1 framing reads exactly the declared length, within the limit: read it as it comes.
                await response.aread()
                return response
            body = bytearray()
            async for chunk in response.aiter_bytes():  # decoded: a compressed bomb is bounded too
                body += chunk
                if len(body) > self._max_response_bytes:
                    raise self._too_large(method, response.status_code)
        finally:
            await response.aclose()
        # The body is decoded already, so the answer is rebuilt without its transfer headers.
        headers = [
            (key, value)
            for key, value in response.headers.multi_items()
            if key.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx2.Response(response.status_code, headers=headers, content=bytes(body), request=request)

    def _too_large(self, method: str, status: int) -> UpstreamError:
        limit = f"{self._max_response_bytes:,} bytes"
        if method == "GET":
            return UpstreamError(
                f"the provider's answer is larger than {limit}, the most this server reads "
                "(--max-response-bytes). Nothing was changed.",
                status=status,
            )
        return UpstreamError(
            f"the provider answered HTTP {status} with more than {limit}; the change may or may not have been "
            "made. Check with list_snapshots before trying again.",
            status=status,
        )

    def _retry_delay(self, response: httpx2.Response, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when Retry-After asks for too long."""
        floor = self._retry.backoff_s(attempt, self._rand)
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=self._now())
        if retry_after is None:
            return floor
        if retry_after > self._retry.max_retry_after_s:
            return None
        return max(retry_after, floor)

    # --- mapping failures to the error tree ------------------------------------------------------

    def _error_for(self, response: httpx2.Response, operation: Operation, target: str) -> ProviderError:
        status = response.status_code
        said = provider_message(response, *self._secrets)
        quoted_said = _as_provider_said(said)
        if status == 401:
            return UnauthorizedError(
                "the provider rejected the API token (HTTP 401); check VPS_API_TOKEN. Nothing was changed.",
                status=status,
            )
        if status == 403:
            return UnauthorizedError(
                f"the API token is not allowed to do this (HTTP 403){quoted_said}. Nothing was changed.",
                status=status,
            )
        if status == 404:
            return NotFoundError(_not_found_message(operation, target), status=status)
        if status == 429:
            wait = parse_retry_after(response.headers.get("retry-after"), now=self._now())
            when = f"wait {wait:.0f} s" if wait is not None else "wait a little"
            return RateLimitedError(
                f"the provider is rate limiting requests; {when} and try again. Nothing was changed.",
                status=status,
                retry_after_s=wait,
            )
        if 400 <= status < 500:
            return _bad_request_error(status, said, operation, target)
        if 300 <= status < 400:
            what = f"an unexpected redirect (HTTP {status})"
        elif said:
            what = f"HTTP {status}{quoted_said}"
        elif provider_message_is_html(response):
            what = f"HTTP {status} with an HTML error page"
        else:
            what = f"HTTP {status}"
        return UpstreamError(self._ambiguous(operation, what), status=status)

    @staticmethod
    def _ambiguous(operation: Operation, what: str, *, happened: str = "the provider failed with") -> str:
        """A failure message that is honest about whether anything changed."""
        if operation == "list":
            return f"{happened} {what}; try again shortly. Nothing was changed."
        if operation == "delete":
            return (
                f"{happened} {what}; the snapshot may or may not have been deleted. "
                "Check with list_snapshots before trying again."
            )
        return (
            f"{happened} {what}; the {operation} may or may not have started. "
            "Check with list_snapshots before trying again, so as not to do it twice."
        )

    def _timeout_error(self, exc: httpx2.TimeoutException, method: str, operation: Operation) -> ProviderError:
        if isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout) or method == "GET":
            return ProviderTimeoutError("the provider did not answer in time; try again shortly. Nothing was changed.")
        return ProviderTimeoutError(
            self._ambiguous(operation, f"no answer within {self._timeout_s:g} s", happened="the provider sent")
        )

    def _connection_error(
        self, exc: httpx2.TransportError, method: str, operation: Operation, never_sent: bool
    ) -> ProviderError:
        host = urlsplit(self._base_url).netloc
        reason = clean_text(str(exc), 80) or type(exc).__name__
        if never_sent or method == "GET":
            return ProviderConnectionError(
                f"could not reach the provider at {host} ({reason}); try again shortly. Nothing was changed."
            )
        return ProviderConnectionError(
            self._ambiguous(
                operation, f"a broken connection ({reason})", happened="the connection to the provider failed with"
            )
        )

    # --- parsing ---------------------------------------------------------------------------------

    def _cleaned_json(self, response: httpx2.Response) -> Any:
        """The answer's JSON with every string in it cleaned (normalised, redacted). Raises ValueError."""
        return parse_clean_json(response.content, *self._secrets)

    def _json(self, response: httpx2.Response) -> Any:
        """The JSON of a read's answer, cleaned; an UpstreamError when it is not JSON this server reads."""
        try:
            return self._cleaned_json(response)
        except NotJson as exc:
            kind = "an HTML page" if provider_message_is_html(response) else exc.kind
            raise UpstreamError(
                f"the provider answered HTTP {response.status_code} with {kind} instead of JSON. Nothing was changed.",
                status=response.status_code,
            ) from None

    @staticmethod
    def _parse_page(data: Any) -> tuple[list[Snapshot], str | None, int]:
        """The page's snapshots, its `next` link, and how many records it held (valid or not)."""
        if isinstance(data, list):  # an unpaginated provider that returns a bare array
            raw_items, next_link = data, None
        elif isinstance(data, dict) and isinstance(data.get("results"), list):
            raw_items = data["results"]
            next_link = data.get("next") if isinstance(data.get("next"), str) else None
        else:
            raise UpstreamError("the provider's snapshot list has an unexpected shape (no 'results' list)")
        snapshots: list[Snapshot] = []
        for raw in raw_items:
            try:
                snapshots.append(Snapshot.model_validate(raw))
            except ValidationError:
                # A record without a usable id cannot be shown or acted on; skip it loudly.
                logger.warning("skipping a snapshot record the provider sent without a valid id")
        return snapshots, next_link, len(raw_items)

    def _follow(self, link: str, *, current: str) -> str:
        try:
            url = urljoin(current, link)
            parts = urlsplit(url)
            httpx2.URL(url)  # what sending it would parse: a NUL, a bad IPv6 host, 64 KB of path
        except (ValueError, httpx2.InvalidURL):
            raise UpstreamError(
                "the provider's pagination link is not a valid URL; not following it. Nothing was changed."
            ) from None
        if (parts.scheme, parts.netloc) != self._origin:
            # Following it would send the API token to another host.
            raise UpstreamError("the provider's pagination link points outside the API; not following it")
        return url


def provider_message_is_html(response: httpx2.Response) -> bool:
    text = _body_text(response)
    return text is not None and _looks_like_html(response, text)


def _body_text(response: httpx2.Response) -> str | None:
    """The body as text, decoded as every provider body is, whatever charset it declares; None if it is not UTF-8."""
    try:
        return decode_body(response.content)
    except NotJson:
        return None


def _optional_str(data: Any, key: str) -> str | None:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _path(url: str) -> str:
    return urlsplit(url).path


def _not_found_message(operation: Operation, target: str) -> str:
    if operation == "create":
        return f"{target} does not exist; check the server id. Nothing was created."
    if operation in ("restore", "delete"):
        return f"{target} does not exist (it may have been deleted); call list_snapshots. Nothing was changed."
    return "the provider answered 404 for the snapshot list; check VPS_API_URL. Nothing was changed."


def _as_provider_said(said: str | None) -> str:
    """` (provider: "...")` to append to an error, quoted as data; empty when the provider said nothing."""
    return f" (provider: {quoted(said)})" if said else ""


def _bad_request_error(status: int, said: str | None, operation: Operation, target: str) -> ProviderError:
    """Tell a 400's meaning apart by the provider's message and the endpoint it came from."""
    text = (said or "").lower()
    quoted_said = _as_provider_said(said)
    if "limit" in text or "quota" in text or "maximum" in text:
        return QuotaExceededError(
            f"{target} already has the most snapshots the provider allows (5){quoted_said}; delete an old "
            "snapshot first. Nothing was created.",
            status=status,
        )
    if operation == "restore" or "state" in text or "restoring" in text or "in progress" in text:
        return InvalidStateError(
            f"the provider refused: {target} is not in a state that allows this{quoted_said}. Wait for the "
            "running snapshot or restore to finish (list_snapshots shows statuses), then try again. "
            "Nothing was changed.",
            status=status,
        )
    return InvalidRequestError(
        f"the provider rejected the request (HTTP {status}){quoted_said}; fix the arguments and try again. "
        "Nothing was changed.",
        status=status,
    )
