"""docs/install.md's uv paths start a server a host can use: `uvx --from` the wheel as a user builds it, and
from git (this checkout's committed tree, through `git+file://`), and the Claude Desktop bundle's own command
(`uv run --directory BUNDLE`). Needs uv (`.ci/run` installs it into .ci/.tools/pytools); PyPI supplies the
dependencies, as it does for a user.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from vps_snapshots_mcp import __version__

ROOT = Path(__file__).parent.parent
INSTALL = ROOT / "docs" / "install.md"
WHEEL = "/path/to/vps_snapshots_mcp-0.1.0-py3-none-any.whl"
REPOSITORY = "URL-OF-THIS-REPOSITORY"
SAFE_TOOLS = ["list_snapshots", "get_snapshot", "create_snapshot"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def uvx_lines() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", INSTALL.read_text(), re.S)
    return [json.loads(b) for b in blocks if '"command": "uvx"' in b]


@pytest.fixture(scope="module")
def uvx() -> str:
    found = shutil.which("uvx") or str(ROOT / ".ci" / ".tools" / "pytools" / "bin" / "uvx")
    if not Path(found).exists():
        pytest.skip("uv is not installed (.ci/run installs it into .ci/.tools/pytools)")
    return found


async def tools_of(command: str, args: list[str], tmp_path: Path) -> list[str]:
    environment = {
        **os.environ,  # as a host passes its own: the network settings uv needs (proxy, certificates)
        "HOME": str(tmp_path),
        "UV_CACHE_DIR": str(ROOT / ".ci" / ".tools" / "uv-cache"),  # downloads once, kept out of the tree
        "VPS_API_TOKEN": "provider-token-for-the-uvx-test-91ac",
    }
    async with Client(StdioServerParameters(command=command, args=args, env=environment)) as client:
        return [tool.name for tool in (await client.list_tools()).tools]


def test_the_docs_offer_a_wheel_line_and_a_git_line_named_for_this_version() -> None:
    lines = uvx_lines()
    assert [line["args"][1] for line in lines] == [WHEEL, f"git+{REPOSITORY}"]
    assert Path(WHEEL).name == f"vps_snapshots_mcp-{__version__}-py3-none-any.whl"


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    """The wheel as a user builds it (`python -m build`)."""
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return tmp_path / "dist" / Path(WHEEL).name


@pytest.mark.anyio
async def test_uvx_from_the_wheel(uvx: str, wheel: Path, tmp_path: Path) -> None:
    [line] = [line for line in uvx_lines() if line["args"][1] == WHEEL]
    args = [str(wheel) if arg == WHEEL else arg for arg in line["args"]]
    assert await tools_of(uvx, args, tmp_path) == SAFE_TOOLS


@pytest.mark.anyio
async def test_uvx_from_git(uvx: str, tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist)")
    [line] = [line for line in uvx_lines() if REPOSITORY in line["args"][1]]
    args = [arg.replace(REPOSITORY, ROOT.as_uri()) for arg in line["args"]]
    assert await tools_of(uvx, args, tmp_path) == SAFE_TOOLS


@pytest.mark.anyio
async def test_the_bundles_command_starts_the_server_as_claude_desktop_runs_it(uvx: str, tmp_path: Path) -> None:
    # The bundle's layout as .ci/artefacts packs it, and the manifest's mcp_config with its settings filled in
    # (the token as the user typed it, the rest their defaults), run by uv as Claude Desktop runs a uv bundle.
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    manifest = json.loads((ROOT / "manifests" / "mcpb" / "manifest.json").read_text())
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, bundle / name)
    shutil.copytree(ROOT / "server", bundle / "server", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    settings = {key: option.get("default", "") for key, option in manifest["user_config"].items()}
    settings["api_token"] = "provider-token-typed-into-claude-desktop-5e2d"

    def filled(value: str) -> str:
        value = value.replace("${__dirname}", str(bundle))
        return re.sub(r"\$\{user_config\.(\w+)\}", lambda m: str(settings[m.group(1)]).lower()
                      if isinstance(settings[m.group(1)], bool) else str(settings[m.group(1)]), value)  # fmt: skip

    config = manifest["server"]["mcp_config"]
    assert config["command"] == "uv"
    uv = str(Path(uvx).with_name("uv"))
    environment = {
        **os.environ,
        "HOME": str(tmp_path),
        "UV_CACHE_DIR": str(ROOT / ".ci" / ".tools" / "uv-cache"),
        **{name: filled(value) for name, value in config["env"].items()},
    }
    parameters = StdioServerParameters(command=uv, args=[filled(a) for a in config["args"]], env=environment)
    async with Client(parameters) as client:
        tools = [tool.name for tool in (await client.list_tools()).tools]
    assert tools == [tool["name"] for tool in manifest["tools"]]
