"""What every tool call can reach: the resources the server's lifespan opened, and the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import Context

from .client import SnapshotsClient
from .confirm import ConfirmationTokens
from .errors import ForbiddenError
from .models import Snapshot
from .settings import Settings
from .single_flight import SingleFlight
from .state import ConsentLedger
from .timing import Timing
from .waiting import SnapshotWatches


@dataclass(frozen=True)
class AppContext:
    """Lives as long as the server's lifespan, which opens and closes everything here."""

    client: SnapshotsClient
    tokens: ConfirmationTokens
    ledger: ConsentLedger
    settings: Settings
    timing: Timing
    watches: SnapshotWatches
    creates: SingleFlight[tuple[int, str], tuple[Snapshot, bool]] = field(default_factory=SingleFlight)
    """Find-or-create of one name on one server, shared by concurrent calls."""

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
