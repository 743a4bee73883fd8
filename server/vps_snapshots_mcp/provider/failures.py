"""What a failed request means, as an error of the tree (`errors.py`), from plain facts about it.

The request path (`http.py`) reads the facts off the wire: the HTTP status, the
provider's own message (already decoded, redacted and cleaned), whether the body
was an HTML page, the wait it asked for. Here they become one `ProviderError`,
with a message that is honest about whether anything changed, and those facts
kept as fields. What to do next, where that means naming a tool, a flag or a
setting, is an `Advice` for the protocol layer to word: this module speaks of
the provider, never of the tools.
"""

from __future__ import annotations

import socket
import ssl

from ..errors import (
    STATUS_ERRORS,
    Advice,
    AdviceKind,
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
from .changes import Operation
from .facts import SNAPSHOTS_PER_SERVER
from .text import quoted


def advice(kind: AdviceKind, before: str, *, server_id: int | None = None) -> Advice:
    """Advice to be worded right after `before`, the start of the message."""
    return Advice(kind, at=len(before), server_id=server_id)


def unsure(operation: Operation, what: str, *, happened: str = "the provider failed with") -> tuple[str, Advice | None]:
    """A failure's message that is honest about whether anything changed, and the advice that goes with it."""
    if operation == "list":
        return f"{happened} {what}; try again shortly. Nothing was changed.", None
    if operation == "delete":
        head = f"{happened} {what}; the snapshot may or may not have been deleted."
        return head, advice("check_list", head)
    head = f"{happened} {what}; the {operation} may or may not have started."
    return head, advice("check_list_once", head)


def answer_error(
    status: int,
    *,
    said: str | None,
    html: bool,
    retry_after_s: float | None,
    operation: Operation,
    target: str,
) -> ProviderError:
    """The error a non-2xx answer means, by its status, what the provider said and the endpoint it came from."""
    kind = STATUS_ERRORS.get(status)
    if kind is UnauthorizedError and status == 401:
        head = "the provider rejected the API token (HTTP 401)"
        return UnauthorizedError(
            head + ". Nothing was changed.", status=status, said=said, advice=advice("check_api_token", head)
        )
    if kind is UnauthorizedError:
        return UnauthorizedError(
            f"the API token is not allowed to do this (HTTP {status}){_as_said(said)}. Nothing was changed.",
            status=status,
            said=said,
        )
    if kind is NotFoundError:
        return _not_found(operation, target, status=status, said=said)
    if kind is RateLimitedError:
        when = f"wait {retry_after_s:.0f} s" if retry_after_s is not None else "wait a little"
        return RateLimitedError(
            f"the provider is rate limiting requests; {when} and try again. Nothing was changed.",
            status=status,
            said=said,
            retry_after_s=retry_after_s,
        )
    if 400 <= status < 500:
        return _bad_request(status, said, operation, target)
    if 300 <= status < 400:
        what = f"an unexpected redirect (HTTP {status})"
    elif said:
        what = f"HTTP {status}{_as_said(said)}"
    elif html:
        what = f"HTTP {status} with an HTML error page"
    else:
        what = f"HTTP {status}"
    message, next_step = unsure(operation, what)
    return UpstreamError(message, status=status, said=said, advice=next_step)


def timeout_error(*, before_sending: bool, method: str, operation: Operation, timeout_s: float) -> ProviderError:
    """No answer in time: a read, or a request that never left, changed nothing; a change may have happened."""
    if before_sending or method == "GET":
        return ProviderTimeoutError("the provider did not answer in time; try again shortly. Nothing was changed.")
    message, next_step = unsure(operation, f"no answer within {timeout_s:g} s", happened="the provider sent")
    return ProviderTimeoutError(message, advice=next_step)


def connection_error(
    *, never_sent: bool, method: str, operation: Operation, host: str, reason: str, permanent: bool = False
) -> ProviderError:
    """The connection failed: before sending, nothing changed; after, a change may have happened.

    A `permanent` failure (see `permanent_failure`) is one no retry fixes: the advice is to check the URL."""
    if never_sent or method == "GET":
        head = f"could not reach the provider at {host} ({reason})"
        if permanent:
            return ProviderConnectionError(head + ". Nothing was changed.", advice=advice("check_api_url", head))
        return ProviderConnectionError(f"{head}; try again shortly. Nothing was changed.")
    message, next_step = unsure(
        operation, f"a broken connection ({reason})", happened="the connection to the provider failed with"
    )
    return ProviderConnectionError(message, advice=next_step)


def permanent_failure(error: BaseException) -> bool:
    """True when a failed connection's cause is one that trying again does not fix: the name does not resolve
    (a DNS server that did not answer is transient), the TLS handshake failed (wrong scheme or port, a
    certificate refused), or nothing listens on the port. A timeout, a reset or a dropped connection is not."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        cause = pending.pop()
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, socket.gaierror):
            return cause.errno != socket.EAI_AGAIN
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLEOFError):
            return True
        if isinstance(cause, ConnectionRefusedError):
            return True
        pending += [c for c in (cause.__cause__, cause.__context__) if c is not None]
        pending += [c for c in getattr(cause, "exceptions", ()) if isinstance(c, BaseException)]
    return False


def too_large(*, method: str, status: int, limit_bytes: int) -> UpstreamError:
    """An answer over the size this server reads: a read changed nothing; a change may have happened."""
    limit = f"{limit_bytes:,} bytes"
    if method == "GET":
        head = f"the provider's answer is larger than {limit}, the most this server reads"
        return UpstreamError(head + ". Nothing was changed.", status=status, advice=advice("max_response_bytes", head))
    head = f"the provider answered HTTP {status} with more than {limit}; the change may or may not have been made."
    return UpstreamError(head, status=status, advice=advice("check_list", head))


def _not_found(operation: Operation, target: str, *, status: int, said: str | None) -> NotFoundError:
    if operation == "create":
        return NotFoundError(
            f"{target} does not exist; check the server id. Nothing was created.", status=status, said=said
        )
    if operation in ("restore", "delete"):
        head = f"{target} does not exist (it may have been deleted)"
        kind: AdviceKind = "see_list_now"
    else:
        head = "the provider answered 404 for the snapshot list"
        kind = "check_api_url"
    return NotFoundError(head + ". Nothing was changed.", status=status, said=said, advice=advice(kind, head))


def _as_said(said: str | None) -> str:
    """` (provider: "...")` to append to an error, quoted as data; empty when the provider said nothing."""
    return f" (provider: {quoted(said)})" if said else ""


def _bad_request(status: int, said: str | None, operation: Operation, target: str) -> ProviderError:
    """Tell a 4xx's meaning apart by the provider's message and the endpoint it came from."""
    text = (said or "").lower()
    as_said = _as_said(said)
    if "limit" in text or "quota" in text or "maximum" in text:
        return QuotaExceededError(
            f"{target} already has the most snapshots the provider allows ({SNAPSHOTS_PER_SERVER}){as_said}; "
            "delete an old snapshot first. Nothing was created.",
            status=status,
            said=said,
        )
    if operation == "restore" or "state" in text or "restoring" in text or "in progress" in text:
        head = (
            f"the provider refused: {target} is not in a state that allows this{as_said}. Wait for the running "
            "snapshot or restore to finish"
        )
        return InvalidStateError(
            head + ", then try again. Nothing was changed.",
            status=status,
            said=said,
            advice=advice("list_shows_statuses", head),
        )
    return InvalidRequestError(
        f"the provider rejected the request (HTTP {status}){as_said}; fix the arguments and try again. "
        "Nothing was changed.",
        status=status,
        said=said,
    )
