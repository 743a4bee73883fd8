"""The README is a front page: short, with the two quick-start commands, and the rest one link away."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"


def test_the_readme_is_at_most_8_kb() -> None:
    size = len(README.read_bytes())
    assert size <= 8 * 1024, f"README.md is {size} bytes; move detail to docs/ and link it"


def test_the_readme_test_command_is_the_one_ci_runs_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    command = ci.split("# --- the README's test command, verbatim ---\n", 1)[1].splitlines()[0]
    assert command in README.read_text()
    assert ".venv/bin/vps-snapshots-mcp demo" in README.read_text()


def test_every_local_link_of_the_readme_and_docs_resolves() -> None:
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_readme_names_the_test_prerequisite_and_the_fast_loop() -> None:
    text = README.read_text()
    assert "`redis-server`" in text and "on PATH" in text  # the tests start their own; 8 error without it
    assert '`.venv/bin/pytest -m "not slow"`' in text
