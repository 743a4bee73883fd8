"""The shell blocks of README.md and docs/install.md marked runnable run, as written, on a fresh home.

A block is runnable when the line before its ```bash fence is `<!-- runnable -->`: only blocks that run
offline in seconds are marked (not a clone, a package download or a wheel build). Each runs under
`bash -euo pipefail` in an empty directory whose `.venv` is the environment running the tests (what the
docs' relative `.venv/bin/...` paths mean in a clone), with HOME an empty directory of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", ROOT / "docs" / "install.md"]
MARKER = "<!-- runnable -->"
RUNNABLE = re.compile(re.escape(MARKER) + r"\n```bash\n(.*?)```", re.S)
TOKEN_FILE = Path(".config", "vps-snapshots-mcp", "token")


def shell(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not on PATH"
    return path


def runnable_blocks(page: Path) -> list[str]:
    return RUNNABLE.findall(page.read_text(encoding="utf-8"))


def blocks() -> list[object]:
    return [
        pytest.param(block, id=f"{page.name}#{n}") for page in PAGES for n, block in enumerate(runnable_blocks(page))
    ]


def test_each_page_marks_runnable_blocks_and_every_marker_opens_a_bash_block() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert runnable_blocks(page), f"{page.name} marks no runnable block"
        assert text.count(MARKER) == len(runnable_blocks(page)), f"{page.name}: a marker not before ```bash"


@pytest.mark.slow
@pytest.mark.parametrize("block", blocks())
def test_the_runnable_block_runs_as_written(block: str, tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (work / ".venv").symlink_to(sys.prefix)
    environment = {"HOME": str(home), "PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    done = subprocess.run(
        [shell("bash"), "-euo", "pipefail", "-c", block],
        cwd=work,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{block}\nstdout: {done.stdout[-1000:]}\nstderr: {done.stderr[-2000:]}"
    if "~/.config/vps-snapshots-mcp/token" in block:  # the token recipe: the file, readable by its owner only
        token = home / TOKEN_FILE
        assert token.read_text() == "YOUR-API-TOKEN"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
