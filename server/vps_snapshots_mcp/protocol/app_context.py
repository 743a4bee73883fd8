"""What every tool call can reach: the settings, and the resources the server's lifespan owns.

The provider client, and the waits shared through it, are made at the first
call that uses them, not when the server starts: a host starts the server far
more often than it calls a tool, and answering `initialize` and `tools/list`
needs neither (nor the modules that define them and the provider's records).
The consent ledger is made at start: it is cheap (SQLite and Redis connect at
their first use).

With a policy that names provider credentials, each credential is a lane of its
own (a client, its waits, its operations), made at the first call that needs
it; the access policy answers which lane the caller's call uses, so one team's
token never serves another team's call. The lifespan closes whatever was opened.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from mcp.server.mcpserver import Context

from ..access import AccessPolicy
from ..audit import Attempt
from ..policy import Action
from ..settings import Settings
from ..timing import Timing
from .principal import current_principal
from .provider_errors import Worded
from .sdk import request_context_of

if TYPE_CHECKING:
    from ..consent.approvals import Approvals
    from ..consent.tokens import ConfirmationTokens
    from ..metrics import Metrics
    from ..operations import Operations
    from ..provider import SnapshotsProvider
    from ..state import ConsentLedger
    from ..waiting import SnapshotWatches


class AppContext:
    """Lives as long as the server's lifespan, which opens and closes everything here."""

    def __init__(
        self,
        *,
        settings: Settings,
        timing: Timing,
        tokens: Callable[[], ConfirmationTokens],
        approvals: Callable[[], Approvals],
        ledger: ConsentLedger,
        open_client: Callable[[str | None], SnapshotsProvider],
        access: AccessPolicy | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """`tokens` and `approvals` make the confirmation tokens and the approval service when a call first needs
        them: a start-up that only lists tools does not load the consent modules."""
        self.metrics = metrics
        """The server's instruments (`metrics.py`): HTTP only; None on stdio, which keeps none."""
        self.settings = settings
        self.timing = timing
        self._make_tokens = tokens
        self.ledger = ledger
        self.access = access or AccessPolicy.from_settings(settings)
        self._make_approvals = approvals
        self._open_client = open_client
        self._lanes: dict[str | None, Lane] = {}
        """One per provider credential in use (None: the server's own token)."""
        self.attempts: dict[int, Attempt] = {}
        """The audit event of each tools/call in progress, by its Context (see `attempt_of`)."""

    @cached_property
    def tokens(self) -> ConfirmationTokens:
        """Confirmation tokens: minted by previews, verified by confirmed calls."""
        return self._make_tokens()

    @cached_property
    def approvals(self) -> Approvals:
        """The approval service (`--consent url`): the tools propose and redeem, the approval page decides."""
        return self._make_approvals()

    def count_consent(self, action: str, channel: str, stage: str) -> None:
        """A stage of the consent funnel, into the metrics if there are any."""
        if self.metrics is not None:
            self.metrics.consent(action, channel, stage)

    def lane(self) -> Lane:
        """The provider account the calling principal's calls use (forbidden when the policy gives it two)."""
        credential = self.access.credential_for(current_principal())
        # No await happens while one is made, so concurrent calls cannot make two.
        lane = self._lanes.get(credential)
        if lane is None:
            lane = self._lanes[credential] = Lane(self, credential)
        return lane

    @property
    def client(self) -> SnapshotsProvider:
        return self.lane().client

    @property
    def watches(self) -> SnapshotWatches:
        return self.lane().watches

    @property
    def operations(self) -> Operations:
        return self.lane().operations

    @property
    def client_opened(self) -> bool:
        return any(lane.client_opened for lane in self._lanes.values())

    async def aclose_clients(self) -> None:
        """Close every provider client opened (each lane's), whatever one of them raises."""
        lanes, self._lanes = list(self._lanes.values()), {}
        errors: list[BaseException] = []
        for lane in lanes:
            if lane.client_opened:
                try:
                    await lane.client.aclose()
                except Exception as exc:  # the others are closed all the same
                    errors.append(exc)
        if errors:
            raise errors[0]

    def check_server_allowed(self, server_id: int | None, *, what: str, action: Action = "read") -> None:
        """Refuse (forbidden) a call doing `action` on a server the access policy does not let the caller."""
        self.access.check_server(server_id, current_principal(), what=what, action=action)


class Lane:
    """One provider account: its client, the waits shared through it, and the operations over it."""

    def __init__(self, app: AppContext, credential: str | None) -> None:
        self._app = app
        self.credential = credential

    @cached_property
    def client(self) -> SnapshotsProvider:
        return Worded(self._app._open_client(self.credential))  # its errors in the tools' words

    @cached_property
    def watches(self) -> SnapshotWatches:
        from ..waiting import SnapshotWatches

        return SnapshotWatches(self.client, self._app.timing, self._app.metrics)

    @cached_property
    def operations(self) -> Operations:
        from ..operations import Operations

        return Operations(self.client, self.watches, self._app.timing, self._app.access, self._app.ledger)

    @property
    def client_opened(self) -> bool:
        return "client" in self.__dict__  # where cached_property keeps what it made


def app_of(ctx: Context[AppContext, Any]) -> AppContext:
    return cast(AppContext, request_context_of(ctx).lifespan_context)


def attempt_of(ctx: Context[AppContext, Any]) -> Attempt:
    """This call's audit event, which the protocol adapter opened for it (keyed by the call's own Context, which
    the SDK hands unchanged to the tool and its resolvers); a throwaway one when the call was not opened there."""
    return app_of(ctx).attempts.get(id(ctx)) or Attempt(tool="")
