"""Who may do what: the one access policy, asked per request.

Every rule of the access mode is answered here, and nowhere else:

- which tools are offered (from each tool's own annotations: read-only tools
  always; `--read-only` leaves out the rest, `--no-destructive` the
  destructive ones) and which runbook prompts (those whose tools are offered);
- which server ids may be touched (`--allowed-servers`): a call naming another
  is refused, a list leaves the others out, completion never suggests them;
- what each caller may do (`allowed_actions`): one scope per action,
  `snapshots:read` (list, get), `snapshots:create`, `snapshots:restore`,
  `snapshots:delete`, held by the caller's principal (None: every scope);
- which calls are audited (the ones that can change something);
- who may approve another's restore or delete on a protected server (`may_approve`: the
  `snapshots:approve` scope, or a policy rule granting "approve" there), which servers are
  protected (`protected`), and which webhooks hear of a pending approval (`webhooks`);
- with a policy file (`--policy`, `policy.py`): which actions (read, create,
  restore, delete) each principal may do on which servers (deny by default),
  which provider credential its calls use, and its change budget;
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
from .policy import ACTIONS, Action, Budget, Caller, PlainCaller, PolicySource
from .settings import Settings

EVERYONE: Final = "everyone"
"""The one principal access is decided for, for now."""

Reach = Literal["read", "write", "destructive"]
"""What a tool or prompt can do: look, add (create), or destroy (restore, delete)."""

_AUDITED: Final = frozenset({"create_snapshot", "restore_snapshot", "delete_snapshot"})

ACTION_OF_TOOL: Final[Mapping[str, Action]] = {
    "list_snapshots": "read",
    "get_snapshot": "read",
    "create_snapshot": "create",
    "restore_snapshot": "restore",
    "delete_snapshot": "delete",
}


def scope_of(action: Action) -> str:
    """The scope that grants `action`: `snapshots:read`, `snapshots:create`, ..."""
    return f"snapshots:{action}"


ACTION_SCOPES: Final[tuple[str, ...]] = tuple(scope_of(action) for action in ACTIONS)
APPROVE_SCOPE: Final = "snapshots:approve"
"""Lets a person approve another's restore or delete of a protected server (on the approval page)."""


def permits(actions: frozenset[Action], tool: str) -> bool:
    """Whether these allowed actions cover `tool` (a tool that is no action, or unknown: yes)."""
    action = ACTION_OF_TOOL.get(tool)
    return action is None or action in actions


T = TypeVar("T")

Who = str | Caller
"""A principal as the callers hold it: its key (`kind:id`, no groups; or `EVERYONE`), or the principal itself."""


def _caller(principal: Who) -> Caller:
    return PlainCaller.of_key(principal) if isinstance(principal, str) else principal


def _key(principal: Who) -> str:
    return principal if isinstance(principal, str) else f"{principal.kind}:{principal.id}"


_REACH: Final[Mapping[Action, Reach]] = {
    "read": "read",
    "create": "write",
    "restore": "destructive",
    "delete": "destructive",
}


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
    policy: PolicySource | None = None
    """The permissions file, when one is given: deny by default, inside the `allowed_servers` fence."""
    oauth_default_scopes: frozenset[str] = frozenset({scope_of("read")})
    """The action scopes of an OAuth token that carries none of them (only the connect scope)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        """The settings' access mode; a `--policy` file is read now (`PolicyError` when it cannot be used)."""
        return cls(
            read_only=settings.read_only,
            no_destructive=settings.no_destructive,
            allowed_servers=settings.allowed_servers,
            sandbox=settings.sandbox,
            policy=PolicySource(settings.policy) if settings.policy else None,
            oauth_default_scopes=frozenset(settings.oauth_default_scopes),
        )

    # --- what a caller may do ----------------------------------------------------------------------

    def granted_scopes(self, caller: Caller) -> frozenset[str]:
        """The action scopes `caller` holds: None (stdio, the single static token) is all of them; an OAuth
        token with only the connect scope holds `--oauth-default-scopes`."""
        if caller.scopes is None:
            return frozenset(ACTION_SCOPES)
        held = caller.scopes & frozenset(ACTION_SCOPES)
        if not held and caller.kind == "oauth":
            return self.oauth_default_scopes & frozenset(ACTION_SCOPES)
        return held

    def allowed_actions(self, caller: Caller) -> frozenset[Action]:
        """The actions `caller` may take: its scopes, within the access mode (`--read-only`, `--no-destructive`)."""
        held = self.granted_scopes(caller)
        return frozenset(
            action for action in ACTIONS if scope_of(action) in held and self.offers(_REACH[action], caller.key)
        )

    def missing_scope(self, tool: str, caller: Caller) -> str | None:
        """The scope `caller` lacks to call `tool` (None: it holds it, or `tool` needs none)."""
        action = ACTION_OF_TOOL.get(tool)
        if action is None or scope_of(action) in self.granted_scopes(caller):
            return None
        return scope_of(action)

    def may_call(self, tool: str, caller: Caller) -> bool:
        """Whether `caller` may call `tool` (an unknown tool: yes, it is answered as unknown)."""
        return permits(self.allowed_actions(caller), tool)

    def check_call(self, tool: str, caller: Caller) -> None:
        """Refuse (forbidden) a call of a tool `caller` holds no scope for."""
        scope = self.missing_scope(tool, caller)
        if scope is not None:
            raise ForbiddenError(
                f"{tool} needs the scope {scope}, which this caller does not hold. Nothing was changed. "
                "Ask the operator for that permission."
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

    def in_fence(self, server_id: int | None) -> bool:
        """Whether the server is inside `--allowed-servers` (the outer fence, for every principal)."""
        return self.allowed_servers is None or server_id in self.allowed_servers

    def may_touch(self, server_id: int | None, principal: Who, action: Action = "read") -> bool:
        """Whether `principal` may do `action` on the server: inside the fence, and allowed by the policy."""
        if not self.in_fence(server_id):
            return False
        return self.policy is None or self.policy.current().grants(_caller(principal)).allows(action, server_id)

    def check_server(self, server_id: int | None, principal: Who, *, what: str, action: Action = "read") -> None:
        """Refuse (forbidden) a call that would do `action` on a server `principal` may not do it on."""
        if self.may_touch(server_id, principal, action):
            return
        if self.in_fence(server_id):
            assert self.policy is not None
            policy = self.policy.current()
            grants = policy.grants(_caller(principal))
            target = f"server {server_id}" if server_id is not None else "a server the provider did not name"
            raise ForbiddenError(
                f"{what} is on {target}, and the policy ({policy.path}) does not let {_key(principal)} {action} "
                f"there; it may {grants.in_words()}. Nothing was sent. Ask the operator to change the policy if "
                "it should."
            )
        assert self.allowed_servers is not None
        ids = ", ".join(str(i) for i in sorted(self.allowed_servers))
        target = f"server {server_id}" if server_id is not None else "a server the provider did not name"
        raise ForbiddenError(
            f"{what} touches {target}, but this MCP server may only touch servers {ids}. "
            "Nothing was changed. Ask the operator if that server should be allowed."
        )

    def visible(self, items: Iterable[T], server_of: Callable[[T], int | None], principal: Who) -> list[T]:
        """The items (snapshots, servers) on servers `principal` may read; `server_of(item)` names the server."""
        if self.policy is None:
            return [item for item in items if self.in_fence(server_of(item))]
        grants = self.policy.current().grants(_caller(principal))
        return [item for item in items if self.in_fence(server_of(item)) and grants.allows("read", server_of(item))]

    # --- approvals ------------------------------------------------------------------------------

    def protected(self, server_id: int | None) -> bool:
        """Whether a change of this server needs a second person's approval (the policy's `[approval]`)."""
        return self.policy is not None and self.policy.current().is_protected(server_id)

    def may_approve(self, principal: Who, scopes: frozenset[str] | None, server_id: int | None) -> bool:
        """Whether `principal` holds the approve permission for this server: the `snapshots:approve` scope
        (`scopes`: what its sign-in carried; None: nothing known), or a policy rule granting "approve" there."""
        if not self.in_fence(server_id):
            return False
        if scopes is not None and APPROVE_SCOPE in scopes:
            return True
        return self.policy is not None and self.policy.current().grants(_caller(principal)).allows("approve", server_id)

    def webhooks(self, requester: Who, server_id: int | None) -> tuple[tuple[str, str], ...]:
        """(rule, URL) of each webhook told of a pending approval of `requester` on this server."""
        return () if self.policy is None else self.policy.current().webhooks(_caller(requester), server_id)

    # --- with whose provider account, and how often ---------------------------------------------

    def credential_for(self, principal: Who) -> str | None:
        """The provider token file `principal`'s calls use (None: the server's own `VPS_API_TOKEN`).

        Forbidden when the policy's rules give it two: one team's token never serves another's call.
        """
        if self.policy is None:
            return None
        policy = self.policy.current()
        grants = policy.grants(_caller(principal))
        if grants.conflict is not None:
            raise ForbiddenError(
                f"{grants.conflict} in {policy.path}, so no call of {_key(principal)} is sent with either. "
                "Nothing was sent. Ask the operator to give it one credential."
            )
        return grants.credential

    def budget(self, principal: Who) -> Budget | None:
        """The change budget (restores + deletes per hour) `principal` is held to, or None: unlimited."""
        if self.policy is None:
            return None
        budget = self.policy.current().budget
        return budget if budget.per_hour is not None or budget.per_server_per_hour is not None else None

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
        if self.policy is not None:
            mode += f"; per caller and server as the policy {self.policy.path} says"
        if self.sandbox:
            mode += "; SANDBOX: a built-in simulator, no real server is affected"
        return mode


__all__ = [
    "ACTIONS",
    "ACTION_OF_TOOL",
    "ACTION_SCOPES",
    "APPROVE_SCOPE",
    "EVERYONE",
    "AccessPolicy",
    "Action",
    "Caller",
    "Reach",
    "Who",
    "permits",
    "reach_of",
    "scope_of",
]
