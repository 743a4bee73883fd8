"""`vps-snapshots-mcp doctor`: each mistake a first call would meet is one FAIL line naming the fix, exit != 0.

Every case spawns the real command line against the simulator served on a loopback port (one GET reaches it,
and the test counts it), a real redis-server, real files. No line ever shows a secret.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from vps_snapshots_mcp.simulator import API_PREFIX, ProviderState, create_app, seeded_state
from vps_snapshots_mcp.simulator.serve import serving_in_thread

from .support.http_serving import jwks_issuer
from .support.redis_server import free_port, running_redis
from .support.world import TOKEN

pytestmark = pytest.mark.slow

NO_REDIS = (
    "import runpy, sys; sys.modules['redis'] = None; "  # `import redis` fails as if the extra were not installed
    "sys.argv[0] = 'vps_snapshots_mcp'; runpy.run_module('vps_snapshots_mcp', run_name='__main__', alter_sys=True)"
)
AUTH_TOKEN = "client-bearer-Hq3vX9mW2kLp7rTz"
CONFIRM_SECRET = "confirm-secret-Pw8nR4tY6uIo1aSd"


def encodings(secret: str) -> list[str]:
    """The ways a secret could leak: plain, base64 (plain and URL-safe), percent-encoded."""
    raw = secret.encode()
    return [secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(), quote(secret, safe="")]


def doctor(
    *args: str, env: dict[str, str], launcher: tuple[str, ...] = ("-m", "vps_snapshots_mcp")
) -> tuple[int, list[str]]:
    """Run `doctor ARGS`; its exit code and its lines (stdout), after checking nothing leaked or crashed."""
    result = subprocess.run(
        [sys.executable, *launcher, "doctor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    for secret in (TOKEN, AUTH_TOKEN, CONFIRM_SECRET, *env.values()):
        if len(secret) >= 16 and not secret.startswith(("http", "/", "sqlite", "redis")):
            for shown in encodings(secret):
                assert shown not in result.stdout + result.stderr, (secret, result.stdout, result.stderr)
    return result.returncode, result.stdout.strip().splitlines()


def only_failure(code: int, lines: list[str]) -> str:
    """The one FAIL line of a run that failed for one reason."""
    assert code == 1, lines
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 1, lines
    return failed[0]


@pytest.fixture
def provider() -> ProviderState:
    return seeded_state()


@pytest.fixture
def api(provider: ProviderState) -> Iterator[str]:
    with serving_in_thread(create_app(provider, token=TOKEN)) as base:
        yield f"{base}{API_PREFIX}"


@pytest.fixture
def good(api: str, tmp_path: Path) -> dict[str, str]:
    """Settings with which every check passes: the simulator, a SQLite ledger, an audit trail."""
    return {
        "VPS_API_URL": api,
        "VPS_API_TOKEN": TOKEN,
        "VPS_MCP_STATE_URL": f"sqlite:///{tmp_path}/consent.db",
        "VPS_MCP_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "VPS_MCP_CONFIRM_SECRET": CONFIRM_SECRET,
    }


def test_all_good_is_one_ok_line_per_check_and_exit_0(good: dict[str, str], provider: ProviderState) -> None:
    code, lines = doctor(env=good)
    assert code == 0, lines
    assert all(line.startswith("ok ") for line in lines), lines
    names = [line.split(":")[0].split()[1] for line in lines]
    for name in ("token", "provider", "state", "audit", "extras", "port"):
        assert name in names, lines
    assert "read from VPS_API_TOKEN" in lines[0]
    assert len(provider.requests) == 1, provider.requests  # ONE GET reached the provider
    (request,) = provider.requests
    assert (request.method, request.path, request.authorized) == ("GET", f"{API_PREFIX}/snapshots/", True)


def test_the_audit_trail_gets_no_line(good: dict[str, str]) -> None:
    trail = Path(good["VPS_MCP_AUDIT_LOG"])
    trail.write_bytes(b"")
    code, lines = doctor(env=good)
    assert code == 0, lines
    assert trail.read_bytes() == b""


def test_the_test_redemption_is_a_doctor_key_that_no_consent_uses(good: dict[str, str], tmp_path: Path) -> None:
    import sqlite3

    assert doctor(env=good)[0] == 0
    db = sqlite3.connect(tmp_path / "consent.db")
    try:
        keys = [key for (key,) in db.execute("SELECT key FROM consent")]
    finally:
        db.close()
    assert len(keys) == 1 and keys[0].startswith("doctor:"), keys


def test_the_token_file_it_came_from_is_named(good: dict[str, str], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = {k: v for k, v in good.items() if k != "VPS_API_TOKEN"} | {"VPS_API_TOKEN_FILE": str(token_file)}
    code, lines = doctor(env=env)
    assert code == 0, lines
    assert f"token: read from the file {token_file} (VPS_API_TOKEN_FILE)" in lines[0]


def test_a_wrong_token_is_the_providers_401_naming_where_the_token_came_from(
    good: dict[str, str], provider: ProviderState
) -> None:
    line = only_failure(*doctor(env=good | {"VPS_API_TOKEN": "wrong-token-Ab12Cd34Ef56"}))
    assert line.startswith("FAIL provider:") and "HTTP 401" in line and "VPS_API_TOKEN" in line
    assert len(provider.requests) == 1 and not provider.requests[0].authorized


def test_a_url_that_is_not_the_apis_base_says_to_check_the_url(
    good: dict[str, str], api: str, provider: ProviderState
) -> None:
    line = only_failure(*doctor(env=good | {"VPS_API_URL": api.removesuffix(API_PREFIX)}))
    assert line.startswith("FAIL provider:") and "404" in line and "check VPS_API_URL" in line
    assert len(provider.requests) == 0  # answered 404 by the router: it reached no API handler


def test_a_url_that_answers_html_says_to_check_the_url(good: dict[str, str]) -> None:
    seen: list[str] = []

    async def landing_page(request: Request) -> Response:
        seen.append(request.url.path)
        return HTMLResponse("<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>")

    site = Starlette(routes=[Route("/{path:path}", landing_page)])
    with serving_in_thread(site) as base:
        line = only_failure(*doctor(env=good | {"VPS_API_URL": base}))
    assert line.startswith("FAIL provider:") and "HTML" in line and "check VPS_API_URL" in line
    assert seen == ["/snapshots/"]


def test_a_url_where_nothing_listens_says_to_check_the_url(good: dict[str, str]) -> None:
    line = only_failure(*doctor(env=good | {"VPS_API_URL": f"http://127.0.0.1:{free_port()}/api/v1"}))
    assert line.startswith("FAIL provider:") and "check VPS_API_URL" in line and "try again" not in line


def test_an_unreachable_redis_says_to_check_the_state_url(good: dict[str, str]) -> None:
    line = only_failure(*doctor(env=good | {"VPS_MCP_STATE_URL": f"redis://127.0.0.1:{free_port()}/0"}))
    assert line.startswith("FAIL state:") and "cannot be reached" in line and "VPS_MCP_STATE_URL" in line


def test_a_running_redis_with_its_password_round_trips(good: dict[str, str], tmp_path: Path) -> None:
    with running_redis(tmp_path, password="redis-pass-Ju7Yh6Tg5Rf4") as redis:
        code, lines = doctor(env=good | {"VPS_MCP_STATE_URL": redis.url})
        assert code == 0, lines
        assert any(line.startswith("ok   state: the consent ledger (redis ") for line in lines), lines
        assert not any("redis-pass-Ju7Yh6Tg5Rf4" in line for line in lines)
        wrong = redis.url.replace("redis-pass-Ju7Yh6Tg5Rf4", "not-the-password-1234")
        line = only_failure(*doctor(env=good | {"VPS_MCP_STATE_URL": wrong}))
    assert line.startswith("FAIL state:") and "VPS_MCP_STATE_URL" in line


def test_a_redis_url_without_the_redis_extra_names_the_extra(good: dict[str, str]) -> None:
    code, lines = doctor(env=good | {"VPS_MCP_STATE_URL": "redis://127.0.0.1:6379/0"}, launcher=("-c", NO_REDIS))
    assert code == 1
    failed = [line for line in lines if line.startswith("FAIL")]
    assert failed[0].startswith("FAIL extras:") and "pip install -e '.[redis]' in the clone" in failed[0]
    assert failed[1:] == ["FAIL state: not checked: see extras"], lines


@pytest.mark.parametrize("where", ["missing directory", "a directory"])
def test_an_audit_path_that_cannot_be_appended_to_names_the_setting(
    good: dict[str, str], tmp_path: Path, where: str
) -> None:
    path = tmp_path / "no" / "such" / "audit.jsonl" if where == "missing directory" else tmp_path
    line = only_failure(*doctor(env=good | {"VPS_MCP_AUDIT_LOG": str(path)}))
    assert line.startswith("FAIL audit:") and str(path) in line and "--audit-log" in line


def test_a_missing_sqlite_directory_is_the_start_checks_line(good: dict[str, str], tmp_path: Path) -> None:
    code, lines = doctor(env=good | {"VPS_MCP_STATE_URL": f"sqlite:///{tmp_path}/no/such/c.db"})
    assert code == 1
    failed = [line for line in lines if line.startswith("FAIL")]
    assert failed[0].startswith("FAIL state directory:") and "mkdir -p" in failed[0], lines
    assert failed[1:] == ["FAIL state: not checked: see state directory"], lines


def test_incoherent_oauth_names_what_is_missing(good: dict[str, str]) -> None:
    env = good | {"VPS_MCP_TRANSPORT": "http", "VPS_MCP_OAUTH_ISSUER": "https://idp.example.com"}
    code, lines = doctor(env=env)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("FAIL settings: OAuth needs VPS_MCP_OAUTH_JWKS_URL")
    assert "VPS_MCP_PUBLIC_URL" in lines[0]


def test_an_unreadable_tokens_file_fails_the_http_auth_check(good: dict[str, str], tmp_path: Path) -> None:
    env = good | {"VPS_MCP_TRANSPORT": "http", "VPS_MCP_PORT": "0", "VPS_MCP_AUTH_TOKENS_FILE": str(tmp_path / "none")}
    line = only_failure(*doctor(env=env))
    assert line.startswith("FAIL http auth:") and str(tmp_path / "none") in line


def test_http_with_a_static_token_passes_and_never_shows_it(good: dict[str, str]) -> None:
    env = good | {"VPS_MCP_TRANSPORT": "http", "VPS_MCP_PORT": "0", "VPS_MCP_AUTH_TOKEN": AUTH_TOKEN}
    code, lines = doctor(env=env)
    assert code == 0, lines
    assert any(line.startswith("ok   http auth: the static client token VPS_MCP_AUTH_TOKEN") for line in lines)


def test_a_port_in_use_fails_the_port_check(good: dict[str, str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = only_failure(*doctor(env=good | {"VPS_MCP_TRANSPORT": "http", "VPS_MCP_PORT": str(port)}))
    assert line.startswith("FAIL port:") and "in use" in line


def test_settings_that_cannot_be_read_are_one_line_without_the_secret(good: dict[str, str]) -> None:
    code, lines = doctor(env=good | {"VPS_MCP_CONFIRM_SECRET": "<client bearer token, 32+ random characters>"})
    assert code == 1 and len(lines) == 1 and lines[0].startswith("FAIL settings: VPS_MCP_CONFIRM_SECRET"), lines


def test_the_sandbox_passes_without_the_network() -> None:
    code, lines = doctor("--sandbox", env={})
    assert code == 0, lines
    assert "--sandbox" in lines[0]


def test_oauth_whose_jwks_answers_passes(good: dict[str, str], signing_key: rsa.RSAPrivateKey) -> None:
    with jwks_issuer(signing_key) as issuer:
        env = good | {
            "VPS_MCP_TRANSPORT": "http",
            "VPS_MCP_PORT": "0",
            "VPS_MCP_OAUTH_ISSUER": issuer,
            "VPS_MCP_OAUTH_JWKS_URL": f"{issuer}/jwks.json",
            "VPS_MCP_PUBLIC_URL": "http://127.0.0.1:8000/mcp",
        }
        code, lines = doctor(env=env)
        assert code == 0, lines
        assert any(line.startswith("ok   http auth: OAuth") and "1 keys" in line for line in lines), lines
        line = only_failure(*doctor(env=env | {"VPS_MCP_OAUTH_JWKS_URL": f"{issuer}/no-such.json"}))
    assert line.startswith("FAIL http auth:") and "VPS_MCP_OAUTH_JWKS_URL" in line


def test_a_url_that_answers_json_of_another_shape_says_to_check_the_url(good: dict[str, str]) -> None:
    async def other_api(request: Request) -> Response:
        return JSONResponse({"data": {"items": []}})

    with serving_in_thread(Starlette(routes=[Route("/{path:path}", other_api)])) as base:
        line = only_failure(*doctor(env=good | {"VPS_API_URL": base}))
    assert line.startswith("FAIL provider:") and "does not answer like the API" in line and "check VPS_API_URL" in line
