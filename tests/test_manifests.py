"""The manifests that put the server in MCP hosts: valid, consistent with the code, and never holding a secret."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from mcp import Client
from pydantic import SecretStr

from vps_snapshots_mcp import __version__
from vps_snapshots_mcp.cli import SECRET_ENV_VARS, serve_parser, settings_from
from vps_snapshots_mcp.compose import build_server
from vps_snapshots_mcp.protocol.http import READY_DEADLINE_S
from vps_snapshots_mcp.settings import Settings, environment_variables

ROOT = Path(__file__).parent.parent
MANIFESTS = ROOT / "manifests"
SCHEMAS = Path(__file__).parent / "schemas"  # byte-exact copies of ../shared/schemas, so no layout is assumed
SHARED_SCHEMAS = ROOT.parent / "shared" / "schemas"
READ_BY_THE_SERVER = environment_variables()
TOKEN_REFERENCE = re.compile(r"^\$\{(input|env|user_config)[:.][A-Za-z0-9_.-]+\}$")


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def validate(schema_name: str, document: Any) -> list[str]:
    schema = load_json(SCHEMAS / schema_name)
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    jsonschema.Draft7Validator.check_schema(schema)
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(document)]


def server_json() -> dict[str, Any]:
    return dict(load_json(MANIFESTS / "server.json"))


def mcpb() -> dict[str, Any]:
    return dict(load_json(MANIFESTS / "mcpb" / "manifest.json"))


def kubernetes(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((MANIFESTS / "kubernetes" / name).read_text()))


# --- the registry and the bundle ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["server.schema.json", "mcpb-manifest.schema.json"])
def test_the_vendored_schemas_are_the_official_bytes(name: str) -> None:
    digests = {
        "server.schema.json": "3fba09590c99f61735d234822279f4223fab9e300c0a81e81c91ab62a4114de0",
        "mcpb-manifest.schema.json": "068557824c651d6d49b86ad132adeafe62ca788d918b3e1e2b224bf0f91320fd",
    }
    assert hashlib.sha256((SCHEMAS / name).read_bytes()).hexdigest() == digests[name]
    if (SHARED_SCHEMAS / name).exists():
        assert (SHARED_SCHEMAS / name).read_bytes() == (SCHEMAS / name).read_bytes()


def test_server_json_is_valid_against_the_registry_schema() -> None:
    assert validate("server.schema.json", server_json()) == []


def test_server_json_describes_the_pypi_package_over_stdio_with_a_secret_token() -> None:
    [package] = server_json()["packages"]
    assert (package["registryType"], package["identifier"], package["runtimeHint"]) == (
        "pypi",
        "vps-snapshots-mcp",
        "uvx",
    )
    assert package["transport"] == {"type": "stdio"}
    variables = {v["name"]: v for v in package["environmentVariables"]}
    assert variables["VPS_API_TOKEN"]["isSecret"] is True and variables["VPS_API_TOKEN"]["isRequired"] is True
    for name in variables:
        assert name in READ_BY_THE_SERVER, f"{name} is not read by the server"


def test_the_readme_carries_the_registry_ownership_marker() -> None:
    assert f"mcp-name: {server_json()['name']}" in (ROOT / "README.md").read_text()


def test_the_mcpb_manifest_is_valid_against_its_schema() -> None:
    assert validate("mcpb-manifest.schema.json", mcpb()) == []


def test_the_mcpb_token_is_a_sensitive_user_config_and_every_reference_resolves() -> None:
    manifest = mcpb()
    token = manifest["user_config"]["api_token"]
    assert token["sensitive"] is True and token["required"] is True
    env = manifest["server"]["mcp_config"]["env"]
    assert env["VPS_API_TOKEN"] == "${user_config.api_token}"
    for name, value in env.items():
        assert name in READ_BY_THE_SERVER, f"{name} is not read by the server"
        key = re.fullmatch(r"\$\{user_config\.([a-z_]+)\}", value)
        assert key and key.group(1) in manifest["user_config"], value


def test_the_mcpb_defaults_make_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = mcpb()
    defaults = {k: v.get("default") for k, v in manifest["user_config"].items()}
    for name, value in manifest["server"]["mcp_config"]["env"].items():
        key = value.removeprefix("${user_config.").removesuffix("}")
        filled = defaults[key]
        shown = "token-from-the-keychain-123" if key == "api_token" else filled
        monkeypatch.setenv(name, str(shown).lower() if isinstance(shown, bool) else str(shown))
    settings = settings_from(serve_parser().parse_args([]))
    assert (settings.read_only, settings.no_destructive, settings.allowed_servers) == (False, False, None)


@pytest.mark.anyio
async def test_the_mcpb_tools_are_the_servers_tools() -> None:
    server = build_server(Settings(api_token=SecretStr("x" * 20)))
    async with Client(server) as client:
        listed = [t.name for t in (await client.list_tools()).tools]
    assert [t["name"] for t in mcpb()["tools"]] == listed


def test_every_manifest_names_the_package_version() -> None:
    registry = server_json()
    assert registry["version"] == __version__
    assert {p["version"] for p in registry["packages"]} == {__version__}
    assert mcpb()["version"] == __version__
    [container] = kubernetes("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(f":{__version__}")
    assert f"vps-snapshots-mcp:{__version__}" in (MANIFESTS / "kubernetes" / "Containerfile").read_text()


def test_the_image_installs_the_extras_the_deployment_needs() -> None:
    # A replica given a redis:// state URL without the `redis` extra exits at start: a crash loop.
    [container] = kubernetes("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    state_url = next(e["value"] for e in container["env"] if e["name"] == "VPS_MCP_STATE_URL")
    containerfile = (MANIFESTS / "kubernetes" / "Containerfile").read_text()
    [install] = [line for line in containerfile.splitlines() if "pip install" in line]
    assert state_url.startswith("redis://")
    assert '".[redis,otel]"' in install, install  # the checked-out source, with the extras (traces on demand)
    assert "USER 10001" in containerfile and "HEALTHCHECK" in containerfile


# --- host configurations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["claude_desktop_config.json", "vscode_mcp.json", "cursor_mcp.json", "windsurf_mcp_config.json"]
)
def test_host_configs_reference_the_token_and_never_hold_it(name: str) -> None:
    config = load_json(MANIFESTS / "clients" / name)
    servers = config.get("mcpServers") or config.get("servers")
    [server] = servers.values()
    # The clone's command until the package is published (tests/test_host_snippets.py starts each one).
    assert server["command"] == "/path/to/vps-snapshots-mcp/.venv/bin/vps-snapshots-mcp"
    env = server["env"]
    assert "VPS_API_TOKEN" in env or "VPS_API_TOKEN_FILE" in env
    if "VPS_API_TOKEN" in env:
        assert TOKEN_REFERENCE.match(env["VPS_API_TOKEN"]), env["VPS_API_TOKEN"]


def test_vscode_asks_for_the_token_as_a_password() -> None:
    config = load_json(MANIFESTS / "clients" / "vscode_mcp.json")
    [prompt] = config["inputs"]
    assert prompt["password"] is True
    assert config["servers"]["vps-snapshots"]["env"]["VPS_API_TOKEN"] == f"${{input:{prompt['id']}}}"


def test_the_claude_code_line_references_the_token() -> None:
    script = (MANIFESTS / "clients" / "claude_code.sh").read_text()
    [command] = [line for line in script.splitlines() if line.startswith("claude mcp add")]
    assert "VPS_API_TOKEN_FILE=" in command and "-- /path/to/vps-snapshots-mcp/.venv/bin/vps-snapshots-mcp" in command
    assert "Bearer $VPS_MCP_AUTH_TOKEN" in script


# --- Kubernetes --------------------------------------------------------------------------------------------


def test_the_deployment_runs_two_stateless_non_root_replicas_with_readiness_and_liveness_probes() -> None:
    deployment = kubernetes("deployment.yaml")
    assert deployment["kind"] == "Deployment" and deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert {"--transport=http", "--stateless", "--host=0.0.0.0"} <= set(container["args"])
    # Ready while the consent ledger answers (a pod behind a down Redis takes no traffic); alive while the process is.
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["timeoutSeconds"] > READY_DEADLINE_S  # /readyz answers within its deadline
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # The settings these args and variables make are ones the server accepts (client auth is set).
    args = serve_parser().parse_args(container["args"])
    assert args.stateless and args.transport == "http"


def test_the_deployment_references_only_the_secret_keys_the_server_reads() -> None:
    [container] = kubernetes("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    references = {
        entry["name"]: entry["valueFrom"]["secretKeyRef"]
        for entry in container["env"]
        if "secretKeyRef" in entry.get("valueFrom", {})
    }
    # ... and REDIS_PASSWORD, which Kubernetes expands into VPS_MCP_STATE_URL (tests/test_kubernetes_deployment.py).
    assert set(references) == {*SECRET_ENV_VARS, "REDIS_PASSWORD"}
    for name, ref in references.items():
        assert ref["key"] == name and ref["name"] == "vps-snapshots-mcp"
    secret = kubernetes("secret.example.yaml")
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "vps-snapshots-mcp"
    assert set(secret["stringData"]) == {*SECRET_ENV_VARS, "REDIS_PASSWORD"}
    assert all(value.startswith("<") for value in secret["stringData"].values())  # a template, not secrets


def test_the_service_targets_the_http_port() -> None:
    service = kubernetes("service.yaml")
    assert service["kind"] == "Service"
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    deployment = kubernetes("deployment.yaml")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


CUSTOM_RESOURCES = {"monitoring.coreos.com/v1": {"ServiceMonitor"}}
"""Kinds of a CRD (the Prometheus Operator's): kubernetes-validate has no schema for them, so they are left out of
the strict validation and checked against the resources they point at instead (servicemonitor.yaml)."""


def all_kubernetes_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, document)
        for path in sorted((MANIFESTS / "kubernetes").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def kubernetes_documents() -> list[tuple[str, dict[str, Any]]]:
    """Every manifest of a built-in kind (what kubernetes-validate --strict has schemas for)."""
    return [
        (name, document)
        for name, document in all_kubernetes_documents()
        if document["kind"] not in CUSTOM_RESOURCES.get(document["apiVersion"], set())
    ]


def test_only_the_optional_service_monitor_is_a_custom_resource() -> None:
    custom = [(name, r["kind"]) for name, r in all_kubernetes_documents() if (name, r) not in kubernetes_documents()]
    assert custom == [("servicemonitor.yaml", "ServiceMonitor")]


def test_the_service_monitor_scrapes_the_metrics_port_the_pods_serve_and_the_annotations_name() -> None:
    monitor = kubernetes("servicemonitor.yaml")
    service = kubernetes("service.yaml")
    deployment = kubernetes("deployment.yaml")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval"} and endpoint["path"] == "/metrics"
    [service_port] = [port for port in service["spec"]["ports"] if port["name"] == endpoint["port"]]
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    [container_port] = [port for port in container["ports"] if port["name"] == service_port["targetPort"]]
    assert f"--metrics-port={container_port['containerPort']}" in container["args"]
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(container_port["containerPort"]),
        "prometheus.io/path": "/metrics",
    }
    # Bound to the pod's own address, never every interface by accident.
    assert "--metrics-host=$(POD_IP)" in container["args"]
    [pod_ip] = [entry for entry in container["env"] if entry["name"] == "POD_IP"]
    assert pod_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


@pytest.mark.parametrize(("name", "resource"), kubernetes_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_kubernetes_manifest_is_valid_against_the_kubernetes_schemas(name: str, resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)  # offline schemas


def test_the_strict_validation_catches_a_misspelt_field() -> None:
    deployment = kubernetes("deployment.yaml")
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_the_replicas_share_the_consent_ledger_in_the_redis_the_manifests_run() -> None:
    [container] = kubernetes("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    env = {entry["name"]: entry["value"] for entry in container["env"] if "value" in entry}
    state = urlsplit(env["VPS_MCP_STATE_URL"])
    services = {r["metadata"]["name"]: r for _, r in kubernetes_documents() if r["kind"] == "Service"}
    assert state.scheme == "redis" and state.hostname in services
    assert services[state.hostname]["spec"]["ports"][0]["port"] == state.port
    # The server refuses HTTP replicas with a shared secret and no shared ledger: these settings start.
    environ = {"VPS_API_TOKEN": "t", "VPS_MCP_AUTH_TOKEN": "x" * 32, "VPS_MCP_CONFIRM_SECRET": "y" * 32}
    settings = settings_from(serve_parser().parse_args(container["args"]), {**environ, **env})
    assert settings.state_url == env["VPS_MCP_STATE_URL"]


def test_the_shipped_redis_keeps_the_ledger_through_a_restart_and_never_evicts() -> None:
    documents = yaml.safe_load_all((MANIFESTS / "kubernetes" / "redis.yaml").read_text())
    resources = {r["kind"]: r for r in documents}
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    option = {args[i]: args[i + 1] for i in range(0, len(args), 2)}
    # Every write reaches the disk before Redis answers it: a spent consent is never lost with a restart.
    assert option["--appendonly"] == "yes" and option["--appendfsync"] == "always"
    assert option["--maxmemory-policy"] == "noeviction"
    [mount] = container["volumeMounts"]
    assert mount["mountPath"] == option["--dir"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = resources["PersistentVolumeClaim"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert resources["Deployment"]["spec"]["strategy"]["type"] == "Recreate"  # one writer of the volume at a time
