"""The tools/list this server publishes, read from `tools.json` at start without loading the tools.

`tools.json` is generated from the tool table (`tools.py`): the definitions the SDK
derives from each tool's signature, docstring and result model, compacted by
`schemas.published_form`. tests/test_tools_contract.py derives them again and
fails on any difference; regenerate with
`UPDATE_GOLDEN=1 pytest tests/test_tools_contract.py` and review the diff.

Reading the file instead of deriving the schemas keeps the tools, the consent
machinery and the SDK's schema derivation out of start-up (about 25 ms of a
600 ms start); the server loads them at the first tool call.

Which tools an access mode offers follows from each tool's own annotations:
read-only tools are always there; `--read-only` leaves out everything else, and
`--no-destructive` leaves out the destructive ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..settings import Settings

TOOLS_JSON = Path(__file__).with_name("tools.json")


def offered_in(settings: Settings, annotations: dict[str, Any]) -> bool:
    """Whether the access mode offers a tool with these annotations (tools/list JSON: readOnlyHint, ...)."""
    if annotations["readOnlyHint"]:
        return True
    if settings.read_only:
        return False
    return bool(settings.destructive_tools_enabled or not annotations["destructiveHint"])


def published_tools(settings: Settings) -> list[dict[str, Any]]:
    """The definitions of the tools this access mode offers, in table order, as tools/list JSON."""
    # Bytes: JSON is UTF-8 whatever the locale says.
    return [tool for tool in json.loads(TOOLS_JSON.read_bytes()) if offered_in(settings, tool["annotations"])]


__all__ = ["TOOLS_JSON", "offered_in", "published_tools"]
