"""Every number the provider promises is said once (provider/facts.py); the prose that quotes it reads it from there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vps_snapshots_mcp.access import EVERYONE, AccessPolicy
from vps_snapshots_mcp.models import RestoreStartedResult
from vps_snapshots_mcp.protocol.instructions import instructions_for
from vps_snapshots_mcp.protocol.prompts import rollback, safe_update
from vps_snapshots_mcp.protocol.published import TOOLS_JSON
from vps_snapshots_mcp.provider.facts import RESTORE_TAKES, SNAPSHOT_TAKES, SNAPSHOTS_PER_SERVER

PACKAGE = Path(__file__).parent.parent / "server" / "vps_snapshots_mcp"
PROSE = [
    "protocol/tools.py",
    "protocol/instructions.py",
    "protocol/prompts.py",
    "models.py",
    "waiting.py",
    "operations.py",
    "access.py",
]
LITERALS = re.compile(r"\d+-\d+ min|\b\d+ (?:snapshots|per server)\b|le=\d+\)\] = 2")


@pytest.mark.parametrize("module", PROSE)
def test_the_prose_modules_spell_no_fact_as_a_literal(module: str) -> None:
    assert LITERALS.findall((PACKAGE / module).read_text()) == []


def test_the_published_descriptions_quote_the_facts() -> None:
    tools = {tool["name"]: tool for tool in json.loads(TOOLS_JSON.read_bytes())}
    assert f"done in {SNAPSHOT_TAKES.text}" in tools["get_snapshot"]["description"]
    create = tools["create_snapshot"]["description"]
    assert f"{SNAPSHOTS_PER_SERVER} per server" in create and f"Takes {SNAPSHOT_TAKES.text}" in create
    assert f"irreversibly ({RESTORE_TAKES.text})" in tools["restore_snapshot"]["description"]
    assert RESTORE_TAKES.words in (RestoreStartedResult.__doc__ or "")


def test_the_instructions_and_prompts_quote_the_facts() -> None:
    text = instructions_for(AccessPolicy(), EVERYONE, frozenset({"create_snapshot", "delete_snapshot"}))
    assert f"it takes {SNAPSHOT_TAKES.words}" in text and f"at most {SNAPSHOTS_PER_SERVER} snapshots" in text
    assert f"already has {SNAPSHOTS_PER_SERVER} snapshots" in safe_update(1, "x")
    assert f"fewer than {SNAPSHOTS_PER_SERVER} snapshots" in rollback(1)
    assert f"the restore takes {RESTORE_TAKES.words}" in rollback(1)
