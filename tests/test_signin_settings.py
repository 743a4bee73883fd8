"""The approval page's sign-in settings: the OpenID Connect client, its secret (a variable or a file, never shown,
a template's placeholder refused), the issuer (the OAuth issuer unless named), and where the callback is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from vps_snapshots_mcp.settings import Settings, SettingsError, from_sources

OAUTH: dict[str, Any] = {
    "transport": "http",
    "api_token": SecretStr("provider-token"),
    "oauth_jwks_url": "https://id.example.com/jwks",
    "oauth_issuer": "https://id.example.com",
    "public_url": "https://mcp.example.com/mcp",
}


def settings(**overrides: Any) -> Settings:
    return Settings(**(OAUTH | overrides))


def test_sign_in_is_on_with_a_client_and_defaults_to_the_oauth_issuer() -> None:
    s = settings(approval_client_id="approval-page", approval_client_secret=SecretStr("s3cret-from-the-idp"))
    assert s.signin_enabled and s.signin_issuer == "https://id.example.com"
    assert s.site_url == "https://mcp.example.com"
    assert "s3cret-from-the-idp" in s.secrets()
    assert "s3cret-from-the-idp" not in repr(s)
    named = settings(
        approval_client_id="x", approval_client_secret=SecretStr("y" * 20), approval_issuer="https://sso.example.com"
    )
    assert named.signin_issuer == "https://sso.example.com"
    assert not settings().signin_enabled


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ({"approval_client_id": "x"}, "needs VPS_MCP_APPROVAL_CLIENT_SECRET"),
        ({"approval_client_secret": SecretStr("y" * 20)}, "not --approval-client-id"),
        ({"approval_client_id": "x", "approval_client_secret": SecretStr("<client secret>")}, "placeholder"),
        (
            {"approval_client_id": "x", "approval_client_secret": SecretStr("y" * 20), "oauth_jwks_url": None},
            "OAuth needs",
        ),
        (
            {
                "approval_client_id": "x",
                "approval_client_secret": SecretStr("y" * 20),
                "approval_issuer": "http://sso.example.com",
            },
            "plain http://",
        ),
    ],
)
def test_an_incomplete_sign_in_is_refused_at_start(overrides: dict[str, Any], said: str) -> None:
    with pytest.raises(SettingsError, match=said) as refused:
        settings(**overrides)
    assert "y" * 20 not in str(refused.value)


def test_the_secret_comes_from_a_variable_or_a_file_and_is_never_echoed(tmp_path: Path) -> None:
    environ = {
        "VPS_API_TOKEN": "provider-token",
        "VPS_MCP_OAUTH_JWKS_URL": "https://id.example.com/jwks",
        "VPS_MCP_OAUTH_ISSUER": "https://id.example.com",
        "VPS_MCP_PUBLIC_URL": "https://mcp.example.com/mcp",
        "VPS_MCP_APPROVAL_CLIENT_ID": "approval-page",
    }
    flags: dict[str, Any] = {"transport": "http"}
    secret = tmp_path / "client-secret"
    secret.write_text("from-the-file-0123456789\n")
    by_file = from_sources(flags, environ | {"VPS_MCP_APPROVAL_CLIENT_SECRET_FILE": str(secret)})
    assert by_file.approval_client_secret == SecretStr("from-the-file-0123456789")
    by_variable = from_sources(flags, environ | {"VPS_MCP_APPROVAL_CLIENT_SECRET": "from-the-variable-0123"})
    assert by_variable.approval_client_secret == SecretStr("from-the-variable-0123")
    secret.write_text("<the client secret>")
    with pytest.raises(SettingsError, match="placeholder") as refused:
        from_sources(flags, environ | {"VPS_MCP_APPROVAL_CLIENT_SECRET_FILE": str(secret)})
    assert "<the client secret>" not in str(refused.value)
    secret.write_text("")
    with pytest.raises(SettingsError, match="is empty"):
        from_sources(flags, environ | {"VPS_MCP_APPROVAL_CLIENT_SECRET_FILE": str(secret)})


def test_behind_https_the_cookies_are_secure_and_host_only() -> None:
    from starlette.responses import Response

    from vps_snapshots_mcp.protocol.web.signin import SignIn
    from vps_snapshots_mcp.state.memory import MemoryLedger

    secret = SecretStr("s3cret-from-the-idp")
    https = SignIn(settings(approval_client_id="a", approval_client_secret=secret), MemoryLedger(wall=lambda: 0.0))
    assert https.callback_url == "https://mcp.example.com/approve/callback"
    assert (https.session_cookie, https.login_cookie) == ("__Host-vps-approve", "__Host-vps-approve-login")
    response = Response()
    https._set_cookie(response, https.session_cookie, "x" * 43, 60)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-vps-approve=") and "; Secure" in cookie and "Domain" not in cookie
    assert "HttpOnly" in cookie and "Path=/" in cookie and "SameSite=lax" in cookie
    plain = settings(
        approval_client_id="a", approval_client_secret=secret, public_url="http://127.0.0.1:8000/mcp", host="127.0.0.1"
    )
    assert SignIn(plain, MemoryLedger(wall=lambda: 0.0)).session_cookie == "vps-approve"
