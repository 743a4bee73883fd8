"""Every generated file is what its source renders today; one command regenerates them all.

The sources are the code (the tool table, the settings' declarations, the error tree, the package tree) and a
real session against the simulator (the error examples). A failure names the command that fixes it.
"""

from __future__ import annotations

import pytest

from vps_snapshots_mcp.errors import ERROR_CODES

from .regenerate import COMMAND, GENERATED, HINT, Generated, block, expected, replace_block
from .support.doc_tables import PACKAGE, error_table, module_map

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("target", GENERATED, ids=lambda target: target.name)
async def test_the_generated_file_is_current(target: Generated) -> None:
    current = target.path.read_text(encoding="utf-8")
    assert current == await expected(target), f"{target.name}: {HINT}"


def test_the_failure_names_the_one_command() -> None:
    assert "python -m tests.regenerate" in COMMAND and COMMAND in HINT


def test_a_block_without_its_markers_is_an_error_not_a_silent_skip() -> None:
    with pytest.raises(LookupError, match="module-map"):
        replace_block("# no markers here\n", "module-map", "anything")


def test_a_block_is_replaced_between_its_markers_only() -> None:
    text = "before\n<!-- generated: x by you -->\nold\n<!-- /generated: x -->\nafter\n"
    assert (
        replace_block(text, "x", "new\n")
        == "before\n<!-- generated: x by you -->\nnew\n<!-- /generated: x -->\nafter\n"
    )
    assert block("x").search(text)


def test_the_error_table_has_a_row_per_code_of_the_tree() -> None:
    table = error_table()
    for code in ERROR_CODES:
        assert f"| `{code}` |" in table


def test_the_module_map_lists_every_module_with_its_line_count() -> None:
    table = module_map()
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert f"| `{path.relative_to(PACKAGE).as_posix()}` | {lines} |" in table
