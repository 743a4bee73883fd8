"""Errors a person can act on: each start-up mistake is one line on stderr, no traceback, exit 2.

Every case spawns the real command line (`python -m vps_snapshots_mcp ...`) with stdin closed and a deadline:
a server that starts instead of refusing fails on the deadline, not by hanging the suite.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr

from vps_snapshots_mcp.cli import serve_parser
from vps_snapshots_mcp.errors import ProviderConnectionError
from vps_snapshots_mcp.protocol.provider_errors import word
from vps_snapshots_mcp.provider.client import SnapshotsClient
from vps_snapshots_mcp.settings import Settings, SettingsError
from vps_snapshots_mcp.timing import Timing

from .support.redis_server import free_port
from .support.world import TOKEN, SleepRecorder

PROG = "vps-snapshots-mcp: "
NO_REDIS = (
    "import runpy, sys; sys.modules['redis'] = None; "  # `import redis` fails as if the extra were not installed
    "sys.argv[0] = 'vps_snapshots_mcp'; runpy.run_module('vps_snapshots_mcp', run_name='__main__', alter_sys=True)"
)


def refused(
    *args: str, env: dict[str, str] | None = None, launcher: tuple[str, ...] = ("-m", "vps_snapshots_mcp")
) -> str:
    """Run the CLI; assert it refused to start with exactly one line on stderr and exit 2; that line."""
    result = subprocess.run(
        [sys.executable, *launcher, *args],
        capture_output=True,
        text=True,
        timeout=30,  # a server that starts instead of refusing fails here
        env={"PATH": "/usr/bin:/bin", "VPS_API_TOKEN": TOKEN, **(env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(PROG), lines[0]
    return lines[0].removeprefix(PROG)


# --- the port -------------------------------------------------------------------------------------


def test_http_on_a_port_in_use_is_one_line_naming_the_address_and_the_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refused("--transport", "http", "--port", str(port))
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert "in use" in line and "--port" in line


# --- the redis extra ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_redis_state_url_without_the_redis_extra_names_the_extra(transport: str) -> None:
    line = refused(
        "--transport",
        transport,
        "--port",
        str(free_port()),
        env={"VPS_MCP_STATE_URL": "redis://127.0.0.1:6379/0"},
        launcher=("-c", NO_REDIS),
    )
    assert "VPS_MCP_STATE_URL" in line and "pip install -e '.[redis]' in the clone" in line


# --- the token file -------------------------------------------------------------------------------


def test_an_empty_token_file_given_by_flag_says_the_file_is_empty(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    line = refused("--api-token-file", str(empty), env={"VPS_API_TOKEN": ""})
    assert str(empty) in line and "empty" in line and "--api-token-file" in line
    assert "VPS_API_TOKEN is not set" not in line


def test_an_empty_token_file_given_by_variable_names_the_variable(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("")
    line = refused(env={"VPS_API_TOKEN": "", "VPS_API_TOKEN_FILE": str(empty)})
    assert str(empty) in line and "empty" in line and "VPS_API_TOKEN_FILE" in line


# --- the SQLite ledger ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite:///consent.db", "sqlite:///var/lib/vps/consent.db", "sqlite://consent.db"])
def test_a_relative_sqlite_path_is_refused_at_start(url: str) -> None:
    line = refused("--state-url", url)
    assert line.startswith("VPS_MCP_STATE_URL") and "ABSOLUTE" in line


def test_an_absolute_sqlite_path_is_accepted_as_documented(tmp_path: Path) -> None:
    assert Settings(api_token=SecretStr(TOKEN), state_url=f"sqlite:///{tmp_path}/consent.db").state_url


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_missing_directory_for_the_sqlite_ledger_is_one_line_at_start(tmp_path: Path, transport: str) -> None:
    missing = tmp_path / "no" / "such"
    line = refused("--transport", transport, "--port", str(free_port()), "--state-url", f"sqlite:///{missing}/c.db")
    assert line.startswith("VPS_MCP_STATE_URL") and str(missing) in line and "does not exist" in line
    assert not missing.exists()


# --- flags ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["debug", "Debug", "DEBUG"])
def test_the_log_level_is_case_insensitive(level: str) -> None:
    assert serve_parser().parse_args(["--log-level", level]).log_level == "DEBUG"


def test_the_choices_are_case_insensitive_like_their_variables() -> None:
    assert serve_parser().parse_args(["--transport", "HTTP"]).transport == "http"


def test_metavars_read_as_values() -> None:
    shown = serve_parser().format_help()
    for usage in (
        "--api-token TOKEN",
        "--api-url URL",
        "--timeout SECONDS",
        "--connect-timeout SECONDS",
        "--sandbox-seconds SECONDS",
        "--oauth-scope SCOPE",
        "--oauth-jwks-url URL",
        "--oauth-issuer URL",
        "--oauth-groups-claim CLAIM",
    ):
        assert usage in shown, usage
    for wrong in ("--api-token API", "--oauth-scope OAUTH", "--timeout TIMEOUT", "--max-concurrency MAX"):
        assert wrong not in shown, wrong


# --- template placeholders ------------------------------------------------------------------------


PLACEHOLDERS = {
    "VPS_API_TOKEN": "<provider API token>",
    "VPS_MCP_AUTH_TOKEN": "<client bearer token, 32+ random characters>",
    "VPS_MCP_CONFIRM_SECRET": "<shared confirmation secret, 32+ random characters>",
}
"""The template's values (manifests/kubernetes/secret.example.yaml)."""


@pytest.mark.parametrize("variable", sorted(PLACEHOLDERS))
def test_a_template_placeholder_is_refused_as_a_secret_at_start(variable: str) -> None:
    placeholder = PLACEHOLDERS[variable]
    line = refused("--transport", "http", "--port", str(free_port()), env={variable: placeholder})
    assert variable in line and "placeholder" in line
    assert placeholder not in line


@pytest.mark.parametrize("field", ["api_token", "auth_token", "confirm_secret"])
@pytest.mark.parametrize(
    "placeholder", [*PLACEHOLDERS.values(), "<a-long-enough-placeholder>", "paste 32+ random characters here"]
)
def test_a_placeholder_is_refused_by_the_settings(field: str, placeholder: str) -> None:
    values = {"api_token": SecretStr(TOKEN), field: SecretStr(placeholder)}
    with pytest.raises(SettingsError, match="placeholder"):
        Settings(**values)  # type: ignore[arg-type]


def test_real_secrets_are_still_accepted() -> None:
    secret = SecretStr("x<y>z-0123456789abcdef")  # angle brackets inside, not around: not the template's shape
    assert Settings(api_token=secret, auth_token=secret, confirm_secret=secret).auth_token == secret


# --- connection failures --------------------------------------------------------------------------


@contextmanager
def hanging_up(answer: bytes = b"") -> Iterator[int]:
    """A loopback port that accepts each connection, reads, sends `answer` (default: nothing) and closes it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                connection.recv(65536)
                connection.sendall(answer)
                connection.close()

        threading.Thread(target=serve, daemon=True).start()
        yield listener.getsockname()[1]


async def _listing_fails(url: str) -> str:
    async with SnapshotsClient(base_url=url, token=SecretStr(TOKEN), timing=Timing(sleep=SleepRecorder())) as client:
        with pytest.raises(ProviderConnectionError) as caught:
            await client.list_snapshots()
    return word(caught.value).message


@pytest.mark.anyio
async def test_an_unresolvable_provider_host_says_to_check_the_url() -> None:
    message = await _listing_fails("https://does-not-exist.invalid/api/v1")
    assert "does-not-exist.invalid" in message and "check VPS_API_URL" in message
    assert "try again" not in message and message.endswith("Nothing was changed.")


@pytest.mark.anyio
async def test_a_refused_provider_port_says_to_check_the_url() -> None:
    message = await _listing_fails(f"http://127.0.0.1:{free_port()}/api/v1")
    assert "check VPS_API_URL" in message and "try again" not in message


@pytest.mark.anyio
async def test_a_tls_failure_says_to_check_the_url() -> None:
    with hanging_up(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port:  # plain HTTP where https:// expects TLS
        message = await _listing_fails(f"https://127.0.0.1:{port}/api/v1")
    assert "check VPS_API_URL" in message and "try again" not in message


@pytest.mark.anyio
async def test_a_connection_dropped_without_an_answer_says_to_try_again() -> None:
    with hanging_up() as port:
        message = await _listing_fails(f"http://127.0.0.1:{port}/api/v1")
    assert "try again shortly" in message and "VPS_API_URL" not in message
