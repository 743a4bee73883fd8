"""Settings and the CLI's refusals: URL rule, missing token, flags over environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from vps_snapshots_mcp.cli import main, serve_parser, settings_from
from vps_snapshots_mcp.settings import (
    Settings,
    SettingsError,
    check_api_url,
    check_state_url,
    configuration_reference,
    environment_variables,
    parse_server_ids,
)

from .regenerate import GENERATED, HINT, expected

TOKEN = SecretStr("s3cret-token-value")


def test_defaults_match_the_documented_api_and_timeouts() -> None:
    settings = Settings(api_token=TOKEN)
    assert settings.api_url == "https://admin.vps.org/api/v1"
    assert (settings.timeout_s, settings.connect_timeout_s) == (30.0, 5.0)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8765/api/v1",
        "http://localhost/api/v1",
        "http://[::1]:9/api/v1",
        "https://example.com/v1/",
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    assert check_api_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    ["http://admin.vps.org/api/v1", "http://10.0.0.5/api", "ftp://x/y", "admin.vps.org", "https://u:p@h/api"],
)
def test_plain_http_off_loopback_and_odd_urls_are_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="VPS_API_URL"):
        Settings(api_token=TOKEN, api_url=url)


def test_a_missing_token_is_refused_outside_the_sandbox() -> None:
    with pytest.raises(SettingsError, match=r"VPS_API_TOKEN.*--sandbox"):
        Settings()
    assert Settings(sandbox=True).sandbox


def test_the_token_is_masked_in_repr() -> None:
    assert "s3cret" not in repr(Settings(api_token=TOKEN))


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPS_API_TOKEN", "from-env")
    monkeypatch.setenv("VPS_API_URL", "https://env.example/api/v1")
    monkeypatch.setenv("VPS_API_TIMEOUT", "12")
    args = serve_parser().parse_args(["--api-url", "https://flag.example/api/v1", "--connect-timeout", "2"])
    settings = settings_from(args)
    assert settings.api_url == "https://flag.example/api/v1"
    assert (settings.timeout_s, settings.connect_timeout_s) == (12.0, 2.0)
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "from-env"


def test_access_modes_and_the_confirm_secret_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPS_API_TOKEN", "from-env")
    monkeypatch.setenv("VPS_MCP_READ_ONLY", "1")
    monkeypatch.setenv("VPS_MCP_NO_DESTRUCTIVE", "true")
    monkeypatch.setenv("VPS_MCP_ALLOWED_SERVERS", "12345,777")
    monkeypatch.setenv("VPS_MCP_CONFIRM_SECRET", "a-long-enough-shared-secret")
    monkeypatch.setenv("VPS_MCP_LOG_LEVEL", "debug")
    monkeypatch.setenv("VPS_MCP_AUDIT_LOG", "/var/log/vps-snapshots-mcp/audit.jsonl")
    monkeypatch.setenv("VPS_MCP_MAX_CONCURRENCY", "7")
    settings = settings_from(serve_parser().parse_args([]))
    assert settings.audit_log == "/var/log/vps-snapshots-mcp/audit.jsonl" and settings.max_concurrency == 7
    assert (settings.read_only, settings.no_destructive) == (True, True)
    assert settings.allowed_servers == frozenset({12345, 777})
    assert settings.confirm_secret is not None and settings.log_level == "DEBUG"
    assert "a-long-enough" not in repr(settings)


def test_the_sandbox_needs_no_token_and_never_uses_a_real_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPS_API_TOKEN", "the-real-token")
    monkeypatch.setenv("VPS_API_URL", "https://admin.vps.org/api/v1")
    settings = settings_from(serve_parser().parse_args(["--sandbox"]))
    assert settings.sandbox and settings.api_url.startswith("https://sandbox.invalid")
    assert settings.api_token is not None and settings.api_token.get_secret_value() != "the-real-token"


def test_server_ids_parse_and_reject_garbage() -> None:
    assert parse_server_ids("12345, 777,") == frozenset({12345, 777})
    with pytest.raises(SettingsError, match="web"):
        parse_server_ids("12345,web")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vps_snapshots_mcp", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_missing_token_exits_2_with_one_line_naming_the_fixes() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "VPS_API_TOKEN" in lines[0] and "--sandbox" in lines[0]


def test_plain_http_to_a_remote_host_exits_2_without_printing_the_token() -> None:
    result = run_cli(env={"VPS_API_TOKEN": "tok-XYZ-123", "VPS_API_URL": "http://admin.vps.org/api/v1"})
    assert result.returncode == 2
    assert "clear text" in result.stderr and "tok-XYZ-123" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/vps/consent.db",
        "redis://localhost",
        "redis://vps-snapshots-mcp-redis:6379/0",
        "rediss://user:pa%40ss@redis.example.com:6380/2",
        "redis://[::1]:6379/",
    ],
)
def test_the_documented_state_urls_are_accepted(url: str) -> None:
    assert check_state_url(url) == url


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("redis://host:notaport/0", "port"),
        ("redis://host:99999/0", "port"),
        ("redis://host:0/0", "port"),
        ("redis://localhost:6379/0?foo=bar", "query"),
        ("rediss://localhost:6379/0?ssl_cert_reqs=none", "query"),
        ("redis://localhost:6379/0#x", "query"),
        ("redis://localhost:6379/zero", "DB"),
        ("redis://localhost:6379/0/1", "DB"),
        ("redis://:pw@:6379/0", "HOST"),
        ("sqlite:////var/lib/vps/consent.db?mode=ro", "query"),
        ("sqlite://consent.db", "ABSOLUTE"),
        ("sqlite:consent.db", "ABSOLUTE"),
    ],
)
def test_a_malformed_state_url_is_refused_saying_what_is_wrong(url: str, rule: str) -> None:
    with pytest.raises(SettingsError, match=rule) as refused:
        Settings(api_token=TOKEN, state_url=url)
    assert "\n" not in str(refused.value)


def test_a_refused_state_url_never_shows_its_password() -> None:
    with pytest.raises(SettingsError, match="port") as refused:
        Settings(api_token=TOKEN, state_url="redis://admin:hunter2-secret@host:notaport/0")
    assert "hunter2" not in str(refused.value) and "admin" not in str(refused.value)


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("url", ["redis://host:notaport/0", "redis://localhost:6379/0?foo=bar"])
def test_a_malformed_state_url_exits_2_with_one_line_at_start(url: str, transport: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vps_snapshots_mcp", "--state-url", url, "--transport", transport, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=20,  # a server that starts instead of refusing fails here
        env={"PATH": "/usr/bin:/bin", "VPS_API_TOKEN": "tok-XYZ-123"},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("vps-snapshots-mcp: VPS_MCP_STATE_URL") and "Traceback" not in line


def test_version_flag() -> None:
    from vps_snapshots_mcp import __version__

    result = run_cli("--version")
    assert result.returncode == 0 and __version__ in result.stdout


CONFIGURATION_DOC = Path(__file__).parent.parent / "docs" / "configuration.md"


@pytest.mark.anyio
async def test_the_configuration_reference_is_generated_from_the_declarations() -> None:
    current = configuration_reference()
    target = next(target for target in GENERATED if target.path == CONFIGURATION_DOC)
    assert CONFIGURATION_DOC.read_text() == await expected(target), HINT
    for name in environment_variables():
        assert f"`{name}`" in current


def test_help_names_every_variable_the_server_reads(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    for name in environment_variables():
        assert shown.count(name) >= 1, name
    assert "docs/configuration.md" in shown


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("VPS_MCP_TRANSPORT", "HTTP2", "VPS_MCP_TRANSPORT must be one of stdio, http"),
        ("VPS_MCP_READ_ONLY", "ture", "VPS_MCP_READ_ONLY must be a boolean"),
        ("VPS_MCP_CONSENT", "nobody", "VPS_MCP_CONSENT must be one of auto, elicitation, token"),
        ("VPS_MCP_STATE_URL", "postgres://x/y", "VPS_MCP_STATE_URL must start with"),
    ],
)
def test_a_bad_variable_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv("VPS_API_TOKEN", "from-env")
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        settings_from(serve_parser().parse_args([]))


def test_the_token_file_flag_beats_the_token_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    monkeypatch.setenv("VPS_API_TOKEN", "from-env")
    settings = settings_from(serve_parser().parse_args(["--api-token-file", str(tmp_path / "token")]))
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "from-file"
    monkeypatch.setenv("VPS_API_TOKEN_FILE", str(tmp_path / "token"))
    settings = settings_from(serve_parser().parse_args([]))  # both as variables: the token itself wins
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "from-env"


def test_consent_url_needs_http_with_oauth_and_a_public_url() -> None:
    token, api = SecretStr("t" * 20), "https://provider.test/api/v1"
    with pytest.raises(SettingsError, match=r"--consent url .* HTTP transport with OAuth"):
        Settings(api_token=token, api_url=api, consent="url")  # stdio
    with pytest.raises(SettingsError, match="--consent url"):
        Settings(api_token=token, api_url=api, consent="url", transport="http")  # no OAuth
    chosen = Settings(
        api_token=token,
        api_url=api,
        consent="url",
        transport="http",
        public_url="https://mcp.example/mcp",
        oauth_jwks_url="https://id.example/jwks",
        oauth_issuer="https://id.example",
        approval_client_id="approval-page",
        approval_client_secret=SecretStr("from-the-identity-provider"),
    )
    assert chosen.approval_pages and chosen.approval_expiry == 600
    assert not Settings(api_token=token, api_url=api).approval_pages  # stdio keeps today's flows
    with pytest.raises(SettingsError, match="--approval-expiry"):
        Settings(api_token=token, api_url=api, approval_expiry=5)


def test_the_approval_pages_exist_only_with_their_sign_in() -> None:
    # Without the page's OpenID Connect client (--approval-client-id) no page is served: `auto` must not send a
    # client that opens URLs to it, and `--consent url` is refused at start, naming what is missing.
    oauth = {
        "api_token": SecretStr("t" * 20),
        "api_url": "https://provider.test/api/v1",
        "transport": "http",
        "public_url": "https://mcp.example/mcp",
        "oauth_jwks_url": "https://id.example/jwks",
        "oauth_issuer": "https://id.example",
    }
    assert not Settings(**oauth).approval_pages  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match=r"--consent url .* HTTP transport with OAuth .*\(--approval-client-id\)"):
        Settings(**oauth, consent="url")  # type: ignore[arg-type]
