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
    ├── UnknownToolError               unknown_tool       no tool of that name in this access mode
    ├── ForbiddenError                 forbidden          outside this server's access mode
    ├── ConfirmationInvalidError       confirmation_invalid
    └── StateUnavailableError          state_unavailable  the consent ledger cannot be reached

Each class also carries its audit `outcome`: "refused" when this server or the
provider said no before anything changed, "failed" when the provider failed or
could not be reached and the outcome may be unknown. `ERROR_CODES` is derived
from this tree, so a new class is documented and tested by being declared.

Messages never carry the API token, request headers or HTML: the provider's own
text is cleaned and truncated by the client before it gets here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

AuditOutcome = Literal["refused", "failed"]


@dataclass
class Target:
    """What an error concerns, when the call had got that far: for the audit trail."""

    server_id: int | None = None
    snapshot_id: int | None = None
    snapshot_name: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class SnapshotsError(Exception):
    """Base of every error this package reports. `code` is stable."""

    code: ClassVar[str] = "error"
    outcome: ClassVar[AuditOutcome] = "refused"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.target: Target | None = None

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
    outcome = "failed"

    def __init__(self, message: str, *, status: int | None = 429, retry_after_s: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class UpstreamError(ProviderError):
    code = "upstream_error"
    outcome = "failed"


class ProviderTimeoutError(ProviderError):
    code = "timeout"
    outcome = "failed"


class ProviderConnectionError(ProviderError):
    code = "connection_error"
    outcome = "failed"


class SnapshotFailedError(SnapshotsError):
    code = "snapshot_failed"
    outcome = "failed"


class InvalidArgumentError(SnapshotsError):
    code = "invalid_argument"


class ForbiddenError(SnapshotsError):
    code = "forbidden"


class ConfirmationInvalidError(SnapshotsError):
    code = "confirmation_invalid"


class UnknownToolError(SnapshotsError):
    code = "unknown_tool"


class StateUnavailableError(SnapshotsError):
    """The consent ledger (SQLite or Redis) cannot record a consent, so no change may run."""

    code = "state_unavailable"


def _leaves_and_branches(cls: type[SnapshotsError]) -> list[type[SnapshotsError]]:
    found: list[type[SnapshotsError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_leaves_and_branches(sub))
    return found


ERROR_CODES: tuple[str, ...] = tuple(
    dict.fromkeys(cls.code for cls in _leaves_and_branches(SnapshotsError) if "code" in vars(cls))
)
"""Every stable code, in the order of the tree above, derived from the classes themselves."""
