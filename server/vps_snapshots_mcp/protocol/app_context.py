"""What every tool call can reach: the settings, and the resources the server's lifespan owns.

The provider client, and the waits shared through it, are made at the first
call that uses them, not when the server starts: a host starts the server far
more often than it calls a tool, and answering `initialize` and `tools/list`
needs neither (nor the modules that define them and the provider's records).
The consent ledger is made at start: it is cheap (SQLite and Redis connect at
their first use).
The lifespan closes whatever was opened.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import Context

from ..access import EVERYONE, AccessPolicy
from ..audit import Attempt
from ..settings import Settings
from ..timing import Timing
from .provider_errors import Worded

if TYPE_CHECKING:
    from ..consent.tokens import ConfirmationTokens
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
        tokens: ConfirmationTokens,
        ledger: ConsentLedger,
        open_client: Callable[[], SnapshotsProvider],
        access: AccessPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.timing = timing
        self.tokens = tokens
        self.ledger = ledger
        self.access = access or AccessPolicy.from_settings(settings)
        self._open_client = open_client
        self.attempts: dict[int, Attempt] = {}
        """The audit event of each tools/call in progress, by its Context (see `attempt_of`)."""

    # No await happens while one of these is made, so concurrent calls cannot make two.
    @cached_property
    def client(self) -> SnapshotsProvider:
        return Worded(self._open_client())  # its errors in the tools' words

    @cached_property
    def watches(self) -> SnapshotWatches:
        from ..waiting import SnapshotWatches

        return SnapshotWatches(self.client, self.timing)

    @cached_property
    def operations(self) -> Operations:
        from ..operations import Operations

        return Operations(self.client, self.watches, self.timing, self.access)

    @property
    def client_opened(self) -> bool:
        return "client" in self.__dict__  # where cached_property keeps what it made

    def check_server_allowed(self, server_id: int | None, *, what: str) -> None:
        """Refuse (forbidden) a call touching a server the access policy does not allow."""
        self.access.check_server(server_id, EVERYONE, what=what)


def app_of(ctx: Context[AppContext, Any]) -> AppContext:
    return ctx.request_context.lifespan_context


def attempt_of(ctx: Context[AppContext, Any]) -> Attempt:
    """This call's audit event, which the protocol adapter opened for it (keyed by the call's own Context, which
    the SDK hands unchanged to the tool and its resolvers); a throwaway one when the call was not opened there."""
    return app_of(ctx).attempts.get(id(ctx)) or Attempt(tool="")
