"""The import direction CONTRIBUTING.md describes, checked on the source so it cannot drift."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "server" / "vps_snapshots_mcp"


def imports_of(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against the package)."""
    module_parts = ["vps_snapshots_mcp", *path.relative_to(PACKAGE).with_suffix("").parts]
    if module_parts[-1] == "__init__":
        module_parts.pop()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_parts[: len(module_parts) - node.level + (1 if path.name == "__init__.py" else 0)]
                name = ".".join([*base, node.module] if node.module else base)
                found.add(name)
                found.update(f"{name}.{alias.name}" for alias in node.names)
            elif node.module:
                found.add(node.module)
    return found


def modules() -> dict[str, set[str]]:
    return {str(p.relative_to(PACKAGE)): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_only_the_request_path_imports_the_http_library() -> None:
    users = {name for name, imported in modules().items() if any(i.split(".")[0] == "httpx2" for i in imported)}
    # The approval page's OpenID Connect client speaks to the identity provider, never to the VPS provider; the
    # approvers' webhook posts our own words.
    assert users == {"provider/http.py", "protocol/web/oidc.py", "webhook.py"}


def test_the_webhook_imports_nothing_of_the_provider_nor_the_protocol() -> None:
    ours = {i for i in modules()["webhook.py"] if i.startswith("vps_snapshots_mcp")}
    assert not {i for i in ours if i.startswith(("vps_snapshots_mcp.provider", "vps_snapshots_mcp.protocol"))}, ours


def test_the_simulator_shares_no_code_with_the_client() -> None:
    for name, imported in modules().items():
        if name.startswith("simulator/"):
            ours = {i for i in imported if i.startswith("vps_snapshots_mcp")}
            assert all(i.startswith("vps_snapshots_mcp.simulator") for i in ours), (name, ours)


@pytest.mark.parametrize(
    "leaf",
    [
        "models.py",
        "errors.py",
        "settings.py",
        "timing.py",
        "person.py",
        "provider/text.py",
        "provider/facts.py",
        "audit_chain.py",
        "tracing.py",
        "logs.py",
    ],
)
def test_leaf_modules_import_nothing_from_the_package(leaf: str) -> None:
    # The provider's facts are a leaf too: the models' descriptions quote them. The audit chain is one so that
    # `audit verify` checks a file without loading the server.
    facts = {"vps_snapshots_mcp.provider.facts", "vps_snapshots_mcp.provider.facts.RESTORE_TAKES"}
    ours = {i for i in modules()[leaf] if i.startswith("vps_snapshots_mcp")}
    assert ours - (facts if leaf == "models.py" else set()) == set(), ours


def test_only_the_protocol_room_imports_the_sdk() -> None:
    users = {
        name for name, imported in modules().items() if any(i.split(".")[0] in ("mcp", "mcp_types") for i in imported)
    }
    # The demo is an MCP client of its own server, not part of the server.
    assert {name for name in users if not name.startswith("protocol/")} <= {"demo.py"}, users


def test_the_consent_core_imports_nothing_of_the_sdk() -> None:
    # The decision, the tokens and the words of consent hold without MCP: an approval page can use them too.
    for name, imported in modules().items():
        if name.startswith("consent/"):
            assert not any(i.split(".")[0] in ("mcp", "mcp_types") for i in imported), (name, imported)


@pytest.mark.parametrize("room", ["provider/", "consent/", "state/"])
def test_the_rooms_below_the_protocol_know_nothing_of_it(room: str) -> None:
    for name, imported in modules().items():
        if name.startswith(room):
            assert not any(i.startswith("vps_snapshots_mcp.protocol") for i in imported), (name, imported)


def test_only_the_tracing_module_imports_opentelemetry() -> None:
    # Spans are made through `tracing.py` alone (the API; the SDK only when OTEL_* variables ask for it), so the
    # rooms that trace stay free of it and a second tracing library would be one module's change.
    users = {name for name, imported in modules().items() if any(i.split(".")[0] == "opentelemetry" for i in imported)}
    assert users == {"tracing.py"}, users


def test_only_the_state_package_imports_redis() -> None:
    users = {name for name, imported in modules().items() if any(i.split(".")[0] == "redis" for i in imported)}
    assert users == {"state/redis.py", "state/redis_events.py"}  # the ledger, and the event log over its client


def test_only_the_command_line_imports_the_composition_root() -> None:
    # The doctor is the command line's: it runs the start-up checks one by one and builds the client auth.
    users = {name for name, imported in modules().items() if "vps_snapshots_mcp.compose" in imported}
    assert users <= {"cli.py", "compose.py", "doctor.py"}, users


def test_only_the_command_line_runs_the_doctor() -> None:
    users = {
        name for name, imported in modules().items() if any(i.startswith("vps_snapshots_mcp.doctor") for i in imported)
    }
    assert users <= {"cli.py"}, users


def test_the_protocol_adapter_knows_neither_the_composition_root_nor_the_command_line() -> None:
    imported = modules()["protocol/server.py"]
    assert not {i for i in imported if i.startswith(("vps_snapshots_mcp.compose", "vps_snapshots_mcp.cli"))}


def test_the_adapter_is_built_only_by_the_composition_root() -> None:
    users = {name for name, imported in modules().items() if "vps_snapshots_mcp.protocol.server" in imported}
    assert users <= {"compose.py"}, users


def test_docstrings_point_only_inside_the_repository() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "ARCHITECTURE.md" not in text and "upstream-api.md" not in text and "../shared" not in text, path


def test_only_the_simulator_and_the_http_transport_import_the_web_framework() -> None:
    for name, imported in modules().items():
        if any(i.split(".")[0] in ("starlette", "uvicorn") for i in imported):
            # The web room (protocol/web/) serves the pages people open in a browser: the approval page.
            assert name.startswith(("simulator/", "protocol/web/")) or name in ("protocol/http.py", "protocol/auth.py")


def said_at_run_time(path: Path) -> list[str]:
    """The strings a module may say at run time: every string constant (f-string parts too) but docstrings."""
    tree = ast.parse(path.read_text())
    documenting = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in documenting
    ]


def tool_language(text: str) -> list[str]:
    """The tool names, command-line flags and environment variables that `text` names."""
    tools = [tool["name"] for tool in json.loads((PACKAGE / "protocol" / "tools.json").read_text())]
    names = "|".join(re.escape(name) for name in tools)
    return re.findall(rf"\b(?:{names})\b|(?<![\w-])--[a-z][a-z-]*|\bVPS_[A-Z_]+", text)


def test_tool_language_is_recognised() -> None:
    assert tool_language("call list_snapshots; check VPS_API_TOKEN (--max-records)") == [
        "list_snapshots",
        "VPS_API_TOKEN",
        "--max-records",
    ]
    assert tool_language("the snapshot list -- a read; 3-10 min") == []


@pytest.mark.parametrize("module", sorted(str(p.relative_to(PACKAGE)) for p in (PACKAGE / "provider").glob("*.py")))
def test_the_provider_speaks_no_tool_language(module: str) -> None:
    # Naming a tool, a flag or a setting is the protocol layer's (protocol/provider_errors.py words the advice).
    named = [(text, found) for text in said_at_run_time(PACKAGE / module) if (found := tool_language(text))]
    assert named == [], named


@pytest.mark.parametrize("module", ["access.py", "operations.py", "operations", "policy.py"])
def test_the_access_policy_and_the_operations_import_no_sdk(module: str) -> None:
    for name, imported in modules().items():
        if name == module or name.startswith(module + "/"):
            assert not any(i.split(".")[0] in ("mcp", "mcp_types") for i in imported), (name, imported)
            assert not any(i.startswith("vps_snapshots_mcp.protocol") for i in imported), (name, imported)


def test_the_policy_file_reads_only_the_standard_library() -> None:
    # The permissions model is plain data an approval page or a linter can load: it imports nothing of ours.
    ours = {i for i in modules()["policy.py"] if i.startswith("vps_snapshots_mcp")}
    assert ours == set(), ours


def test_only_the_operations_ask_the_provider_for_a_change() -> None:
    changes = {"create_snapshot", "restore_snapshot", "delete_snapshot"}
    callers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in changes:
                callers.add(str(path.relative_to(PACKAGE)))
    # The worded port (protocol/provider_errors.py) only passes each call through to the provider.
    assert callers == {"operations.py", "protocol/provider_errors.py"}, callers


def test_only_the_metrics_module_imports_the_metrics_library() -> None:
    users = {
        name for name, imported in modules().items() if any(i.split(".")[0] == "prometheus_client" for i in imported)
    }
    assert users == {"metrics.py"}, users


def test_the_metrics_module_imports_only_the_error_codes_and_no_sdk_or_web() -> None:
    imported = modules()["metrics.py"]
    ours = {i for i in imported if i.startswith("vps_snapshots_mcp")}
    assert ours <= {"vps_snapshots_mcp.errors", "vps_snapshots_mcp.errors.ERROR_CODES"}, ours
    assert not {i for i in imported if i.split(".")[0] in ("mcp", "mcp_types", "starlette", "uvicorn", "httpx2")}
