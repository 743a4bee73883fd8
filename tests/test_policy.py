"""The permissions file: parsed once into rules, asked per caller, re-read when it changes; no process needed.

What a caller may do (deny by default), which provider credential its calls use, what a bad file says (one line:
the file, where, why), and a reload that takes effect or, when broken, leaves the old policy serving.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from vps_snapshots_mcp.access import AccessPolicy
from vps_snapshots_mcp.errors import ForbiddenError
from vps_snapshots_mcp.policy import PlainCaller, PolicyError, PolicySource, load_policy, parse_policy

VIEWER = "oauth:https://id.example#viewer"
OPERATOR_A = "oauth:https://id.example#op-a"
ADMIN = "token:admin-bot"


def worked_policy(tmp_path: Path) -> str:
    (tmp_path / "team-a.token").write_text("team-a-provider-token\n")
    (tmp_path / "team-b.token").write_text("team-b-provider-token\n")
    return f"""
[budget]
changes_per_hour = 10
changes_per_server_per_hour = 3

[[rule]]
principals = ["{VIEWER}"]
servers = "all"
actions = ["read"]

[[rule]]
principals = ["{OPERATOR_A}"]
groups = ["team-a-oncall"]
servers = [12345, 23456]
actions = ["read", "create", "restore"]
credential = "{tmp_path}/team-a.token"

[[rule]]
groups = ["team-b"]
servers = [34567]
actions = "all"
credential = "{tmp_path}/team-b.token"

[[rule]]
principals = ["{ADMIN}", "local:*"]
servers = "all"
actions = "all"
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(worked_policy(tmp_path))
    return path


def caller(key: str, *groups: str) -> PlainCaller:
    plain = PlainCaller.of_key(key)
    return PlainCaller(plain.kind, plain.id, frozenset(groups))


def test_each_role_may_do_what_its_rules_say_and_nothing_else(policy_file: Path) -> None:
    policy = load_policy(str(policy_file))
    viewer, operator, admin = (policy.grants(caller(k)) for k in (VIEWER, OPERATOR_A, ADMIN))
    assert viewer.allows("read", 34567) and not viewer.allows("create", 12345)
    assert operator.allows("restore", 12345) and not operator.allows("delete", 12345)
    assert not operator.allows("read", 34567)
    assert all(admin.allows(action, 999) for action in ("read", "create", "restore", "delete"))
    # A group member gets the group's rule; nobody gets anything by default.
    assert policy.grants(caller("oauth:x#bob", "team-b")).allows("delete", 34567)
    stranger = policy.grants(caller("oauth:x#mallory", "other"))
    assert not any(stranger.allows(a, s) for a in ("read", "create") for s in (12345, 34567))
    assert stranger.in_words() == "nothing"
    assert operator.in_words() == "read, create, restore on servers 12345, 23456"


def test_a_caller_uses_the_credential_its_rules_name(policy_file: Path, tmp_path: Path) -> None:
    access = AccessPolicy(policy=PolicySource(str(policy_file)))
    assert access.credential_for(caller(OPERATOR_A)) == f"{tmp_path}/team-a.token"
    assert access.credential_for(caller("oauth:x#bob", "team-b")) == f"{tmp_path}/team-b.token"
    assert access.credential_for(caller(ADMIN)) is None  # the server's own token
    # Rules naming two credentials for one caller: refused, never a guess.
    with pytest.raises(ForbiddenError, match="different provider credentials"):
        access.credential_for(caller(OPERATOR_A, "team-b"))


def test_a_forbidden_call_names_what_the_caller_may_do(policy_file: Path) -> None:
    access = AccessPolicy(policy=PolicySource(str(policy_file)))
    with pytest.raises(ForbiddenError) as refused:
        access.check_server(12345, caller(OPERATOR_A), what="snapshot 798", action="delete")
    message = str(refused.value)
    assert message.startswith("forbidden: snapshot 798 is on server 12345")
    assert f"does not let {OPERATOR_A} delete there" in message
    assert "it may read, create, restore on servers 12345, 23456" in message and "Nothing was sent" in message
    # A key alone (no groups) is a caller too; the fence stays outside the policy.
    access.check_server(12345, ADMIN, what="x", action="delete")
    fenced = AccessPolicy(allowed_servers=frozenset({34567}), policy=PolicySource(str(policy_file)))
    with pytest.raises(ForbiddenError, match="may only touch servers 34567"):
        fenced.check_server(12345, ADMIN, what="x", action="read")
    assert fenced.visible([12345, 34567], lambda s: s, VIEWER) == [34567]


def test_the_budget_is_the_policys(policy_file: Path) -> None:
    access = AccessPolicy(policy=PolicySource(str(policy_file)))
    budget = access.budget(VIEWER)
    assert budget is not None and (budget.per_hour, budget.per_server_per_hour) == (10, 3)
    assert AccessPolicy().budget(VIEWER) is None


@pytest.mark.parametrize(
    ("text", "where", "why"),
    [
        ('[[rule]]\nprincipals = ["token:a"\nservers = 1\n', "not valid TOML", "Unclosed array (at line 3, column 1)"),
        ("", "top level", "no [[rule]]"),
        (
            '[[rule]]\nprincipals = ["token:a"]\nservers = "all"\nactions = ["read"]\n\n[[rule]]\n'
            'principals = ["token:b"]\nservers = [1]\nactions = ["destroy"]\n',
            "rule 2 (line 6)",
            "unknown action 'destroy'",
        ),
        ('[[rule]]\nprincipals = ["alice"]\nservers = "all"\nactions = "all"\n', "rule 1 (line 1)", "kind:id"),
        ('[[rule]]\nprincipals = ["token:a"]\nactions = "all"\n', "rule 1 (line 1)", "servers is missing"),
        ('[[rule]]\nprincipals = ["token:a"]\nservers = [0]\nactions = "all"\n', "rule 1 (line 1)", "server ids"),
        ('[[rule]]\nservers = "all"\nactions = "all"\n', "rule 1 (line 1)", "names no principal and no group"),
        (
            '[[rule]]\nprincipals = ["token:a"]\nservers = "all"\nactions = "all"\ncredential = "/nonexistent/t"\n',
            "rule 1 (line 1)",
            "cannot read the credential file /nonexistent/t",
        ),
        (
            '[budget]\nchanges_per_hour = -1\n[[rule]]\nprincipals = ["token:a"]\nservers = "all"\nactions = "all"\n',
            "[budget]",
            "changes_per_hour must be a whole number",
        ),
        (
            '[[rule]]\nprincipals = ["token:a"]\nserver = "all"\nactions = "all"\n',
            "rule 1 (line 1)",
            "unknown key 'server'",
        ),
    ],
)
def test_a_bad_policy_is_one_line_naming_the_file_where_and_why(text: str, where: str, why: str) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy(text, "/etc/vps/policy.toml")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("policy file /etc/vps/policy.toml")
    assert where in message and why in message


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rewrite(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))  # a new mtime even on a coarse clock


def test_a_changed_policy_is_picked_up_within_a_second(policy_file: Path, tmp_path: Path) -> None:
    ticks = Ticks()
    source = PolicySource(str(policy_file), clock=ticks)
    access = AccessPolicy(policy=source)
    assert not access.may_touch(12345, VIEWER, "create")
    rewrite(policy_file, worked_policy(tmp_path).replace('actions = ["read"]', 'actions = ["read", "create"]', 1))
    ticks.now = 0.5
    assert not access.may_touch(12345, VIEWER, "create")  # looked at no more than once a second
    ticks.now = 1.5
    assert access.may_touch(12345, VIEWER, "create")


def test_a_broken_change_leaves_the_old_policy_serving_and_says_so(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = Ticks()
    access = AccessPolicy(policy=PolicySource(str(policy_file), clock=ticks))
    rewrite(policy_file, '[[rule]]\nprincipals = ["token:a"]\nservers = "all"\nactions = ["fly"]\n')
    ticks.now = 2.0
    with caplog.at_level(logging.ERROR, logger="vps_snapshots_mcp.policy"):
        assert access.may_touch(12345, VIEWER, "read") and not access.may_touch(12345, VIEWER, "delete")
    assert [r.getMessage() for r in caplog.records] == [
        f"policy file {policy_file}, rule 1 (line 1): unknown action 'fly': actions are read, create, restore, "
        'delete, or "all"; the previous policy keeps serving until the file is fixed'
    ]


def test_the_worked_policy_in_the_deploy_guide_parses_and_means_what_its_table_says(tmp_path: Path) -> None:
    guide = (Path(__file__).parent.parent / "docs" / "deploy.md").read_text()
    text = guide.split("## Permissions", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    for team in ("web", "data"):
        (tmp_path / f"{team}.token").write_text(f"{team}-provider-token\n")
    policy = parse_policy(text.replace("/etc/vps-snapshots-mcp/", f"{tmp_path}/"), "policy.toml")
    operator = policy.grants(caller("oauth:x#carol", "web-operators"))
    assert operator.allows("restore", 12345) and not operator.allows("delete", 12345)
    assert not operator.allows("read", 34567) and operator.credential == f"{tmp_path}/web.token"
    bot = policy.grants(caller("token:data-runbook-bot"))
    assert bot.allows("create", 34567) and bot.credential == f"{tmp_path}/data.token"
    admin = policy.grants(caller("oauth:x#dave", "data-admins"))
    assert admin.allows("delete", 34567) and not admin.allows("read", 12345)
    assert policy.grants(caller("oauth:x#eve")).in_words() == "nothing"
    assert (policy.budget.per_hour, policy.budget.per_server_per_hour) == (10, 3)


# --- approvals: protected servers, the approve permission, webhooks -------------------------------

APPROVALS = """
[approval]
protected_servers = [101]

[[rule]]
principals = ["oauth:https://id#alice"]
servers = [101, 102]
actions = ["read", "restore"]
webhook = "http://127.0.0.1:9/team-hook"

[[rule]]
principals = ["oauth:https://id#bob"]
servers = [101]
actions = ["read", "approve"]
webhook = "http://127.0.0.1:9/approvers-hook"

[[rule]]
principals = ["oauth:https://id#carol"]
servers = "all"
actions = "all"
"""


def test_protected_servers_and_who_may_approve_come_from_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(APPROVALS)
    access = AccessPolicy(policy=PolicySource(str(path)))
    assert access.protected(101) and not access.protected(102)
    assert access.may_approve("oauth:https://id#bob", None, 101)
    assert not access.may_approve("oauth:https://id#bob", None, 102)  # approve is granted per server
    assert not access.may_approve("oauth:https://id#carol", None, 101)  # "all" is the four actions, not approve
    assert access.may_approve("oauth:https://id#carol", frozenset({"snapshots:approve"}), 101)  # or the scope
    assert not access.may_approve("oauth:https://id#alice", None, 101)
    assert [where for where, _ in access.webhooks("oauth:https://id#alice", 101)] == [
        "rule 1 (line 5)",
        "rule 2 (line 11)",
    ]
    assert [url for _, url in access.webhooks("oauth:https://id#alice", 102)] == ["http://127.0.0.1:9/team-hook"]
    assert AccessPolicy().protected(101) is False  # no policy: nothing is protected


def test_every_server_may_be_protected_and_bad_approval_tables_are_refused() -> None:
    rule = '[[rule]]\nprincipals = ["token:a"]\nservers = "all"\nactions = "all"\n'
    assert parse_policy('[approval]\nprotected_servers = "all"\n' + rule, "p").is_protected(5)
    for text, why in [
        ("[approval]\nprotected_servers = [0]\n" + rule, "protected_servers must be a list"),
        ("[approval]\nprotect = [1]\n" + rule, "must be a table with protected_servers"),
        (rule + 'webhook = "ftp://x"\n', r"webhook must be an http\(s\) URL"),
    ]:
        with pytest.raises(PolicyError, match=why):
            parse_policy(text, "p")
