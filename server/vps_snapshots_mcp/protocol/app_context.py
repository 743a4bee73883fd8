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

from ..errors import ForbiddenError
from ..provider.single_flight import SingleFlight
from ..settings import Settings
from ..timing import Timing
from .provider_errors import Worded

if TYPE_CHECKING:
    from ..consent.tokens import ConfirmationTokens
    from ..models import Snapshot
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
    ) -> None:
        self.settings = settings
        self.timing = timing
        self.tokens = tokens
        self.ledger = ledger
        self._open_client = open_client
        self.creates: SingleFlight[tuple[int, str], tuple[Snapshot, bool]] = SingleFlight()
        """Find-or-create of one name on one server, shared by concurrent calls."""

    # No await happens while one of these is made, so concurrent calls cannot make two.
    @cached_property
    def client(self) -> SnapshotsProvider:
        return Worded(self._open_client())  # its errors in the tools' words

    @cached_property
    def watches(self) -> SnapshotWatches:
        from ..waiting import SnapshotWatches

        return SnapshotWatches(self.client, self.timing)

    @property
    def client_opened(self) -> bool:
        return "client" in self.__dict__  # where cached_property keeps what it made

    def check_server_allowed(self, server_id: int | None, *, what: str) -> None:
        allowed = self.settings.allowed_servers
        if allowed is None or server_id in allowed:
            return
        ids = ", ".join(str(i) for i in sorted(allowed))
        target = f"server {server_id}" if server_id is not None else "a server the provider did not name"
        raise ForbiddenError(
            f"{what} touches {target}, but this MCP server may only touch servers {ids}. "
            "Nothing was changed. Ask the operator if that server should be allowed."
        )


def app_of(ctx: Context[AppContext, Any]) -> AppContext:
    return ctx.request_context.lifespan_context
