"""One stdio session against the installed command in the sandbox: what a host does with a fresh install.

Run with the Python of the venv the wheel was installed into: `python .ci/stdio_session.py VENV_BIN`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters


async def main(bin_dir: Path) -> None:
    command = str(bin_dir / "vps-snapshots-mcp")
    async with Client(StdioServerParameters(command=command, args=["--sandbox", "--log-level", "WARNING"])) as client:
        tools = sorted(tool.name for tool in (await client.list_tools()).tools)
        assert tools == ["create_snapshot", "delete_snapshot", "get_snapshot", "list_snapshots", "restore_snapshot"]
        listed = await client.call_tool("list_snapshots", {"server_id": 12345})
        assert not listed.is_error and listed.structured_content is not None, listed
        assert listed.structured_content["count"] == 2
    print(f"stdio session from the installed wheel: {len(tools)} tools, list_snapshots answered")


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]))
