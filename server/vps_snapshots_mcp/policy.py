"""The permissions file (`--policy`): who may do what on which server, with which provider credential.

A TOML file of rules; a caller may do what the rules that name it allow, and
nothing else (deny by default once a policy is given):

    [budget]                          # optional: restores + deletes, counted in the shared ledger
    changes_per_hour = 20             #   per principal, all servers together
    changes_per_server_per_hour = 5   #   per principal and server

    [[rule]]
    principals = ["token:alice-bot", "oauth:https://issuer#sub", "local:*"]   # kind:id, or kind:*, or *
    groups = ["team-a"]               # or the caller is in one of these groups
    servers = [101, 102]              # or "all"
    actions = ["read", "create"]      # read, create, restore, delete, or "all"; and approve
    credential = "/etc/vps/team-a.token"   # optional: the provider token file these callers use
    webhook = "https://hooks.example/T0/B0/x"   # optional: told of each pending approval on these servers

    [approval]                        # optional: approval pages (`--consent url`)
    protected_servers = [101]         #   or "all": a second person must approve, never the one who asked

`approve` is granted by name only ("all" is the four tool actions): it lets a
principal approve another's restore or delete of a protected server on the
rule's servers (also held as the `snapshots:approve` scope). A rule's webhook
is told of every pending approval on its servers that the rule's principals
asked for or may approve: a JSON POST (`webhook.py`).

A caller's provider credential is the one its matching rules name (rules that
name none leave it alone; none at all: the server's own `VPS_API_TOKEN`).
Matching rules that name two different credentials are a refusal, never a
guess. `--allowed-servers` stays the outer fence around all of this.

`PolicySource` keeps the file's policy current: it looks at the file at most
once a second and re-reads it when its modification time or size changed; a
file that no longer parses leaves the old policy serving, and says so in the
log. No MCP import, no package import but the error tree.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, cast

logger = logging.getLogger(__name__)

Action = Literal["read", "create", "restore", "delete"]
ACTIONS: Final[tuple[Action, ...]] = ("read", "create", "restore", "delete")
Permission = Literal["read", "create", "restore", "delete", "approve"]
"""What a rule grants: the four actions, and approving another's restore or delete on a protected server."""
PERMISSIONS: Final[tuple[Permission, ...]] = (*ACTIONS, "approve")
KINDS: Final = ("oauth", "token", "local")
RELOAD_EVERY_S: Final = 1.0
"""The most often the file is looked at again."""
MAX_REMEMBERED: Final = 4096
"""The most callers whose grants a policy remembers at once."""


class PolicyError(ValueError):
    """The policy file cannot be used; the message is one line: the file, where, and why."""


class Caller(Protocol):
    """What a policy reads of a principal (`protocol/principal.py`'s `Principal` is one)."""

    @property
    def kind(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def groups(self) -> frozenset[str]: ...
    @property
    def key(self) -> str: ...
    @property
    def scopes(self) -> frozenset[str] | None: ...


@dataclass(frozen=True)
class PlainCaller:
    """A caller known only by its key (`kind:id`), with the groups given (none by default)."""

    kind: str
    id: str
    groups: frozenset[str] = frozenset()
    scopes: frozenset[str] | None = None
    """None: every scope, as the single static token and stdio have."""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def of_key(cls, key: str) -> PlainCaller:
        kind, _, ident = key.partition(":")
        return cls(kind=kind, id=ident)


@dataclass(frozen=True)
class Rule:
    principals: frozenset[str]
    """Exact keys (`kind:id`); `kind:*` and `*` are in `kinds` and `anyone`."""
    kinds: frozenset[str]
    anyone: bool
    groups: frozenset[str]
    servers: frozenset[int] | None
    """None: all servers."""
    actions: frozenset[Permission]
    credential: str | None
    where: str
    """`rule N (line L)`, for messages."""
    webhook: str | None = None
    """Where pending approvals on its servers are told (a URL: a secret, never logged)."""

    def matches(self, caller: Caller) -> bool:
        return (
            self.anyone
            or caller.kind in self.kinds
            or f"{caller.kind}:{caller.id}" in self.principals
            or not self.groups.isdisjoint(caller.groups)
        )


@dataclass(frozen=True)
class Budget:
    """Restores and deletes allowed per principal per hour (None: no cap), all servers and per server."""

    per_hour: int | None = None
    per_server_per_hour: int | None = None


@dataclass(frozen=True)
class Grants:
    """What the rules give one caller: the actions per server (None: every server), and its credential."""

    everywhere: frozenset[Permission]
    per_server: Mapping[int, frozenset[Permission]]
    credential: str | None
    conflict: str | None
    """Why the caller has no usable credential (its rules name two), or None."""

    def allows(self, action: Permission, server_id: int | None) -> bool:
        if action in self.everywhere:
            return True
        return server_id is not None and action in self.per_server.get(server_id, frozenset())

    def in_words(self) -> str:
        """What the caller may do, for a refusal: 'read on every server; restore on servers 101, 102'."""
        parts = []
        if self.everywhere:
            parts.append(f"{', '.join(a for a in PERMISSIONS if a in self.everywhere)} on every server")
        by_actions: dict[frozenset[Permission], list[int]] = {}
        for server, actions in sorted(self.per_server.items()):
            extra = actions - self.everywhere
            if extra:
                by_actions.setdefault(frozenset(extra), []).append(server)
        for actions, servers in by_actions.items():
            ids = ", ".join(str(s) for s in servers)
            parts.append(
                f"{', '.join(a for a in PERMISSIONS if a in actions)} on server{'s' if len(servers) > 1 else ''} {ids}"
            )
        return "; ".join(parts) if parts else "nothing"


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    budget: Budget
    path: str
    protected: frozenset[int] | None = frozenset()
    """The protected servers (`[approval] protected_servers`; None: all of them)."""
    _answers: dict[tuple[str, str, frozenset[str]], Grants] = field(default_factory=dict, compare=False, repr=False)
    """Each caller's grants, worked out once per policy (a reload makes a new policy): a call asks several times."""

    def grants(self, caller: Caller) -> Grants:
        asked = (caller.kind, caller.id, caller.groups)
        answer = self._answers.get(asked)
        if answer is None:
            if len(self._answers) >= MAX_REMEMBERED:
                self._answers.clear()
            answer = self._answers[asked] = self._work_out(caller)
        return answer

    def _work_out(self, caller: Caller) -> Grants:
        everywhere: set[Permission] = set()
        per_server: dict[int, set[Permission]] = {}
        credentials: dict[str, str] = {}
        for rule in self.rules:
            if not rule.matches(caller):
                continue
            if rule.servers is None:
                everywhere |= rule.actions
            else:
                for server in rule.servers:
                    per_server.setdefault(server, set()).update(rule.actions)
            if rule.credential is not None:
                credentials.setdefault(rule.credential, rule.where)
        conflict = None
        if len(credentials) > 1:
            conflict = "the policy's rules that name this caller give it different provider credentials (" + (
                ", ".join(credentials.values()) + ")"
            )
        credential = next(iter(credentials)) if len(credentials) == 1 else None
        return Grants(
            frozenset(everywhere),
            {server: frozenset(actions) for server, actions in per_server.items()},
            credential,
            conflict,
        )

    def is_protected(self, server_id: int | None) -> bool:
        """Whether approving a change of this server needs a second person (one with no id: yes, to be safe)."""
        return self.protected is None or server_id is None or server_id in self.protected

    def webhooks(self, requester: Caller, server_id: int | None) -> tuple[tuple[str, str], ...]:
        """(rule, URL) of each rule whose webhook is told of a pending approval of `requester` on this server."""
        told: dict[str, str] = {}
        for rule in self.rules:
            covers = rule.servers is None or (server_id is not None and server_id in rule.servers)
            if rule.webhook is not None and covers and (rule.matches(requester) or "approve" in rule.actions):
                told.setdefault(rule.webhook, rule.where)
        return tuple((where, url) for url, where in told.items())

    def credentials(self) -> frozenset[str]:
        """Every provider credential file the rules name."""
        return frozenset(rule.credential for rule in self.rules if rule.credential is not None)


# --- the file ---------------------------------------------------------------------------------------

_RULE_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*rule[ \t]*\]\]", re.MULTILINE)


def parse_policy(text: str, path: str) -> Policy:
    """The policy `text` (read from `path`) says; `PolicyError` naming the line or rule and the reason."""
    import tomllib  # only where a policy file is read: a start-up without one does not load the TOML parser

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {path}: not valid TOML: {exc}") from None
    lines = [text.count("\n", 0, m.start()) + 1 for m in _RULE_HEADER.finditer(text)]

    def fail(where: str, why: str) -> PolicyError:
        return PolicyError(f"policy file {path}, {where}: {why}")

    unknown = set(data) - {"rule", "budget", "approval"}
    if unknown:
        raise fail("top level", f"unknown key {sorted(unknown)[0]!r} (expected [[rule]], [budget] and [approval])")
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list) or not raw_rules:
        raise fail("top level", "no [[rule]]: a policy with no rule allows nothing; write at least one")
    rules = []
    for index, raw in enumerate(raw_rules):
        line = f" (line {lines[index]})" if index < len(lines) else ""
        rules.append(_rule(raw, f"rule {index + 1}{line}", fail))
    budget = _budget(data.get("budget", {}), fail)
    return Policy(tuple(rules), budget, path, _protected(data.get("approval", {}), fail))


def _rule(raw: Any, where: str, fail: Callable[[str, str], PolicyError]) -> Rule:
    if not isinstance(raw, dict):
        raise fail(where, "a rule must be a table")
    unknown = set(raw) - {"principals", "groups", "servers", "actions", "credential", "webhook"}
    if unknown:
        raise fail(
            where, f"unknown key {sorted(unknown)[0]!r} (principals, groups, servers, actions, credential, webhook)"
        )
    principals = _strings(raw.get("principals", []), where, "principals", fail)
    groups = _strings(raw.get("groups", []), where, "groups", fail)
    if not principals and not groups:
        raise fail(where, "names no principal and no group: it would apply to nobody")
    exact, kinds, anyone = set(), set(), False
    for name in principals:
        if name == "*":
            anyone = True
            continue
        kind, sep, ident = name.partition(":")
        if not sep or kind not in KINDS or not ident:
            raise fail(where, f"principal {name!r} is not kind:id with kind one of {', '.join(KINDS)} (or kind:*)")
        (kinds.add(kind) if ident == "*" else exact.add(name))
    servers: frozenset[int] | None
    raw_servers = raw.get("servers")
    if raw_servers is None:
        raise fail(where, 'servers is missing: a list of server ids, or "all"')
    if raw_servers == "all":
        servers = None
    elif isinstance(raw_servers, list) and all(type(s) is int and s >= 1 for s in raw_servers) and raw_servers:
        servers = frozenset(raw_servers)
    else:
        raise fail(
            where,
            f'servers must be a non-empty list of server ids (whole numbers from 1) or "all", got {raw_servers!r}',
        )
    raw_actions = raw.get("actions")
    actions: frozenset[Permission]
    if raw_actions == "all":
        actions = frozenset(ACTIONS)
    else:
        names = _strings(raw_actions, where, "actions", fail) if raw_actions is not None else []
        bad = [a for a in names if a not in PERMISSIONS]
        if bad or not names:
            why = f"unknown action {bad[0]!r}" if bad else "actions is missing or empty"
            raise fail(where, f'{why}: actions are {", ".join(ACTIONS)}, or "all"')  # and approve, by name
        actions = frozenset(cast(Permission, a) for a in names)
    credential = raw.get("credential")
    if credential is not None:
        if not isinstance(credential, str) or not credential:
            raise fail(where, "credential must be the path of a file holding a provider API token")
        try:
            with open(credential, encoding="utf-8") as file:
                if not file.read().strip():
                    raise fail(where, f"the credential file {credential} is empty")
        except OSError as exc:
            raise fail(where, f"cannot read the credential file {credential}: {exc.strerror}") from None
    webhook = raw.get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or not re.match(r"^https?://[^\s/]+", webhook)):
        raise fail(where, "webhook must be an http(s) URL")
    return Rule(
        frozenset(exact), frozenset(kinds), anyone, frozenset(groups), servers, actions, credential, where, webhook
    )


def _protected(raw: Any, fail: Callable[[str, str], PolicyError]) -> frozenset[int] | None:
    if not isinstance(raw, dict) or set(raw) - {"protected_servers"}:
        raise fail("[approval]", 'must be a table with protected_servers (a list of server ids, or "all")')
    servers = raw.get("protected_servers", [])
    if servers == "all":
        return None
    if not isinstance(servers, list) or not all(type(s) is int and s >= 1 for s in servers):
        raise fail("[approval]", f'protected_servers must be a list of server ids or "all", got {servers!r}')
    return frozenset(servers)


def _strings(value: Any, where: str, key: str, fail: Callable[[str, str], PolicyError]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise fail(where, f"{key} must be a list of non-empty strings")
    return list(value)


def _budget(raw: Any, fail: Callable[[str, str], PolicyError]) -> Budget:
    if not isinstance(raw, dict):
        raise fail("[budget]", "must be a table")
    unknown = set(raw) - {"changes_per_hour", "changes_per_server_per_hour"}
    if unknown:
        raise fail("[budget]", f"unknown key {sorted(unknown)[0]!r} (changes_per_hour, changes_per_server_per_hour)")
    values: dict[str, int | None] = {}
    for key in ("changes_per_hour", "changes_per_server_per_hour"):
        value = raw.get(key)
        if value is not None and (type(value) is not int or value < 0):
            raise fail("[budget]", f"{key} must be a whole number from 0, got {value!r}")
        values[key] = value
    return Budget(values["changes_per_hour"], values["changes_per_server_per_hour"])


def load_policy(path: str) -> Policy:
    """The policy in the file at `path`; `PolicyError` (one line) when it cannot be read or used."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise PolicyError(f"policy file {path}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PolicyError(f"policy file {path}: not UTF-8 text") from None
    return parse_policy(text, path)


class PolicySource:
    """The file's policy, kept current: looked at at most once a second, re-read when it changed."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._seen = self._stamp()
        self._policy = load_policy(path)  # at start, a bad file is an error (the caller stops)
        self._looked = clock()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def current(self) -> Policy:
        now = self._clock()
        if now - self._looked < RELOAD_EVERY_S:
            return self._policy
        self._looked = now
        stamp = self._stamp()
        if stamp == self._seen:
            return self._policy
        self._seen = stamp
        try:
            self._policy = load_policy(self.path)
        except PolicyError as exc:
            logger.error("%s; the previous policy keeps serving until the file is fixed", exc)
        else:
            logger.info("policy file %s reloaded: %d rules", self.path, len(self._policy.rules))
        return self._policy


__all__ = [
    "ACTIONS",
    "PERMISSIONS",
    "Action",
    "Budget",
    "Caller",
    "Grants",
    "Permission",
    "PlainCaller",
    "Policy",
    "PolicyError",
    "PolicySource",
    "Rule",
    "load_policy",
    "parse_policy",
]
