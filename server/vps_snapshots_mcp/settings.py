"""Frozen settings: the provider, the secret token, timeouts and the access mode.

`Settings` is built once by the CLI (from flags and environment) or by tests,
and never changes while the server runs. The API token is a `SecretStr`: its
repr and str are masked, and only `client.py` reads its value.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

DEFAULT_API_URL = "https://admin.vps.org/api/v1"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
TransportName = Literal["stdio", "http"]
DEFAULT_HTTP_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 256 * 1024  # tool arguments are small; a bigger body is a mistake or an attack
DEFAULT_OAUTH_SCOPE = "vps-snapshots"
DEFAULT_MAX_CONCURRENCY = 100
"""Enough for a burst of parallel tool calls to run at once; lower it if the provider rate limits."""


class SettingsError(ValueError):
    """A setting is missing or unsafe; the message names the setting and the fix."""


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and any loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_api_url(url: str) -> str:
    """Return `url` without a trailing slash, or raise `SettingsError`.

    Plain `http://` is accepted only for a loopback host: the bearer token would
    otherwise cross a network in clear text.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SettingsError(f"VPS_API_URL must be an http(s) URL such as {DEFAULT_API_URL}, got {url!r}")
    if parts.username or parts.password:
        raise SettingsError("VPS_API_URL must not contain credentials; set the token in VPS_API_TOKEN")
    if parts.query or parts.fragment:
        raise SettingsError("VPS_API_URL must not contain a query or fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise SettingsError(
            f"VPS_API_URL uses plain http:// for {parts.hostname}; the API token would cross the network "
            "in clear text. Use https://, or http:// only for a loopback host (127.0.0.1, localhost, ::1)."
        )
    return url.rstrip("/")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the server needs to run. Build it with keywords; it validates itself."""

    api_token: SecretStr | None = None
    api_url: str = DEFAULT_API_URL
    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    sandbox: bool = False
    """Use the in-process provider simulator instead of the real API (no token needed)."""

    read_only: bool = False
    """Register only the read tools (list_snapshots, get_snapshot)."""
    no_destructive: bool = False
    """Leave out restore_snapshot and delete_snapshot."""
    allowed_servers: frozenset[int] | None = None
    """When set, every call touching another server is refused with `forbidden`."""

    confirm_secret: SecretStr | None = field(default=None, repr=False)
    """HMAC key for confirmation tokens; random per process when unset."""
    log_level: LogLevel = "INFO"
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    """Provider requests in flight at once; more wait their turn."""
    audit_log: str | None = None
    """Append one JSON line per create/restore/delete attempt to this file."""

    # --- HTTP transport (ignored on stdio) ---
    transport: TransportName = "stdio"
    host: str = "127.0.0.1"
    port: int = DEFAULT_HTTP_PORT
    stateless: bool = False
    """Any replica can answer any request: no server-side MCP sessions."""
    public_url: str | None = None
    """This server's MCP URL as clients reach it (https://mcp.example.com/mcp): the OAuth audience."""
    auth_token: SecretStr | None = field(default=None, repr=False)
    """Static bearer token clients must present (VPS_MCP_AUTH_TOKEN)."""
    oauth_jwks_url: str | None = None
    oauth_issuer: str | None = None
    oauth_scope: str = DEFAULT_OAUTH_SCOPE
    allowed_hosts: tuple[str, ...] = ()
    """Extra Host header values accepted (loopback and the public URL's host always are); "*" turns the check off."""
    allowed_origins: tuple[str, ...] = ()
    """Extra Origin values accepted from browsers (loopback and the public URL's origin always are)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_url", check_api_url(self.api_url))
        if not self.timeout_s > 0 or not self.connect_timeout_s > 0:
            raise SettingsError("timeouts must be positive numbers of seconds")
        if not self.sandbox and (self.api_token is None or not self.api_token.get_secret_value().strip()):
            raise SettingsError(
                "VPS_API_TOKEN is not set: export your provider API token as VPS_API_TOKEN, "
                "or run with --sandbox to try the built-in simulator"
            )
        if self.allowed_servers is not None and not self.allowed_servers:
            raise SettingsError("--allowed-servers needs at least one server id")
        if self.confirm_secret is not None and len(self.confirm_secret.get_secret_value()) < 16:
            raise SettingsError("VPS_MCP_CONFIRM_SECRET must be at least 16 characters")
        if not 1 <= self.max_concurrency <= 1000:
            raise SettingsError("--max-concurrency must be between 1 and 1000")
        if self.transport == "http":
            self._check_http()

    def _check_http(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"--port must be 0-65535, got {self.port}")
        if self.auth_token is not None and len(self.auth_token.get_secret_value()) < 16:
            raise SettingsError("VPS_MCP_AUTH_TOKEN must be at least 16 characters")
        oauth_parts = {"VPS_MCP_OAUTH_JWKS_URL": self.oauth_jwks_url, "VPS_MCP_OAUTH_ISSUER": self.oauth_issuer}
        if any(oauth_parts.values()):
            missing = [name for name, value in oauth_parts.items() if not value]
            if self.public_url is None:
                missing.append("VPS_MCP_PUBLIC_URL (the audience: this server's MCP URL)")
            if missing:
                raise SettingsError(f"OAuth needs {', '.join(missing)} as well")
            if self.auth_token is not None:
                raise SettingsError("choose one client authentication: VPS_MCP_AUTH_TOKEN or OAuth, not both")
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise SettingsError(f"VPS_MCP_PUBLIC_URL must be an http(s) URL, got {self.public_url!r}")
        if not is_loopback_host(self.host) and not self.client_auth_enabled:
            raise SettingsError(
                f"refusing to serve HTTP on {self.host} without client authentication: anyone who can reach it "
                "could act on your servers. Set VPS_MCP_AUTH_TOKEN (a long random string), or OAuth "
                "(VPS_MCP_OAUTH_JWKS_URL, VPS_MCP_OAUTH_ISSUER, VPS_MCP_PUBLIC_URL), or bind to 127.0.0.1."
            )
        if self.max_body_bytes < 1024:
            raise SettingsError("--max-body-bytes must be at least 1024")

    @property
    def oauth_enabled(self) -> bool:
        return bool(self.oauth_jwks_url and self.oauth_issuer and self.public_url)

    @property
    def client_auth_enabled(self) -> bool:
        return self.auth_token is not None or self.oauth_enabled

    @property
    def destructive_tools_enabled(self) -> bool:
        return not (self.read_only or self.no_destructive)

    @property
    def write_tools_enabled(self) -> bool:
        return not self.read_only

    def mode_summary(self) -> str:
        """One line describing the access mode, for `instructions` and logs."""
        if self.read_only:
            mode = "read-only: only list_snapshots and get_snapshot are available"
        elif self.no_destructive:
            mode = "no-destructive: restore_snapshot and delete_snapshot are not available"
        else:
            mode = "full: list, get, create, restore and delete are available"
        if self.allowed_servers is not None:
            ids = ", ".join(str(i) for i in sorted(self.allowed_servers))
            mode += f"; only servers {ids} may be touched"
        if self.sandbox:
            mode += "; SANDBOX: a built-in simulator, no real server is affected"
        return mode


def parse_server_ids(text: str) -> frozenset[int]:
    """Parse `"12345, 777"` into ids, or raise `SettingsError` naming the bad part."""
    ids: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise SettingsError(f"--allowed-servers takes positive integer ids separated by commas, got {part!r}")
        ids.add(int(part))
    return frozenset(ids)
