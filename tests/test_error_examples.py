"""The error examples in the docs are what the server says: this test produces them, and the docs quote it.

`python -m tests.regenerate` rewrites the block between the markers in docs/tools.md (and the one example in
the README); otherwise a difference fails, so the two cannot drift.
"""

from __future__ import annotations

import pytest

from vps_snapshots_mcp.errors import ERROR_CODES
from vps_snapshots_mcp.simulator import ProviderState

from .regenerate import HINT, README, TOOLS_DOC, block, replace_block
from .support.error_examples import examples, rendered
from .support.world import ServerFactory

pytestmark = pytest.mark.anyio


async def test_the_documented_error_examples_are_what_the_server_says(
    make_server: ServerFactory, provider: ProviderState
) -> None:
    found = await examples(make_server, provider)
    codes = {text.partition(":")[0] for text in found}
    assert codes == set(ERROR_CODES)  # "every code, with a real example of each" (the README)
    docs, readme = TOOLS_DOC.read_text(), README.read_text()
    assert block("error-examples").search(docs) and block("error-example").search(readme), "the markers are missing"
    new_docs = replace_block(docs, "error-examples", rendered(found))
    not_found = next(text for text in found if text.startswith("not_found:"))
    new_readme = replace_block(readme, "error-example", rendered([not_found]))
    assert docs == new_docs and readme == new_readme, HINT
