"""The source distribution carries its docs and a test suite that runs from it.

`--help` points at docs/configuration.md, so the sdist ships it; its tests need tests/conftest.py, support/
and schemas/, and the files the tests read (the README's CI command, the manifests). The sdist is built as
a user builds it (`python -m build --sdist`), unpacked, and a few tests are run from it against its own code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
RUN_FROM_THE_SDIST = [
    "tests/test_front_page.py",  # the README, docs/ and .ci/run
    "tests/test_docs_configuration.py",  # docs/configuration.md against the command line
    "tests/test_error_examples.py",  # conftest.py's fixtures and support/
    "tests/test_manifests.py",  # manifests/ and tests/schemas/
]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def shipped_by_the_checkout() -> set[str]:
    """What the sdist must hold: the docs, the manifests, the tests (code, schemas, data; not the screenshots a
    browser test leaves in tests/artefacts/, which another test may be writing meanwhile), the CI scripts."""
    wanted = {"README.md", "LICENSE", "pyproject.toml", "MANIFEST.in", ".ci/run", ".ci/tools.sh"}
    for top in ("docs", "manifests", "tests"):
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and not {"__pycache__", "artefacts"} & set(path.parts) and path.suffix != ".pyc":
                wanted.add(path.relative_to(ROOT).as_posix())
    return wanted


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [archive] = out.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    [top] = [p for p in out.iterdir() if p.is_dir()]
    return top


def test_the_sdist_carries_the_docs_the_manifests_and_a_runnable_test_suite(unpacked: Path) -> None:
    members = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()}
    missing = shipped_by_the_checkout() - members
    assert not [m for m in members if m.startswith("tests/artefacts/")], "screenshots are run output, never shipped"
    assert not missing, sorted(missing)
    assert {"docs/configuration.md", "tests/conftest.py", "tests/support/__init__.py"} <= members
    assert not [m for m in members if m.startswith(".ci/.tools/") or "__pycache__" in m or m.endswith(".pyc")]


def test_tests_run_from_the_unpacked_sdist_against_its_own_code(unpacked: Path) -> None:
    environment = {**os.environ, "PYTHONPATH": str(unpacked / "server")}
    where = subprocess.run(
        [sys.executable, "-c", "import vps_snapshots_mcp; print(vps_snapshots_mcp.__file__)"],
        cwd=unpacked,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(unpacked)  # the sdist's code, not the checkout's
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n0", "-p", "no:cacheprovider", *RUN_FROM_THE_SDIST],
        cwd=unpacked,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "error" not in done.stdout.splitlines()[-1]
