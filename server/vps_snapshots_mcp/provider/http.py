"""The request path to the provider: the only module that imports the HTTP library, with the webhook (`webhook.py`).

One request path, `ProviderHttp.send`, owns authentication, timeouts, retries,
bounded reads, the concurrency limit and the change events, so every endpoint
(`client.py`) behaves the same way under failure.

Requests
    Every request carries `Authorization: Bearer <token>` and
    `Content-Type: application/json`, goes to the exact documented path with
    its trailing slash, and never follows redirects (a redirect could carry the
    token to another host). Pagination `next` links are followed only when they
    stay on the API's own origin (`follow`).

Retry policy
    - Only GET is retried: a read changes nothing, so it is safe to repeat.
      A change (POST create or restore, DELETE) is sent at most once, whatever
      fails: a second create makes a second snapshot, a second restore
      overwrites the server again, and a delete the user consented to is sent
      once.
    - Retried on: connection failures (refused, reset, closed mid-answer) and
      HTTP 429, 502, 503 and 504. Timeouts are not retried, so a call takes at
      most about one timeout; 500 is not retried (it is rarely transient).
    - At most `RetryPolicy.max_attempts` (3) attempts in all.
    - Between attempts: exponential backoff (0.5 s, 1 s, 2 s, ... capped at
      `max_backoff_s`) with "equal jitter" (a random point in the upper half of
      that interval), so retries never form a tight loop and clients spread out.
    - `Retry-After` (delta-seconds or HTTP date) replaces the backoff when
      present, but never goes below the backoff floor. If it asks for longer
      than `max_retry_after_s`, the client stops and reports `rate_limited` (or
      `upstream_error`) with the wait the provider asked for, instead of
      blocking the caller.
    - The sleep between attempts comes from `Timing` (`timing=`), so tests never wait.

Errors
    Every failure is a `ProviderError` with a stable code (see `errors.py`),
    made from the facts read here by `failures.py`. The provider's own message
    is taken from `detail`, `error` or `message` (or DRF-style field errors, or
    plain text), cleaned of control characters and truncated; an HTML page is
    never quoted.

Distrust
    Everything the provider sends is cleaned as it is parsed (`provider_text`):
    bodies are read as UTF-8 only (RFC 8259; an answer in UTF-16 or UTF-32 is an
    `upstream_error`, an error body in them is not quoted), NaN, Infinity and
    numbers too large for a float are refused, and every string, in answers and
    in error bodies, has lone surrogates replaced and the API token (or anything
    shaped like `Bearer <credential>`), plain or percent-encoded, removed,
    before it is stored, quoted, logged or audited, or followed as a link. An
    answer over `max_response_bytes` is an `upstream_error`.

Changes are observed
    Before a change goes out, and once the provider answered it 2xx, the
    observer the caller passed with that change (`observe=`) hears of it
    (`ChangeEvent`), so a call cancelled mid-change is recorded as what it was.
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
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import anyio
import httpx2
from pydantic import SecretStr

from .. import __version__, tracing
from ..errors import ProviderError, UpstreamError
from ..settings import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT_S
from ..timing import Timing
from .changes import ENDPOINTS, ChangeEvent, ChangeObserver, Operation, unobserved
from .failures import answer_error, connection_error, permanent_failure, timeout_error, too_large
from .text import NotJson, clean, clean_json, decode_body, parse_clean_json, parse_json_text

if TYPE_CHECKING:
    from ..metrics import Metrics

# The provider client's log keeps one name, whichever of its modules writes: hosts and operators filter on it.
logger = logging.getLogger("vps_snapshots_mcp.provider.client")


Transport = httpx2.AsyncBaseTransport
"""The seam between worlds: the default (real network), or an in-process ASGI app."""


def asgi_transport(app: Callable[..., Awaitable[None]]) -> Transport:
    """A transport that sends requests to an in-process ASGI app (the sandbox and tests)."""
    return httpx2.ASGITransport(app=app)


MAX_MESSAGE_CHARS = 200
"""How much of the provider's own error text is quoted back."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When and how long to retry a read. See the module docstring for the rules; a change is never retried."""

    max_attempts: int = 3
    base_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 20.0
    retry_statuses: frozenset[int] = frozenset({429, 502, 503, 504})

    def backoff_s(self, attempt: int, rand: Callable[[], float]) -> float:
        """Delay after failed attempt number `attempt` (1-based), with equal jitter."""
        ceiling = min(self.max_backoff_s, self.base_backoff_s * 2.0 ** (attempt - 1))
        return ceiling / 2 + rand() * ceiling / 2


RETRIED_METHODS = frozenset({"GET"})
"""Only reads are retried; every change is sent at most once."""
SERVER_RETRY_POLICY = RetryPolicy()
"""What the MCP server uses: the default."""


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


def provider_message_is_html(response: httpx2.Response) -> bool:
    text = _body_text(response)
    return text is not None and _looks_like_html(response, text)


def _body_text(response: httpx2.Response) -> str | None:
    """The body as text, decoded as every provider body is, whatever charset it declares; None if it is not UTF-8."""
    try:
        return decode_body(response.content)
    except NotJson:
        return None


def _path(url: str) -> str:
    return urlsplit(url).path


class ProviderHttp:
    """The one request path to the provider's API. `client.py` builds the endpoints on it."""

    def __init__(
        self,
        *,
        base_url: str,
        token: SecretStr,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        transport: Transport | None = None,
        retry: RetryPolicy | None = None,
        timing: Timing | None = None,
        rand: Callable[[], float] = random.random,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self.base_url = base_url.rstrip("/")
        base = urlsplit(self.base_url)
        self._origin = (base.scheme, base.netloc)
        self._server = (base.hostname or "", base.port or (443 if base.scheme == "https" else 80))
        self._templates = {operation: base.path + path for operation, path in ENDPOINTS.items()}
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy()
        self.secrets = (token.get_secret_value(),)
        self._max_response_bytes = max_response_bytes
        # At most this many requests in flight; the rest queue here (not in the pool), so a burst of
        # calls neither floods the provider nor fails with pool timeouts. A free slot is taken without
        # yielding to the event loop (a turn of the loop on every request cost about 70 us of a call).
        self._in_flight = anyio.Semaphore(max_concurrency, fast_acquire=True)
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

    async def aclose(self) -> None:
        if self._http_client is not None:
            await self._http_client.aclose()

    async def send(
        self,
        method: str,
        url: str,
        *,
        operation: Operation,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        target: str = "",
        observe: ChangeObserver = unobserved,
    ) -> httpx2.Response:
        """The answer to one request (2xx), reads retried by the policy; anything else as a `ProviderError`.

        A change (anything but GET) is told to `observe` just before it is sent."""
        policy = self._retry
        retryable = method in RETRIED_METHODS
        attempt = 0
        while True:
            attempt += 1
            last_attempt = not retryable or attempt >= policy.max_attempts
            started = time.perf_counter()
            if method != "GET":
                observe(ChangeEvent(method, "sent", operation=operation))
            try:
                async with self._in_flight:
                    response = await self._request(
                        method, url, params=params, json=json, op=operation, resend=attempt - 1
                    )
            except httpx2.TimeoutException as exc:
                self._measure(method, operation, None, started)
                before_sending = isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout)
                raise timeout_error(
                    before_sending=before_sending, method=method, operation=operation, timeout_s=self._timeout_s
                ) from None
            except httpx2.TransportError as exc:
                self._measure(method, operation, None, started, retry="" if last_attempt else "connection")
                if last_attempt:
                    raise self._connection_error(exc, method, operation) from None
                delay = policy.backoff_s(attempt, self._rand)
                logger.info(
                    "%s %s: %s; retrying in %.1f s (attempt %d of %d)",
                    method, _path(url), type(exc).__name__, delay, attempt + 1, policy.max_attempts,
                )  # fmt: skip
                await self._sleep(delay)
                continue

            status = response.status_code
            self._measure(method, operation, status, started, len(response.content))
            if logger.isEnabledFor(logging.DEBUG):  # its arguments cost a URL parse
                elapsed_ms = (time.perf_counter() - started) * 1000
                logger.debug("%s %s -> %d (%.0f ms)", method, _path(url), status, elapsed_ms)
            if 200 <= status < 300:
                return response
            if status in policy.retry_statuses and not last_attempt:
                wait = self._retry_delay(response, attempt)
                if wait is not None:
                    self._measure(method, operation, None, None, retry=str(status))
                    logger.info(
                        "%s %s: HTTP %d; retrying in %.1f s (attempt %d of %d)",
                        method, _path(url), status, wait, attempt + 1, policy.max_attempts,
                    )  # fmt: skip
                    await self._sleep(wait)
                    continue
            raise answer_error(
                status,
                said=provider_message(response, *self.secrets),
                html=provider_message_is_html(response),
                retry_after_s=parse_retry_after(response.headers.get("retry-after"), now=self._now()),
                operation=operation,
                target=target,
            )

    async def _request(
        self, method: str, url: str, *, params: Mapping[str, Any] | None, json: Any, op: Operation, resend: int
    ) -> httpx2.Response:
        """One attempt, in its own span (`tracing.py`): the endpoint's template, never the URL, its ids or query."""
        with tracing.http_client_span(method, self._templates[op], *self._server, resend=resend) as span:
            response = await self._exchange(method, url, params=params, json=json)
            tracing.answered(span, response.status_code)
            return response

    async def _exchange(self, method: str, url: str, *, params: Mapping[str, Any] | None, json: Any) -> httpx2.Response:
        """One request, its answer read in full but never more than `max_response_bytes` (once decompressed)."""
        request = self._http.build_request(method, url, params=params, json=json)
        response = await self._http.send(request, stream=True)
        try:
            declared = response.headers.get("content-length", "")
            declared = declared if declared.isascii() else ""  # isdigit() holds for superscripts; int() refuses
            if declared.isdigit() and int(declared) > self._max_response_bytes:
                raise too_large(method=method, status=response.status_code, limit_bytes=self._max_response_bytes)
            if declared.isdigit() and "content-encoding" not in response.headers:
                # HTTP/1.1 framing reads exactly the declared length, within the limit: read it as it comes.
                await response.aread()
                return response
            body = bytearray()
            async for chunk in response.aiter_bytes():  # decoded: a compressed bomb is bounded too
                body += chunk
                if len(body) > self._max_response_bytes:
                    raise too_large(method=method, status=response.status_code, limit_bytes=self._max_response_bytes)
        finally:
            await response.aclose()
        # The body is decoded already, so the answer is rebuilt without its transfer headers.
        headers = [
            (key, value)
            for key, value in response.headers.multi_items()
            if key.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx2.Response(response.status_code, headers=headers, content=bytes(body), request=request)

    def _measure(
        self,
        method: str,
        operation: Operation,
        status: int | None,
        started: float | None,
        size: int = 0,
        retry: str = "",
    ) -> None:
        """One attempt (`started`) or a retry (`retry`: why) into the metrics, labelled by the endpoint's template."""
        if self._metrics is not None:
            template = ENDPOINTS[operation]
            if started is not None:
                self._metrics.provider_request(method, template, status, time.perf_counter() - started, size)
            if retry:
                self._metrics.provider_retry(method, template, retry)

    def _retry_delay(self, response: httpx2.Response, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when Retry-After asks for too long."""
        floor = self._retry.backoff_s(attempt, self._rand)
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=self._now())
        if retry_after is None:
            return floor
        if retry_after > self._retry.max_retry_after_s:
            return None
        return max(retry_after, floor)

    def _connection_error(self, exc: httpx2.TransportError, method: str, operation: Operation) -> ProviderError:
        return connection_error(
            never_sent=isinstance(exc, httpx2.ConnectError),
            method=method,
            operation=operation,
            host=urlsplit(self.base_url).netloc,
            reason=clean_text(str(exc), 80) or type(exc).__name__,
            permanent=permanent_failure(exc),
        )

    # --- reading answers at the boundary ---------------------------------------------------------

    def cleaned_json(self, response: httpx2.Response) -> Any:
        """The answer's JSON with every string in it cleaned (normalised, redacted). Raises ValueError."""
        return parse_clean_json(response.content, *self.secrets)

    def read_json(self, response: httpx2.Response) -> Any:
        """The JSON of a read's answer, cleaned; an UpstreamError when it is not JSON this server reads."""
        try:
            return self.cleaned_json(response)
        except NotJson as exc:
            kind = "an HTML page" if provider_message_is_html(response) else exc.kind
            raise UpstreamError(
                f"the provider answered HTTP {response.status_code} with {kind} instead of JSON. Nothing was changed.",
                status=response.status_code,
            ) from None

    def follow(self, link: str, *, current: httpx2.Response) -> str:
        """The absolute URL of a `next` link in the answer `current`, if it stays on the API's own origin."""
        try:
            url = urljoin(str(current.request.url), link)
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
