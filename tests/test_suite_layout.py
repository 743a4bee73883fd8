"""The test suite's own layout: helpers live in tests/support/, conftest.py holds only fixtures.

So a helper has one home, a test file never reaches into another test file or into conftest.py, and
moving a test between files never breaks an import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def suite_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "support" not in p.relative_to(TESTS).parts)


def relative_imports(path: Path) -> set[str]:
    """The modules of the test tree a file imports, as dotted names below tests/ ("support.world", "conftest")."""
    found: set[str] = set()
    package = path.parent.relative_to(TESTS).parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[: len(package) - node.level + 1])
            found.add(".".join([*base, *(node.module.split(".") if node.module else [])]))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tests":
            found.add(node.module.removeprefix("tests."))
    return found


@pytest.mark.parametrize("path", suite_files(), ids=lambda p: str(p.relative_to(TESTS)))
def test_helpers_come_from_support_only(path: Path) -> None:
    """Test files (and conftest.py) import from tests/support/ or their own package's helpers, never a test file."""
    for name in relative_imports(path):
        leaf = name.split(".")[-1]
        assert leaf != "conftest", f"{path.name} imports from conftest.py: move the helper to tests/support/"
        assert not leaf.startswith("test_"), f"{path.name} imports from {name}: move the helper to tests/support/"


def test_conftest_holds_only_fixtures() -> None:
    tree = ast.parse((TESTS / "conftest.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            raise AssertionError(f"conftest.py defines class {node.name}: helpers live in tests/support/")
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            decorators = [ast.unparse(d) for d in node.decorator_list]
            assert any(d.startswith("pytest.fixture") for d in decorators), (
                f"conftest.py defines helper {node.name}(): helpers live in tests/support/"
            )
        if isinstance(node, ast.Assign | ast.AnnAssign):
            raise AssertionError(f"conftest.py defines {ast.unparse(node)[:60]}: constants live in tests/support/")
