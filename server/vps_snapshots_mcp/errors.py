"""One error tree with stable codes.

Every failure the server can report is a `SnapshotsError` whose `code` is a
stable string that clients, runbooks and tests may depend on. `str(error)` is
`"<code>: <message>"`, written for a model to act on.

    SnapshotsError
    ├── ProviderError                  the provider answered, or could not be reached
    │   ├── UnauthorizedError          unauthorized       the token was refused
    │   ├── NotFoundError              not_found          no such snapshot or server
    │   ├── QuotaExceededError         quota_exceeded     a 4xx saying "snapshot limit reached"
    │   ├── InvalidStateError          invalid_state      a 4xx saying "not in a valid state"
    │   ├── InvalidRequestError        invalid_request    any other 4xx
    │   ├── RateLimitedError           rate_limited       the provider asks to slow down
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

The HTTP statuses that name a provider error by themselves are declared once,
on the classes (`statuses`), and gathered in `STATUS_ERRORS`, which the client
maps answers with.

Messages never carry the API token, request headers or HTML: the provider's own
text is cleaned and truncated by the client before it gets here. A provider
error also carries it as data (`said`), with the HTTP `status` and the wait the
provider asked for (`retry_after_s`). The provider speaks no tool language:
what to do next, when that means naming a tool, a flag or a setting, is an
`Advice` that the protocol layer words into the message
(`protocol/provider_errors.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

AuditOutcome = Literal["refused", "failed"]

AdviceKind = Literal[
    "check_api_token",  # the token setting
    "check_api_url",  # the API URL setting
    "see_list",  # read the snapshot list to see what there is
    "see_list_now",  # read the snapshot list: what was asked for may be gone
    "check_list",  # read the list before trying a change again: it may have happened
    "check_list_once",  # the same, for a change that must not happen twice
    "list_shows_statuses",  # the list shows what is running
    "find_created",  # a create was taken but its answer unreadable: find it in the server's list
    "list_server",  # read the server's list before trying again
    "max_records",  # the setting that bounds the records read
    "max_response_bytes",  # the setting that bounds an answer's size
]


@dataclass(frozen=True)
class Advice:
    """What to do next, worded by the layer that knows the tools: its kind, and where in the message it goes.

    `at` indexes the message as the provider made it: the protocol layer words the advice as the error
    leaves the provider port, before anything else touches the message.
    """

    kind: AdviceKind
    at: int
    server_id: int | None = None


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
    """The provider refused the request, failed, or could not be reached.

    `status` is the HTTP status when the provider answered, `said` its own explanation (cleaned, redacted,
    truncated; None when it gave none worth quoting), `retry_after_s` the wait it asked for, and `advice` what
    to do next, for the protocol layer to word (then None).
    """

    statuses: ClassVar[tuple[int, ...]] = ()
    """The HTTP statuses that mean this error whatever the provider says (`STATUS_ERRORS`)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        said: str | None = None,
        retry_after_s: float | None = None,
        advice: Advice | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.said = said
        self.retry_after_s = retry_after_s
        self.advice = advice


class UnauthorizedError(ProviderError):
    code = "unauthorized"
    statuses = (401, 403)


class NotFoundError(ProviderError):
    code = "not_found"
    statuses = (404,)


class QuotaExceededError(ProviderError):
    code = "quota_exceeded"


class InvalidStateError(ProviderError):
    code = "invalid_state"


class InvalidRequestError(ProviderError):
    code = "invalid_request"


class RateLimitedError(ProviderError):
    code = "rate_limited"
    outcome: ClassVar[AuditOutcome] = "failed"
    statuses: ClassVar[tuple[int, ...]] = (429,)


class ChangeBudgetError(RateLimitedError):
    """The caller's change budget (restores + deletes per hour, `--policy`) is spent: nothing was sent."""

    outcome: ClassVar[AuditOutcome] = "refused"
    statuses: ClassVar[tuple[int, ...]] = ()


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


STATUS_ERRORS: Mapping[int, type[ProviderError]] = {
    status: cls
    for cls in _leaves_and_branches(ProviderError)
    if issubclass(cls, ProviderError)
    for status in cls.statuses
}
"""The provider's HTTP statuses that name one error by themselves. Any other 4xx is told apart by what the
provider says (quota_exceeded, invalid_state, invalid_request); a 3xx or 5xx is an upstream_error."""
