"""Published schemas: the same constraints in fewer bytes.

tools/list goes to every client at every start, and its size is part of what a
host pays for each session (the performance target is 7 KiB). These functions
shrink the schemas the SDK derives from our models without changing what they
accept; the SDK keeps validating results against the models themselves.
`published_form` is how `tools.json` is made from the SDK's tool definitions.
"""

from __future__ import annotations

import json
from typing import Any

MAX_ID = 2**53 - 1  # the largest integer every JSON client represents exactly
MAX_WAIT_S = 3600  # the longest wait_timeout_s a call may ask for; stream events are kept as long (and more)

_SIMPLE_TYPES = frozenset({"string", "integer", "number", "boolean", "null"})
_NULLABLE_TYPES = _SIMPLE_TYPES | {"object", "array"}


def published_form(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool definition as the SDK derives it (tools/list JSON) -> as this server publishes it."""
    published = dict(tool)
    published["description"] = " ".join(tool.get("description", "").split())  # docstring indentation
    published["inputSchema"] = compact_schema(tool["inputSchema"], keep_descriptions=True)
    if tool.get("outputSchema") is not None:
        # Compacted again once inlined: a nullable reference is now a nullable type it can merge.
        output = inline_single_use_defs(compact_schema(tool["outputSchema"], keep_descriptions=False))
        published["outputSchema"] = compact_schema(output, keep_descriptions=False)
    return published


def compact_schema(schema: Any, *, keep_descriptions: bool) -> Any:
    """The same constraints in fewer bytes: no generated titles, nullable unions as type lists.

    Output schemas also lose descriptions, defaults and the OpenAPI `discriminator` (the `oneOf`
    beneath it says the same); the model reads the tool description, and the SDK validates results
    against the real models, not against this text.
    """
    if isinstance(schema, list):
        return [compact_schema(item, keep_descriptions=keep_descriptions) for item in schema]
    if not isinstance(schema, dict):
        return schema
    dropped = {"title"} if keep_descriptions else {"title", "description", "default", "discriminator"}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in dropped:
            continue
        if key in ("properties", "$defs"):
            # Keys here are names, not keywords: a property may well be called "title" or "description".
            out[key] = {name: compact_schema(sub, keep_descriptions=keep_descriptions) for name, sub in value.items()}
        else:
            out[key] = compact_schema(value, keep_descriptions=keep_descriptions)
    options = out.get("anyOf")
    if isinstance(options, list) and all(set(o) == {"type"} and o["type"] in _SIMPLE_TYPES for o in options):
        del out["anyOf"]
        out["type"] = [o["type"] for o in options]
    elif isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        # [{"type": "string", "maxLength": 9}, {"type": "null"}] -> {"type": ["string", "null"], "maxLength": 9}:
        # string keywords constrain strings only, so null stays allowed exactly as before.
        # The same holds for objects (properties, required) and arrays (items): they constrain only their type.
        (other,) = [o for o in options if o != {"type": "null"}]
        if isinstance(other.get("type"), str) and other["type"] in _NULLABLE_TYPES and "type" not in out:
            del out["anyOf"]
            out.update(other)
            out["type"] = [other["type"], "null"]
    if out.get("type") == "object" and isinstance(out.get("oneOf"), list):
        # Each branch is checked against an instance the root already requires to be an object.
        out["oneOf"] = [_without_object_type(branch) for branch in out["oneOf"]]
    if out.get("default", ...) is None:
        del out["default"]  # absent already means null
    if out.get("type") == "boolean" and out.get("default", ...) is False:
        del out["default"]  # every flag is opt-in: absent means false, and each tool says what true does
    if isinstance(out.get("type"), list) and {"integer", "number"} <= set(out["type"]):
        out["type"].remove("integer")  # every integer is a number
    if "const" in out and out.get("type") == "string" and isinstance(out["const"], str):
        del out["type"]  # a string const says its type
    if (
        isinstance(out.get("enum"), list)
        and out.get("type") == "string"
        and all(isinstance(v, str) for v in out["enum"])
    ):
        del out["type"]  # so does an enum of strings
    return out


def _without_object_type(branch: Any) -> Any:
    if isinstance(branch, dict) and branch.get("type") == "object":
        return {key: value for key, value in branch.items() if key != "type"}
    return branch


def inline_single_use_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """Put each definition referenced once in place of its reference; keep shared ones in $defs."""
    defs = schema.get("$defs")
    if not isinstance(defs, dict):
        return schema
    text = json.dumps(schema)
    once = {name for name in defs if text.count(f'"#/$defs/{name}"') == 1}

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref", "")
        if isinstance(ref, str) and ref.removeprefix("#/$defs/") in once and len(node) == 1:
            return walk(defs[ref.removeprefix("#/$defs/")])
        return {key: walk(value) for key, value in node.items() if key != "$defs"}

    inlined = walk(schema)
    kept = {name: walk(body) for name, body in defs.items() if name not in once}
    return {"$defs": kept, **inlined} if kept else inlined
