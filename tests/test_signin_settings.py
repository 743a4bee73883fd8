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
