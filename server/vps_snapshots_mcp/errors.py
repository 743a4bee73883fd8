"""One error tree with stable codes.

Every failure the server can report is a `SnapshotsError` whose `code` is a
stable string that clients, runbooks and tests may depend on. `str(error)` is
`"<code>: <message>"`, written for a model to act on.

    SnapshotsError
    ├── ProviderError                  the provider answered, or could not be reached
    │   ├── UnauthorizedError          unauthorized       401
    │   ├── NotFoundError              not_found          404
    │   ├── QuotaExceededError         quota_exceeded     400 "snapshot limit reached"
    │   ├── InvalidStateError          invalid_state      400 "not in a valid state"
    │   ├── InvalidRequestError        invalid_request    other 400s
    │   ├── RateLimitedError           rate_limited       429
    │   ├── UpstreamError              upstream_error     5xx, HTML, garbage, wrong shape
    │   ├── ProviderTimeoutError       timeout
    │   └── ProviderConnectionError    connection_error
    ├── SnapshotFailedError            snapshot_failed    a snapshot ended `failed`
    ├── InvalidArgumentError           invalid_argument   the caller's arguments are wrong
    ├── ForbiddenError                 forbidden          outside this server's access mode
    └── ConfirmationInvalidError       confirmation_invalid

Messages never carry the API token, request headers or HTML: the provider's own
text is cleaned and truncated by the client before it gets here.
"""

from __future__ import annotations

from typing import ClassVar


class SnapshotsError(Exception):
    """Base of every error this package reports. `code` is stable."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ProviderError(SnapshotsError):
    """The provider refused the request, failed, or could not be reached."""


class UnauthorizedError(ProviderError):
    code = "unauthorized"


class NotFoundError(ProviderError):
    code = "not_found"


class QuotaExceededError(ProviderError):
    code = "quota_exceeded"


class InvalidStateError(ProviderError):
    code = "invalid_state"


class InvalidRequestError(ProviderError):
    code = "invalid_request"


class RateLimitedError(ProviderError):
    code = "rate_limited"

    def __init__(self, message: str, *, status: int | None = 429, retry_after_s: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class UpstreamError(ProviderError):
    code = "upstream_error"


class ProviderTimeoutError(ProviderError):
    code = "timeout"


class ProviderConnectionError(ProviderError):
    code = "connection_error"


class SnapshotFailedError(SnapshotsError):
    code = "snapshot_failed"


class InvalidArgumentError(SnapshotsError):
    code = "invalid_argument"


class ForbiddenError(SnapshotsError):
    code = "forbidden"


class ConfirmationInvalidError(SnapshotsError):
    code = "confirmation_invalid"


ERROR_CODES: tuple[str, ...] = tuple(
    cls.code
    for cls in (
        UnauthorizedError,
        NotFoundError,
        QuotaExceededError,
        InvalidStateError,
        InvalidRequestError,
        RateLimitedError,
        UpstreamError,
        ProviderTimeoutError,
        ProviderConnectionError,
        SnapshotFailedError,
        InvalidArgumentError,
        ForbiddenError,
        ConfirmationInvalidError,
    )
)
"""Every stable code, for documentation and tests."""
