"""Who may do what: the one access policy, asked per request.

Every rule of the access mode is answered here, and nowhere else:

- which tools are offered (from each tool's own annotations: read-only tools
  always; `--read-only` leaves out the rest, `--no-destructive` the
  destructive ones) and which runbook prompts (those whose tools are offered);
- which server ids may be touched (`--allowed-servers`): a call naming another
  is refused, a list leaves the others out, completion never suggests them;
- which calls are audited (the ones that can change something);
- the one-line summary of the mode, for the model's instructions and the logs.

Each question takes the principal asking: the caller's `Principal.key` where
a caller is in hand (the operations are given it), or `EVERYONE` where the
answer is for all (tools/list and the instructions, made at start). For now
every principal gets `EVERYONE`'s answers, as the settings say; a policy per
caller (OAuth subject, static token) changes this module, not its callers.

No MCP import: the protocol adapter, the operations and a future approval page
ask the same policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from .errors import ForbiddenError
from .settings import Settings

EVERYONE: Final = "everyone"
"""The one principal access is decided for, for now."""

Reach = Literal["read", "write", "destructive"]
"""What a tool or prompt can do: look, add (create), or destroy (restore, delete)."""

_AUDITED: Final = frozenset({"create_snapshot", "restore_snapshot", "delete_snapshot"})

T = TypeVar("T")


def reach_of(annotations: Mapping[str, Any]) -> Reach:
    """A tool's reach, from its published annotations (tools/list JSON: readOnlyHint, destructiveHint)."""
    if annotations["readOnlyHint"]:
        return "read"
    return "destructive" if annotations["destructiveHint"] else "write"


@dataclass(frozen=True)
class AccessPolicy:
    """The access mode the settings describe, answered per principal."""

    read_only: bool = False
    no_destructive: bool = False
    allowed_servers: frozenset[int] | None = None
    sandbox: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(
            read_only=settings.read_only,
            no_destructive=settings.no_destructive,
            allowed_servers=settings.allowed_servers,
            sandbox=settings.sandbox,
        )

    # --- what is offered ---------------------------------------------------------------------------

    def offers(self, reach: Reach, principal: str) -> bool:
        """Whether tools (and prompts) of this reach are offered to `principal`."""
        if reach == "read":
            return True
        if self.read_only:
            return False
        return reach == "write" or not self.no_destructive

    def offers_tool(self, annotations: Mapping[str, Any], principal: str) -> bool:
        """Whether the tool with these published annotations is offered to `principal`."""
        return self.offers(reach_of(annotations), principal)

    def audits(self, tool: str, principal: str) -> bool:
        """Whether a call of `tool` by `principal` is written to the audit trail (when there is one)."""
        return tool in _AUDITED

    # --- which servers -----------------------------------------------------------------------------

    def may_touch(self, server_id: int | None, principal: str) -> bool:
        return self.allowed_servers is None or server_id in self.allowed_servers

    def check_server(self, server_id: int | None, principal: str, *, what: str) -> None:
        """Refuse (forbidden) a call that would touch a server `principal` may not touch."""
        if self.may_touch(server_id, principal):
            return
        assert self.allowed_servers is not None
        ids = ", ".join(str(i) for i in sorted(self.allowed_servers))
        target = f"server {server_id}" if server_id is not None else "a server the provider did not name"
        raise ForbiddenError(
            f"{what} touches {target}, but this MCP server may only touch servers {ids}. "
            "Nothing was changed. Ask the operator if that server should be allowed."
        )

    def visible(self, items: Iterable[T], server_of: Callable[[T], int | None], principal: str) -> list[T]:
        """The items (snapshots, servers) on servers `principal` may touch; `server_of(item)` names the server."""
        return [item for item in items if self.may_touch(server_of(item), principal)]

    # --- in words ----------------------------------------------------------------------------------

    def summary(self, principal: str) -> str:
        """One line describing the access mode, for the instructions and the logs."""
        if self.read_only:
            mode = "read-only: only list_snapshots and get_snapshot are available"
        elif self.no_destructive:
            mode = "no-destructive: restore_snapshot and delete_snapshot are not available"
        else:
            mode = "full: list, get, create, restore and delete are available"
        if self.allowed_servers is not None:
            ids = ", ".join(str(i) for i in sorted(self.allowed_servers))
            mode += f"; only servers {ids} may be touched"
        if self.sandbox:
            mode += "; SANDBOX: a built-in simulator, no real server is affected"
        return mode


__all__ = ["EVERYONE", "AccessPolicy", "Reach", "reach_of"]
