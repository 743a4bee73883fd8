"""The tools/list this server publishes, read from `tools.json` at start without loading the tools.

`tools.json` is generated from the tool table (`tools.py`): the definitions the SDK
derives from each tool's signature, docstring and result model, compacted by
`schemas.published_form`. tests/test_tools_contract.py derives them again and
fails on any difference; regenerate with
`UPDATE_GOLDEN=1 pytest tests/test_tools_contract.py` and review the diff.

Reading the file instead of deriving the schemas keeps the tools, the consent
machinery and the SDK's schema derivation out of start-up (about 25 ms of a
600 ms start); the server loads them at the first tool call.

Which of them are offered is the access policy's answer (`access.py`), from
each tool's own annotations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..access import AccessPolicy

TOOLS_JSON = Path(__file__).with_name("tools.json")


def published_tools(access: AccessPolicy, principal: str) -> list[dict[str, Any]]:
    """The definitions of the tools offered to `principal`, in table order, as tools/list JSON."""
    # Bytes: JSON is UTF-8 whatever the locale says.
    return [tool for tool in json.loads(TOOLS_JSON.read_bytes()) if access.offers_tool(tool["annotations"], principal)]


__all__ = ["TOOLS_JSON", "published_tools"]
