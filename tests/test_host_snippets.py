"""Every host configuration we offer starts a server a host can use, exactly as written.

Each snippet in manifests/clients/ and each host configuration in README.md and docs/install.md is read,
only its documented placeholders are filled in (`/path/to/vps-snapshots-mcp`: the clone; `/home/YOU`: the
user's home; `${env:...}` and `${input:...}`: what the host puts there), and the exact command it holds is
started over stdio and driven by the SDK's client through initialize and tools/list, as a host does. The
Claude Code line runs under `sh` with a `claude` on PATH that records what it was asked to add.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from vps_snapshots_mcp.simulator import ProviderState

from .support.world import TOKEN as WORLD_TOKEN

ROOT = Path(__file__).parent.parent
CLIENTS = ROOT / "manifests" / "clients"
CLONE = "/path/to/vps-snapshots-mcp"
HOME = "/home/YOU"
PLACEHOLDERS = (CLONE, HOME)
"""What the docs tell a reader to replace (docs/install.md, "The placeholders")."""
HOST_REFERENCE = re.compile(r"\$\{(?:env|input):[A-Za-z0-9_.-]+\}")
TOKEN = "provider-token-for-the-snippet-test-4f1c"
SAFE_TOOLS = ["list_snapshots", "get_snapshot", "create_snapshot"]  # every snippet starts --no-destructive

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Launch:
    """What a host starts: a command, its arguments and the environment it adds."""

    command: str
    args: list[str]
    env: dict[str, str]


def clone_root(tmp_path: Path) -> Path:
    """The clone the placeholders name: this checkout when its .venv holds the command (CI, a developer),
    else a stand-in whose .venv is the environment running the tests (an unpacked sdist)."""
    if (ROOT / ".venv" / "bin" / "vps-snapshots-mcp").exists():
        return ROOT
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(sys.prefix)
    return clone


def filled(text: str, clone: Path, home: Path) -> str:
    return text.replace(CLONE, str(clone)).replace(HOME, str(home))


def launch_from_config(config: dict[str, Any]) -> Launch:
    servers = config.get("mcpServers") or config["servers"]
    server = servers["vps-snapshots"]
    env = {name: HOST_REFERENCE.sub(TOKEN, value) for name, value in server.get("env", {}).items()}
    return Launch(server["command"], list(server.get("args", [])), env)


def doc_configs(path: Path) -> list[tuple[str, str]]:
    """The host configurations (JSON blocks with mcpServers) a page shows, with an id each."""
    blocks = re.findall(r"```json\n(.*?)```", path.read_text(), re.S)
    return [(f"{path.name}#{n}", text) for n, text in enumerate(blocks) if '"mcpServers"' in text]


def snippets() -> list[Any]:
    found = [pytest.param(path.read_text(), id=path.name) for path in sorted(CLIENTS.glob("*.json"))]
    for page in (ROOT / "README.md", ROOT / "docs" / "install.md"):
        found += [pytest.param(text, id=name) for name, text in doc_configs(page)]
    return found


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home with the token file where the docs say to make it."""
    home = tmp_path / "home"
    token = home / ".config" / "vps-snapshots-mcp" / "token"
    token.parent.mkdir(parents=True)
    token.write_text(TOKEN)
    token.chmod(0o600)
    return home


async def tools_of(launch: Launch, home: Path) -> list[str]:
    environment = {"HOME": str(home), "PATH": os.environ["PATH"], **launch.env}
    parameters = StdioServerParameters(command=launch.command, args=launch.args, env=environment)
    async with Client(parameters) as client:
        return [tool.name for tool in (await client.list_tools()).tools]


@pytest.mark.anyio
@pytest.mark.parametrize("text", snippets())
async def test_each_host_configuration_starts_a_server_a_host_can_list(text: str, tmp_path: Path, home: Path) -> None:
    launch = launch_from_config(json.loads(filled(text, clone_root(tmp_path), home)))
    assert await tools_of(launch, home) == SAFE_TOOLS


def recorded_claude_add(tmp_path: Path, home: Path) -> list[str]:
    """Run the Claude Code snippet under sh, with a `claude` that records the arguments it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "claude-argv.json"
    claude = bin_dir / "claude"
    claude.write_text(
        f"#!{sys.executable}\nimport json, sys\nopen({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    claude.chmod(0o755)
    script = tmp_path / "claude_code.sh"
    script.write_text(filled((CLIENTS / "claude_code.sh").read_text(), clone_root(tmp_path), home))
    environment = {"HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([shutil.which("sh") or "/bin/sh", str(script)], env=environment, check=True, timeout=30)
    argv: list[str] = json.loads(record.read_text())
    return argv


@pytest.mark.anyio
async def test_the_claude_code_line_adds_a_server_a_host_can_list(tmp_path: Path, home: Path) -> None:
    argv = recorded_claude_add(tmp_path, home)
    assert argv[:3] == ["mcp", "add", "vps-snapshots"]
    options, command = argv[3 : argv.index("--")], argv[argv.index("--") + 1 :]
    env = dict(options[i + 1].split("=", 1) for i, option in enumerate(options) if option == "--env")
    assert env == {"VPS_API_TOKEN_FILE": str(home / ".config" / "vps-snapshots-mcp" / "token")}
    assert await tools_of(Launch(command[0], command[1:], env), home) == SAFE_TOOLS


def test_no_offered_snippet_starts_the_unpublished_package() -> None:
    # `uvx vps-snapshots-mcp` fetches the package by name from PyPI, where it is not yet: offer what works.
    offered = [path.read_text() for path in sorted(CLIENTS.iterdir())]
    offered += [text for page in (ROOT / "README.md", ROOT / "docs" / "install.md") for _, text in doc_configs(page)]
    for text in offered:
        assert '"uvx"' not in text and "-- uvx vps-snapshots-mcp" not in text, text
        assert CLONE in text, "a snippet names the clone by its documented placeholder"


@pytest.mark.anyio
async def test_a_token_previewed_in_one_window_is_refused_in_another_whatever_they_share(
    served_provider: str, provider: ProviderState, tmp_path: Path
) -> None:
    # docs/install.md, "Several windows": two stdio servers with one ledger and one secret still refuse each
    # other's confirmation tokens, since a confirmation is bound to the process that previewed it.
    shared = {
        "VPS_API_URL": served_provider,
        "VPS_API_TOKEN": WORLD_TOKEN,
        "VPS_MCP_CONFIRM_SECRET": "one-secret-for-both-windows-0123456789",
        "VPS_MCP_STATE_URL": f"sqlite:///{tmp_path}/consent.db",
        "PATH": os.environ["PATH"],
    }
    window = StdioServerParameters(command=sys.executable, args=["-m", "vps_snapshots_mcp"], env=shared)
    async with Client(window) as first, Client(window) as second:
        preview = await first.call_tool("delete_snapshot", {"snapshot_id": 798})
        assert preview.structured_content is not None
        token = preview.structured_content["confirmation_token"]
        refused = await second.call_tool(
            "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": token}
        )
    assert refused.is_error and "confirmation_invalid: this confirmation token was previewed by another caller" in str(
        refused.content[0]
    )
    assert provider.mutations == []


TOOLS_BIN = ROOT / ".ci" / ".tools" / "node_modules" / ".bin"
INSPECTOR_LINE = re.compile(r"npx @modelcontextprotocol/inspector@(\S+) --cli (.*?) \\\n\s+(--method .*?)\s+#")


def test_the_readmes_inspector_line_makes_its_call(tmp_path: Path) -> None:
    # The pinned Inspector, as .ci/tools.sh installs it (with the Node it needs); npx would fetch the same.
    match = INSPECTOR_LINE.search((ROOT / "README.md").read_text())
    assert match, "the README's Inspector --cli line"
    version, command, call = match.groups()
    pinned = re.search(r"^INSPECTOR_VERSION=(\S+)", (ROOT / ".ci" / "tools.sh").read_text(), re.M)
    assert pinned and pinned.group(1) == version
    if not (TOOLS_BIN / "mcp-inspector").exists():
        pytest.skip("the Inspector is not installed (.ci/run installs it through .ci/tools.sh)")
    argv = [str(TOOLS_BIN / "mcp-inspector"), "--cli", *command.split(), *call.split()]
    environment = {**os.environ, "PATH": f"{TOOLS_BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        argv, cwd=clone_root(tmp_path), env=environment, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["structuredContent"]["count"] == 2
