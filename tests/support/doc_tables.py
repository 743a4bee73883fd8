"""Tables the docs quote, rendered from their sources: the tools (tools.json), the error codes (the error tree),
and the module map (the package tree itself).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from vps_snapshots_mcp.errors import ERROR_CODES, ProviderError, SnapshotsError
from vps_snapshots_mcp.provider.facts import SNAPSHOTS_PER_SERVER

PACKAGE = Path(__file__).parent.parent.parent / "server" / "vps_snapshots_mcp"
EN_DASH = "\N{EN DASH}"  # ranges as the docs print them: 1\N{EN DASH}500
SAFE_ID = 2**53 - 1  # the JSON-safe bound on every id, stated once in the prose under the table

# When each code is raised, in words; the codes themselves come from the error tree, and a code without words here
# (or words for a code the tree no longer has) fails the render, so a new error class is documented by declaring it.
WHEN = {
    "unauthorized": "the provider refused the API token (401/403)",
    "not_found": "no such snapshot or server (404)",
    "quota_exceeded": f"the server already holds {SNAPSHOTS_PER_SERVER} snapshots, the most the provider allows",
    "invalid_state": "the provider refused because of the server's or snapshot's state (restoring, snapshot not"
    " completed)",
    "invalid_request": "any other 4xx; the provider's own message is quoted",
    "rate_limited": "429 after retries, or a `Retry-After` longer than the server will wait; says how long to wait",
    "upstream_error": "5xx, an HTML error page, malformed JSON, or a body of the wrong shape; HTML is never quoted",
    "timeout": "no answer within the request timeout; or a safety snapshot still running at its deadline",
    "connection_error": "the provider could not be reached",
    "snapshot_failed": "a snapshot being waited for (or a safety snapshot) ended `failed`",
    "invalid_argument": "the arguments fail the input schema, or name an argument the tool does not have (a misspelt"
    " `confirmation-token` is refused rather than ignored)",
    "forbidden": "the call touches a server outside `--allowed-servers`",
    "confirmation_invalid": "`confirm: true` with a forged, expired, reused or mismatched token, or with no token"
    " from a client that cannot ask its user",
    "unknown_tool": "a tool this access mode does not offer; the message lists the tools",
    "state_unavailable": "the consent ledger cannot record a consent: restore and delete are refused, reads keep"
    " working",
}


# --- the tools ---------------------------------------------------------------------------------------------------


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _argument(name: str, schema: dict[str, Any], required: bool) -> str:
    facts: list[str] = []
    if not required and "default" not in schema:
        facts.append("optional")
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None and high != SAFE_ID:
        facts.append(f"{low}{EN_DASH}{high}")
    elif low is not None:
        facts.append(f"≥ {low}")
    if "pattern" in schema:
        facts.append(f"`{schema['pattern']}`")
    short, long = schema.get("minLength"), schema.get("maxLength")
    if long is not None:
        facts.append(f"{short}{EN_DASH}{long} chars" if short else f"≤ {long} chars")
    if "boolean" in _types(schema) and "default" not in schema:
        facts[:] = [f for f in facts if f != "optional"] + ["default false"]
    if "default" in schema:
        facts.append(f"default {schema['default']}")
    return f"`{name}`" + (f" ({', '.join(facts)})" if facts else "")


def _fields(schema: dict[str, Any]) -> str:
    shown = []
    for name, field in schema.get("properties", {}).items():
        constant = field.get("const")
        if constant is not None:
            shown.append(f'{name}: "{constant}"')
        elif field.get("type") == "array" and _is_snapshot(field.get("items", {})):
            shown.append(f"{name}: [Snapshot]")
        else:
            shown.append(name)
    return "{" + ", ".join(shown) + "}"


def _is_snapshot(schema: dict[str, Any]) -> bool:
    return set(schema.get("properties", {})) >= {"id", "server", "name", "status", "created_at"}


def _result(schema: dict[str, Any]) -> str:
    if "oneOf" in schema:
        return " or ".join(f"`{_fields(branch)}`" for branch in schema["oneOf"])
    if _is_snapshot(schema):
        return "`Snapshot`"
    return f"`{_fields(schema)}`"


def _hints(annotations: dict[str, Any]) -> str:
    if annotations.get("readOnlyHint"):
        effect = "read-only"
    elif annotations.get("destructiveHint"):
        effect = "destructive"
    else:
        effect = "not read-only, not destructive"
    return f"{effect}, {'idempotent' if annotations.get('idempotentHint') else 'not idempotent'}"


def tools_table(tools: list[dict[str, Any]]) -> str:
    """One row per published tool: its arguments with their bounds, its result's shape, and its hints."""
    rows = ["| tool | arguments | result (`structuredContent`) | hints |", "|---|---|---|---|"]
    for tool in tools:
        schema = tool["inputSchema"]
        required = set(schema.get("required", []))
        arguments = ", ".join(_argument(n, s, n in required) for n, s in schema.get("properties", {}).items())
        rows.append(
            f"| `{tool['name']}` | {arguments} | {_result(tool.get('outputSchema', {}))} "
            f"| {_hints(tool.get('annotations', {}))} |"
        )
    return "\n".join(rows) + "\n"


# --- the error codes ---------------------------------------------------------------------------------------------


def error_classes() -> list[type[SnapshotsError]]:
    """Every class of the error tree that declares its own code, in the tree's order."""
    found: list[type[SnapshotsError]] = []

    def walk(cls: type[SnapshotsError]) -> None:
        for sub in cls.__subclasses__():
            if "code" in vars(sub):
                found.append(sub)
            walk(sub)

    walk(SnapshotsError)
    return found


def error_table() -> str:
    """One row per stable code: where it comes from, what the audit records, and when it is raised."""
    classes = error_classes()
    codes = [cls.code for cls in classes]
    assert codes == list(ERROR_CODES), (codes, ERROR_CODES)
    missing, stale = set(codes) - set(WHEN), set(WHEN) - set(codes)
    assert not missing and not stale, f"say when each code is raised in WHEN: missing {missing}, stale {stale}"
    rows = ["| code | from | audit outcome | when |", "|---|---|---|---|"]
    for cls in classes:
        source = "the provider" if issubclass(cls, ProviderError) else "this server"
        rows.append(f"| `{cls.code}` | {source} | `{cls.outcome}` | {WHEN[cls.code]} |")
    return "\n".join(rows) + "\n"


# --- the module map ----------------------------------------------------------------------------------------------


def _summary(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    summary = " ".join(docstring.strip().split("\n\n")[0].split())  # the summary, however many lines it wraps over
    return (summary or "(no docstring)").replace("|", "\\|")


def module_map(package: Path = PACKAGE) -> str:
    """Every module of the package: its path, its line count and the summary of its docstring."""
    paths = sorted(package.rglob("*.py"), key=lambda p: (len(p.relative_to(package).parts) > 1, p.relative_to(package)))
    rows = ["| module | lines | what it is |", "|---|--:|---|"]
    total = 0
    for path in paths:
        lines = len(path.read_text(encoding="utf-8").splitlines())
        total += lines
        rows.append(f"| `{path.relative_to(package).as_posix()}` | {lines} | {_summary(path)} |")
    root = sum(1 for p in paths if p.parent == package and p.name != "__init__.py")
    rows.append(f"| {len(paths)} files, {root} modules at the root | {total} | |")
    return "\n".join(rows) + "\n"


# --- the metrics table (docs/observability.md) -------------------------------------------------------------------


def metric_table() -> str:
    """One row per metric the server exports: its name, kind, labels and meaning, read from `metrics.Metrics`."""
    from pydantic import SecretStr

    from vps_snapshots_mcp.compose import compose
    from vps_snapshots_mcp.settings import Settings

    from .world import BASE_URL, TOKEN

    settings = Settings(api_token=SecretStr(TOKEN), api_url=BASE_URL, transport="http")
    metrics = compose(settings).metrics  # as the server makes them: its tools and endpoints are the closed sets
    assert metrics is not None
    rows = ["| metric | kind | labels | meaning |", "|---|---|---|---|"]
    for metric in metrics.described():
        labels = ", ".join(f"`{label}`" for label in metric.labels) or "none"
        meaning = metric.meaning.replace("|", "\\|")
        rows.append(f"| `{metric.name}` | {metric.kind} | {labels} | {meaning} |")
    rows += ["", "| label | its closed set (anything else is counted as `other`) |", "|---|---|"]
    for label, values in metrics.label_sets().items():
        shown = ", ".join(f"`{value}`" if value else '`""`' for value in sorted(values))
        rows.append(f"| `{label}` | {shown} |")
    return "\n".join(rows) + "\n"
