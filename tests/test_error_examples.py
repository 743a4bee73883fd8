"""The error examples in the docs are what the server says: this test produces them, and the docs quote it.

`UPDATE_DOCS=1 .venv/bin/pytest tests/test_error_examples.py` rewrites the block between the markers in
docs/tools.md (and the one example in the README); otherwise a difference fails, so the two cannot drift.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from mcp import Client

from vps_snapshots_mcp.errors import ERROR_CODES
from vps_snapshots_mcp.simulator import Fault, ProviderState

from .support.mcp_client import connected, text_of
from .support.world import ServerFactory

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parent.parent
TOOLS_DOC = ROOT / "docs" / "tools.md"
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- error-examples[^\n]*-->\n)(.*?)(<!-- /error-examples -->)", re.S)
README_EXAMPLE = re.compile(r"(<!-- error-example -->\n)(.*?)(<!-- /error-example -->)", re.S)


async def error(client: Client, tool: str, arguments: dict[str, object]) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, (tool, arguments)
    return text_of(result)


async def examples(make_server: ServerFactory, provider: ProviderState) -> list[str]:
    """One real error per code that a session against the simulator can provoke."""
    found: list[str] = []
    async with connected(make_server(allowed_servers=frozenset({12345, 34567, 23456}))) as client:
        found.append(await error(client, "get_snapshot", {"snapshot_id": 4242}))
        found.append(await error(client, "get_snapshot", {"snapshot_id": "798"}))
        found.append(await error(client, "delete_snapshot", {"snapshot_id": 798, "confirmation-token": "x"}))
        found.append(await error(client, "drop_all_snapshots", {}))
        found.append(await error(client, "create_snapshot", {"server_id": 99999, "name": "x"}))
        found.append(
            await error(
                client, "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": "v1.a.b"}
            )
        )
        found.append(await error(client, "create_snapshot", {"server_id": 34567, "name": "sixth"}))
        found.append(await error(client, "restore_snapshot", {"snapshot_id": 811}))
        provider.inject(Fault.error(400, "Ensure this field has no more than 64 characters.", method="POST"))
        found.append(await error(client, "create_snapshot", {"server_id": 12345, "name": "x"}))
        provider.inject(Fault.rate_limit("120"))  # longer than the server waits: not retried
        found.append(await error(client, "list_snapshots", {}))
        provider.inject(Fault.html_page(502, times=3))
        found.append(await error(client, "list_snapshots", {}))
        provider.fail_next_snapshots = 1
        found.append(await error(client, "create_snapshot", {"server_id": 12345, "name": "doomed", "wait": True}))
    async with connected(make_server(token="a-revoked-token-123")) as client:
        found.append(await error(client, "list_snapshots", {}))
    return found


def rendered(found: list[str]) -> str:
    return "```text\n" + "\n".join(found) + "\n```\n"


async def test_the_documented_error_examples_are_what_the_server_says(
    make_server: ServerFactory, provider: ProviderState
) -> None:
    found = await examples(make_server, provider)
    codes = {text.partition(":")[0] for text in found}
    assert codes <= set(ERROR_CODES) and len(codes) >= 11
    docs, readme = TOOLS_DOC.read_text(), README.read_text()
    new_docs = BLOCK.sub(lambda m: m.group(1) + rendered(found) + m.group(3), docs)
    not_found = next(text for text in found if text.startswith("not_found:"))
    new_readme = README_EXAMPLE.sub(lambda m: m.group(1) + rendered([not_found]) + m.group(3), readme)
    if os.environ.get("UPDATE_DOCS"):
        TOOLS_DOC.write_text(new_docs)
        README.write_text(new_readme)
    hint = "regenerate: UPDATE_DOCS=1 .venv/bin/pytest tests/test_error_examples.py"
    assert BLOCK.search(docs) and README_EXAMPLE.search(readme), "the markers are missing"
    assert docs == new_docs and readme == new_readme, hint
