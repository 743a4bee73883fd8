"""Every generated file, and the one command that regenerates them all: `python -m tests.regenerate`.

Each file (or each marked block of a file) below is derived from its source in the code: the published
`tools.json` from the tool table, `docs/configuration.md` from the settings' declarations, the tools and
error-code tables from `tools.json` and the error tree, the error examples from a real session against the
simulator, and the module map from the package tree. tests/test_generated_files.py fails when any of them
differs from what this module renders, and its message names the command. `--check` only reports.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from vps_snapshots_mcp.protocol.published import TOOLS_JSON
from vps_snapshots_mcp.settings import configuration_reference

from .support.cli_reference import subcommand_reference
from .support.doc_tables import error_table, metric_table, module_map, tools_table
from .support.error_examples import fresh_examples, rendered
from .support.tool_definitions import derived_tools

ROOT = Path(__file__).parent.parent
COMMAND = ".venv/bin/python -m tests.regenerate"
TOOLS_DOC = ROOT / "docs" / "tools.md"
README = ROOT / "README.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
OBSERVABILITY = ROOT / "docs" / "observability.md"
HINT = f"a generated file is out of date: run `{COMMAND}` and review the diff"
_OLD_COMMAND = "UPDATE_DOCS=1 .venv/bin/pytest tests/test_settings.py"  # what settings.py's header said before


def block(name: str) -> re.Pattern[str]:
    """The marked block `name` of a Markdown file: its opening marker, its body, its closing marker."""
    return re.compile(rf"(<!-- generated: {name}\b[^\n]*-->\n)(.*?)(<!-- /generated: {name} -->)", re.S)


def marker(name: str) -> str:
    return f"<!-- generated: {name} by `python -m tests.regenerate`; edit the source, not this block -->"


def replace_block(text: str, name: str, body: str) -> str:
    pattern = block(name)
    if not pattern.search(text):
        raise LookupError(f"the markers of the generated block {name!r} are missing")
    return pattern.sub(lambda m: m.group(1) + body + m.group(3), text)


@dataclass(frozen=True)
class Generated:
    """One generated file: `render` takes its current text and returns what it must be."""

    path: Path
    source: str
    render: Callable[[str], Awaitable[str]]

    @property
    def name(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


async def _tools_json(current: str) -> str:
    return json.dumps(await derived_tools(), indent=2, ensure_ascii=False) + "\n"


async def _configuration(current: str) -> str:
    return configuration_reference().replace(_OLD_COMMAND, COMMAND) + "\n" + subcommand_reference()


def _published_tools() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(TOOLS_JSON.read_text(encoding="utf-8"))
    return loaded


async def _tools_doc(current: str) -> str:
    text = replace_block(current, "tools-table", tools_table(_published_tools()))
    text = replace_block(text, "error-codes", error_table())
    return replace_block(text, "error-examples", rendered(await fresh_examples()))


async def _readme(current: str) -> str:
    not_found = next(text for text in await fresh_examples() if text.startswith("not_found:"))
    return replace_block(current, "error-example", rendered([not_found]))


async def _architecture(current: str) -> str:
    return replace_block(current, "module-map", module_map())


async def _observability(current: str) -> str:
    return replace_block(current, "metric-table", metric_table())


GENERATED = (
    Generated(TOOLS_JSON, "the tool table in protocol/tools.py (what the SDK derives, compacted)", _tools_json),
    Generated(
        ROOT / "docs" / "configuration.md",
        "the declarations in settings.py, the subcommands of cli.py",
        _configuration,
    ),
    Generated(TOOLS_DOC, "tools.json, the error tree, a session against the simulator", _tools_doc),
    Generated(README, "a session against the simulator (one error example)", _readme),
    Generated(ARCHITECTURE, "the package tree (the module map)", _architecture),
    Generated(OBSERVABILITY, "the instruments in metrics.py (the metric table)", _observability),
)


async def expected(target: Generated) -> str:
    return await target.render(target.path.read_text(encoding="utf-8"))


async def regenerate(*, check: bool = False) -> list[str]:
    """Rewrite every generated file that differs (or, with `check`, only name them); the names that differed."""
    stale: list[str] = []
    for target in GENERATED:
        current = target.path.read_text(encoding="utf-8")
        new = await target.render(current)
        if new != current:
            stale.append(target.name)
            if not check:
                target.path.write_text(new, encoding="utf-8")
    return stale


def main(argv: list[str]) -> int:
    logging.disable(logging.CRITICAL)  # the example session's own log lines are not the command's output
    check = "--check" in argv
    stale = anyio.run(lambda: regenerate(check=check))
    for name in stale:
        print(f"{'out of date' if check else 'regenerated'}: {name}")
    if not stale:
        print("every generated file is up to date")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
