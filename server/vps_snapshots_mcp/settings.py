"""Frozen settings, each declared once: its field, flag, variable, parsing, help and docs.

Every setting is one field of `Settings` whose metadata (`setting(...)`) names
its command-line flag and environment variable and says how text becomes a
value. From that one declaration come the `serve` flags (`add_arguments`), the
environment reading and validation (`from_sources`), and the configuration
reference in `docs/configuration.md` (`configuration_reference`, checked by a
test so it cannot drift).

Precedence: a flag wins over its variable, which wins over the default. A
variable that cannot be parsed (a boolean that is not 1/0/true/false/yes/no/
on/off, an unknown choice, a number that is not one) is an error that names it.

Secrets (`VPS_API_TOKEN`, `VPS_MCP_AUTH_TOKEN`, `VPS_MCP_CONFIRM_SECRET`) are
`SecretStr`: their repr and str are masked.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import SecretStr

DEFAULT_API_URL = "https://admin.vps.org/api/v1"
SANDBOX_API_URL = "https://sandbox.invalid/api/v1"
"""The sandbox never touches the network: requests go to an in-process ASGI app."""

# The provider client's defaults: declared here, with the settings that change them, and read by the client
# (provider/ may import this leaf), so a library user and the server start from the same numbers.
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_MAX_CONCURRENCY = 100
DEFAULT_MAX_RESPONSE_BYTES = 5 * 1024 * 1024
"""The largest answer read (after decompression); a list of 5,000 records is about 1.5 MB."""
DEFAULT_MAX_RECORDS = 5000
"""The most snapshot records one list reads, across its pages."""

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["text", "json"]
TransportName = Literal["stdio", "http"]
ConsentMode = Literal["auto", "elicitation", "token", "url"]


class SettingsError(ValueError):
    """A setting is missing or unsafe; the message names the setting and the fix."""


# --- parsing text into values ----------------------------------------------------------------------

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def parse_bool(text: str, name: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise SettingsError(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {text!r}")


def _parse_int(text: str, name: str) -> int:
    if not text.strip().isdigit():
        raise SettingsError(f"{name} must be a whole number, got {text!r}")
    return int(text)


def _parse_float(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {text!r}") from None


def _parse_secret(text: str, name: str) -> SecretStr | None:
    return SecretStr(text) if text else None


ACTION_SCOPES = ("snapshots:read", "snapshots:create", "snapshots:restore", "snapshots:delete")
"""The scopes that grant an action (access.py maps tools to them)."""


def _parse_scopes(text: str, name: str) -> tuple[str, ...]:
    scopes = tuple(s for s in text.replace(",", " ").split() if s)
    unknown = [s for s in scopes if s not in ACTION_SCOPES]
    if unknown:
        raise SettingsError(f"{name}: unknown scope {unknown[0]!r}; the scopes are {', '.join(ACTION_SCOPES)}")
    return scopes


def _parse_optional(text: str, name: str) -> str | None:
    return text.strip() or None


def _parse_optional_int(text: str, name: str) -> int | None:
    return _parse_int(text, name) if text.strip() else None


def _parse_csv(text: str, name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_server_ids(text: str, name: str = "--allowed-servers") -> frozenset[int]:
    """Parse `"12345, 777"` into ids, or raise `SettingsError` naming the bad part."""
    ids: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise SettingsError(f"{name} takes positive integer ids separated by commas, got {part!r}")
        ids.add(int(part))
    return frozenset(ids)


def _choices(options: tuple[str, ...], *, upper: bool = False) -> Callable[[str, str], str]:
    def parse(text: str, name: str) -> str:
        value = text.strip().upper() if upper else text.strip().lower()
        if value not in options:
            raise SettingsError(f"{name} must be one of {', '.join(options)}; got {text!r}")
        return value

    return parse


# --- the declaration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """How one setting is given: flag, variable, parser, and the words for --help and the docs."""

    help: str
    flag: str | None = None
    env: str | None = None
    parse: Callable[[str, str], Any] | None = None
    switch: bool = False
    """A flag that takes no value (`--sandbox`); its variable is a boolean."""
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    section: str = "server"
    shown_default: str | None = None


def setting(default: Any, **option: Any) -> Any:
    return field(default=default, metadata={"option": Option(**option)})


def _options() -> list[tuple[dataclasses.Field[Any], Option]]:
    return [(f, f.metadata["option"]) for f in dataclasses.fields(Settings) if "option" in f.metadata]


def is_placeholder(secret: str) -> bool:
    """True for a template's stand-in (`<client bearer token, 32+ random characters>`), never a real secret."""
    text = secret.strip()
    return (text.startswith("<") and text.endswith(">")) or "random characters" in text.lower()


_RANDOM = "set a long random string (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
PLACEHOLDER_FIX = {
    "VPS_API_TOKEN": "set it to your provider API token",
    "VPS_MCP_AUTH_TOKEN": _RANDOM,
    "VPS_MCP_CONFIRM_SECRET": _RANDOM,
    "VPS_MCP_APPROVAL_CLIENT_SECRET": "set it to the client secret the identity provider issued for the approval page",
}
"""What to put instead of a template's placeholder, by the secret's variable."""


def _check_between(flag: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise SettingsError(f"{flag} must be between {low} and {high}")


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


def check_state_url(url: str) -> str:
    """Return `url` when it names a consent-ledger backend, or raise `SettingsError` saying what is accepted.

    Checked whole at start, so a mistake is one line and exit 2, never a traceback at the first change:
    `sqlite:///ABSOLUTE/PATH`, or `redis://[USER:PASSWORD@]HOST[:PORT][/DB]` (rediss:// for TLS), with
    no query or fragment (neither store would read one: a query's options would be silently ignored or
    fail later). The message never repeats the URL: a Redis URL may hold a password.
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///consent.db is a relative path (SQLAlchemy's reading), not /consent.db: refused, not guessed
        if parts.netloc or not parts.path.startswith("//") or not parts.path.strip("/"):
            raise SettingsError(
                "VPS_MCP_STATE_URL for SQLite is sqlite:///ABSOLUTE/PATH (three slashes, then an absolute path)"
            )
        if parts.query or parts.fragment or "?" in url or "#" in url:
            raise SettingsError("VPS_MCP_STATE_URL for SQLite takes no query or fragment: sqlite:///ABSOLUTE/PATH")
    elif parts.scheme in ("redis", "rediss"):
        _check_redis_url(parts.scheme, url)
    else:
        raise SettingsError("VPS_MCP_STATE_URL must start with sqlite:///, redis:// or rediss://")
    return url


def _check_redis_url(scheme: str, url: str) -> None:
    parts = urlsplit(url)
    shape = f"{scheme}://HOST:PORT/DB"
    if not parts.hostname:
        raise SettingsError(f"VPS_MCP_STATE_URL for Redis is {shape}, and it names no HOST")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is not None and not 1 <= port <= 65535:
        raise SettingsError(f"VPS_MCP_STATE_URL for Redis is {shape}: the port must be a number 1-65535")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise SettingsError(f"VPS_MCP_STATE_URL for Redis is {shape}, with no query or fragment")
    database = parts.path.removeprefix("/")
    if database and not (database.isascii() and database.isdigit()):
        raise SettingsError(f"VPS_MCP_STATE_URL for Redis is {shape}: DB must be a database number such as 0")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the server needs to run. Build it with keywords; it validates itself."""

    # --- the provider ---
    api_token: SecretStr | None = setting(
        None,
        flag="--api-token",
        env="VPS_API_TOKEN",
        parse=_parse_secret,
        metavar="TOKEN",
        help="provider API token; prefer the variable or a token file, as flags show in ps",
        shown_default="(required unless --sandbox)",
    )
    api_token_file: str | None = setting(
        None,
        flag="--api-token-file",
        env="VPS_API_TOKEN_FILE",
        parse=_parse_optional,
        metavar="PATH",
        help="read the provider API token from this file (--api-token beats it; it beats VPS_API_TOKEN)",
    )
    api_url: str = setting(
        DEFAULT_API_URL, flag="--api-url", env="VPS_API_URL", metavar="URL", help="provider API base URL"
    )
    timeout_s: float = setting(
        DEFAULT_TIMEOUT_S,
        flag="--timeout",
        env="VPS_API_TIMEOUT",
        parse=_parse_float,
        metavar="SECONDS",
        help="request timeout, seconds",
    )
    connect_timeout_s: float = setting(
        DEFAULT_CONNECT_TIMEOUT_S,
        flag="--connect-timeout",
        env="VPS_API_CONNECT_TIMEOUT",
        parse=_parse_float,
        metavar="SECONDS",
        help="connect timeout, seconds",
    )
    sandbox: bool = setting(
        False,
        flag="--sandbox",
        env="VPS_MCP_SANDBOX",
        switch=True,
        help="use the built-in provider simulator instead of the real API; no token needed",
    )
    sandbox_seconds: float = setting(
        6.0,
        flag="--sandbox-seconds",
        env="VPS_MCP_SANDBOX_SECONDS",
        parse=_parse_float,
        metavar="SECONDS",
        help="in the sandbox, how long a snapshot takes (a restore takes twice as long)",
    )
    # --- what the assistant may do ---
    read_only: bool = setting(
        False,
        flag="--read-only",
        env="VPS_MCP_READ_ONLY",
        switch=True,
        help="offer only list_snapshots and get_snapshot",
    )
    no_destructive: bool = setting(
        False,
        flag="--no-destructive",
        env="VPS_MCP_NO_DESTRUCTIVE",
        switch=True,
        help="leave out restore_snapshot and delete_snapshot",
    )
    allowed_servers: frozenset[int] | None = setting(
        None,
        flag="--allowed-servers",
        env="VPS_MCP_ALLOWED_SERVERS",
        parse=parse_server_ids,
        metavar="IDS",
        help="comma-separated server ids; calls touching other servers are refused",
        shown_default="all",
    )
    policy: str | None = setting(
        None,
        flag="--policy",
        env="VPS_MCP_POLICY",
        parse=_parse_optional,
        metavar="PATH",
        help="a TOML permissions file: which principals and groups may read, create, restore or delete on which "
        "servers, with which provider credential, and a change budget; deny by default (re-read when it changes)",
        shown_default="off",
    )
    consent: ConsentMode = setting(
        "auto",
        flag="--consent",
        env="VPS_MCP_CONSENT",
        parse=_choices(get_args(ConsentMode)),
        choices=get_args(ConsentMode),
        help="who confirms restore/delete: auto (ask the user when the client can, else the token; over HTTP "
        "with OAuth and the approval page's sign-in, the page for clients that open URLs), elicitation (always ask "
        "the user; refuse clients that cannot), token (a token alone suffices; weaker), url (a person approves on "
        "the approval page, signed in: HTTP with OAuth and --approval-client-id only)",
    )
    approval_expiry: int = setting(
        600,
        flag="--approval-expiry",
        env="VPS_MCP_APPROVAL_EXPIRY",
        parse=_parse_int,
        metavar="SECONDS",
        help="how long a restore or delete waits for its approval on the approval page",
    )
    confirm_secret: SecretStr | None = setting(
        None,
        env="VPS_MCP_CONFIRM_SECRET",
        parse=_parse_secret,
        help="HMAC key for confirmation tokens (16+ characters); the same on every replica",
        shown_default="random per process",
    )
    state_url: str | None = setting(
        None,
        flag="--state-url",
        env="VPS_MCP_STATE_URL",
        parse=_parse_optional,
        metavar="URL",
        help="the consent ledger shared by server processes: sqlite:///ABSOLUTE/PATH (one machine) or "
        "redis://HOST:PORT/DB (replicas)",
        shown_default="memory (one process)",
    )
    # --- operation ---
    log_level: LogLevel = setting(
        "INFO",
        flag="--log-level",
        env="VPS_MCP_LOG_LEVEL",
        parse=_choices(get_args(LogLevel), upper=True),
        choices=get_args(LogLevel),
        help="stderr log level",
    )
    log_format: LogFormat = setting(
        "text",
        flag="--log-format",
        env="VPS_MCP_LOG_FORMAT",
        parse=_choices(get_args(LogFormat)),
        choices=get_args(LogFormat),
        help="stderr log format: text, or json (one object a line: time, level, logger, message, request_id, "
        "trace_id; over HTTP an access line per request too)",
    )
    max_concurrency: int = setting(
        DEFAULT_MAX_CONCURRENCY,
        flag="--max-concurrency",
        env="VPS_MCP_MAX_CONCURRENCY",
        parse=_parse_int,
        metavar="N",
        help="provider requests in flight at once; more wait their turn",
    )
    max_response_bytes: int = setting(
        DEFAULT_MAX_RESPONSE_BYTES,
        flag="--max-response-bytes",
        env="VPS_MCP_MAX_RESPONSE_BYTES",
        parse=_parse_int,
        metavar="BYTES",
        help="the largest provider answer read; a bigger one is an upstream_error",
    )
    max_records: int = setting(
        DEFAULT_MAX_RECORDS,
        flag="--max-records",
        env="VPS_MCP_MAX_RECORDS",
        parse=_parse_int,
        metavar="N",
        help="the most snapshot records read for one list, across pages; more is an upstream_error",
    )
    audit_log: str | None = setting(
        None,
        flag="--audit-log",
        env="VPS_MCP_AUDIT_LOG",
        parse=_parse_optional,
        metavar="PATH",
        help="append one JSON line per create/restore/delete attempt to this file",
        shown_default="off",
    )
    # --- HTTP transport (ignored on stdio) ---
    transport: TransportName = setting(
        "stdio",
        flag="--transport",
        env="VPS_MCP_TRANSPORT",
        parse=_choices(get_args(TransportName)),
        choices=get_args(TransportName),
        section="http",
        help="stdio, or http (streamable HTTP at /mcp)",
    )
    host: str = setting(
        "127.0.0.1", flag="--host", env="VPS_MCP_HOST", metavar="HOST", section="http", help="address to bind"
    )
    port: int = setting(
        8000, flag="--port", env="VPS_MCP_PORT", parse=_parse_int, metavar="PORT", section="http", help="port"
    )
    metrics_port: int | None = setting(
        None,
        flag="--metrics-port",
        env="VPS_MCP_METRICS_PORT",
        parse=_parse_optional_int,
        metavar="PORT",
        section="http",
        help="also serve /metrics, alone and without client authentication, on this port (for an in-cluster "
        "scraper; /metrics on --port needs the bearer token)",
    )
    metrics_host: str = setting(
        "127.0.0.1",
        flag="--metrics-host",
        env="VPS_MCP_METRICS_HOST",
        metavar="HOST",
        section="http",
        help="address the --metrics-port listener binds (loopback unless set: a pod's IP lets the cluster scrape it)",
    )
    stateless: bool = setting(
        False,
        flag="--stateless",
        env="VPS_MCP_STATELESS",
        switch=True,
        section="http",
        help="no server-side MCP sessions, so any replica can answer any request",
    )
    public_url: str | None = setting(
        None,
        flag="--public-url",
        env="VPS_MCP_PUBLIC_URL",
        parse=_parse_optional,
        metavar="URL",
        section="http",
        help="this server's MCP URL as clients reach it (https://mcp.example.com/mcp); the OAuth audience",
    )
    auth_token: SecretStr | None = setting(
        None,
        env="VPS_MCP_AUTH_TOKEN",
        parse=_parse_secret,
        section="http",
        help="static bearer token HTTP clients must send (16+ characters)",
    )
    oauth_jwks_url: str | None = setting(
        None,
        flag="--oauth-jwks-url",
        env="VPS_MCP_OAUTH_JWKS_URL",
        parse=_parse_optional,
        metavar="URL",
        section="http",
        help="OAuth 2.1: the issuer's JWKS URL",
    )
    oauth_issuer: str | None = setting(
        None,
        flag="--oauth-issuer",
        env="VPS_MCP_OAUTH_ISSUER",
        parse=_parse_optional,
        metavar="URL",
        section="http",
        help="OAuth 2.1: the token issuer",
    )
    oauth_scope: str = setting(
        "vps-snapshots",
        flag="--oauth-scope",
        env="VPS_MCP_OAUTH_SCOPE",
        metavar="SCOPE",
        section="http",
        help="OAuth 2.1: the scope access tokens must carry",
    )
    oauth_default_scopes: tuple[str, ...] = setting(
        ("snapshots:read",),
        flag="--oauth-default-scopes",
        env="VPS_MCP_OAUTH_DEFAULT_SCOPES",
        parse=_parse_scopes,
        metavar="SCOPES",
        section="http",
        help="OAuth 2.1: the action scopes of a token carrying only the connect scope (space- or comma-separated)",
        shown_default="snapshots:read",
    )
    oauth_groups_claim: str = setting(
        "groups",
        flag="--oauth-groups-claim",
        env="VPS_MCP_OAUTH_GROUPS_CLAIM",
        metavar="CLAIM",
        section="http",
        help="OAuth 2.1: the access-token claim listing the caller's groups",
    )
    approval_client_id: str | None = setting(
        None,
        flag="--approval-client-id",
        env="VPS_MCP_APPROVAL_CLIENT_ID",
        parse=_parse_optional,
        metavar="ID",
        section="http",
        help="the approval page's OpenID Connect client id at the issuer (sign-in on /approve/; "
        "its callback is the public URL's site + /approve/callback)",
    )
    approval_client_secret: SecretStr | None = setting(
        None,
        env="VPS_MCP_APPROVAL_CLIENT_SECRET",
        parse=_parse_secret,
        section="http",
        help="the approval page's OpenID Connect client secret",
    )
    approval_client_secret_file: str | None = setting(
        None,
        flag="--approval-client-secret-file",
        env="VPS_MCP_APPROVAL_CLIENT_SECRET_FILE",
        parse=_parse_optional,
        metavar="PATH",
        section="http",
        help="a file holding the approval page's OpenID Connect client secret",
    )
    approval_issuer: str | None = setting(
        None,
        flag="--approval-issuer",
        env="VPS_MCP_APPROVAL_ISSUER",
        parse=_parse_optional,
        metavar="URL",
        section="http",
        help="the OpenID Connect issuer people sign in with on the approval page",
        shown_default="--oauth-issuer",
    )
    auth_tokens_file: str | None = setting(
        None,
        flag="--auth-tokens-file",
        env="VPS_MCP_AUTH_TOKENS_FILE",
        parse=_parse_optional,
        metavar="PATH",
        section="http",
        help="TOML file of named bearer tokens, each stored as its SHA-256 with its own scopes; re-read on change",
    )
    allowed_hosts: tuple[str, ...] = setting(
        (),
        flag="--allowed-hosts",
        env="VPS_MCP_ALLOWED_HOSTS",
        parse=_parse_csv,
        metavar="HOSTS",
        section="http",
        help="extra Host header values accepted, comma-separated; '*' turns the check off",
        shown_default="loopback + the public URL's host",
    )
    allowed_origins: tuple[str, ...] = setting(
        (),
        flag="--allowed-origins",
        env="VPS_MCP_ALLOWED_ORIGINS",
        parse=_parse_csv,
        metavar="ORIGINS",
        section="http",
        help="extra Origin values accepted from browsers, comma-separated",
        shown_default="loopback + the public URL's origin",
    )
    max_body_bytes: int = setting(
        256 * 1024,
        flag="--max-body-bytes",
        env="VPS_MCP_MAX_BODY_BYTES",
        parse=_parse_int,
        metavar="BYTES",
        section="http",
        help="HTTP request body limit (tool arguments are small; a bigger body is a mistake or an attack)",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_url", check_api_url(self.api_url))
        if not self.timeout_s > 0 or not self.connect_timeout_s > 0 or not self.sandbox_seconds > 0:
            raise SettingsError("timeouts and --sandbox-seconds must be positive numbers of seconds")
        if not self.sandbox and (self.api_token is None or not self.api_token.get_secret_value().strip()):
            raise SettingsError(
                "VPS_API_TOKEN is not set: export your provider API token as VPS_API_TOKEN (or point "
                "VPS_API_TOKEN_FILE at a file holding it), or run with --sandbox to try the built-in simulator"
            )
        for name, secret in (
            ("VPS_API_TOKEN", None if self.sandbox else self.api_token),
            ("VPS_MCP_AUTH_TOKEN", self.auth_token),
            ("VPS_MCP_CONFIRM_SECRET", self.confirm_secret),
            ("VPS_MCP_APPROVAL_CLIENT_SECRET", self.approval_client_secret),
        ):
            if secret is not None and is_placeholder(secret.get_secret_value()):
                raise SettingsError(f"{name} holds a template's placeholder, not a secret: {PLACEHOLDER_FIX[name]}")
        if self.allowed_servers is not None and not self.allowed_servers:
            raise SettingsError("--allowed-servers needs at least one server id")
        if self.confirm_secret is not None and len(self.confirm_secret.get_secret_value()) < 16:
            raise SettingsError("VPS_MCP_CONFIRM_SECRET must be at least 16 characters")
        _check_between("--max-concurrency", self.max_concurrency, 1, 1000)
        _check_between("--approval-expiry", self.approval_expiry, 30, 86400)
        if self.consent == "url" and not (self.transport == "http" and self.signin_enabled):
            raise SettingsError(
                "--consent url sends people to an approval page they sign in to: it needs the HTTP transport with "
                "OAuth (--oauth-issuer, --oauth-jwks-url) and --public-url, and the page's sign-in "
                "(--approval-client-id)"
            )
        _check_between("--max-response-bytes", self.max_response_bytes, 1024, 1024**3)
        _check_between("--max-records", self.max_records, 1, 1_000_000)
        if self.state_url is not None:
            check_state_url(self.state_url)
        if self.transport == "http":
            self._check_http()

    def secrets(self) -> tuple[str, ...]:
        """Every secret value set (API token, auth token, confirm secret, the approval page's client secret): never
        to be logged or shown."""
        values = (self.api_token, self.auth_token, self.confirm_secret, self.approval_client_secret)
        return tuple(v.get_secret_value() for v in values if v is not None)

    def _check_http(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"--port must be 0-65535, got {self.port}")
        if self.metrics_port is not None and not 1 <= self.metrics_port <= 65535:
            raise SettingsError(f"--metrics-port must be 1-65535, got {self.metrics_port}")
        if self.metrics_port is not None and self.metrics_port == self.port:
            raise SettingsError(f"--metrics-port must differ from --port ({self.port})")
        if self.confirm_secret is not None and self.state_url is None:
            raise SettingsError(
                "VPS_MCP_CONFIRM_SECRET is set (replicas), but consent is recorded in this process's memory, so "
                "a token or an accepted question could be used once on each replica. Set --state-url "
                "(VPS_MCP_STATE_URL) to redis://HOST:PORT/DB shared by every replica."
            )
        if self.auth_token is not None and len(self.auth_token.get_secret_value()) < 16:
            raise SettingsError("VPS_MCP_AUTH_TOKEN must be at least 16 characters")
        oauth_parts = {"VPS_MCP_OAUTH_JWKS_URL": self.oauth_jwks_url, "VPS_MCP_OAUTH_ISSUER": self.oauth_issuer}
        if any(oauth_parts.values()):
            missing = [name for name, value in oauth_parts.items() if not value]
            if self.public_url is None:
                missing.append("VPS_MCP_PUBLIC_URL (the audience: this server's MCP URL)")
            if missing:
                raise SettingsError(f"OAuth needs {', '.join(missing)} as well")
            if self.auth_token is not None or self.auth_tokens_file is not None:
                raise SettingsError(
                    "choose one client authentication: static tokens (VPS_MCP_AUTH_TOKEN, VPS_MCP_AUTH_TOKENS_FILE) "
                    "or OAuth, not both"
                )
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
        self._check_signin()

    def _check_signin(self) -> None:
        if self.approval_client_id is None:
            if self.approval_client_secret is not None:
                raise SettingsError("VPS_MCP_APPROVAL_CLIENT_SECRET is set, but not --approval-client-id")
            return
        missing = []
        if self.approval_client_secret is None:
            missing.append("VPS_MCP_APPROVAL_CLIENT_SECRET (or VPS_MCP_APPROVAL_CLIENT_SECRET_FILE)")
        if not self.oauth_enabled:
            missing.append("OAuth (VPS_MCP_OAUTH_JWKS_URL, VPS_MCP_OAUTH_ISSUER, VPS_MCP_PUBLIC_URL)")
        if missing:
            raise SettingsError(f"the approval page's sign-in (--approval-client-id) needs {', '.join(missing)}")
        issuer = urlsplit(self.signin_issuer or "")
        if issuer.scheme not in ("https", "http") or not issuer.hostname:
            raise SettingsError(f"--approval-issuer must be an http(s) URL, got {self.approval_issuer!r}")
        if issuer.scheme == "http" and not is_loopback_host(issuer.hostname):
            raise SettingsError("--approval-issuer uses plain http:// for a host that is not loopback: use https://")

    @property
    def oauth_enabled(self) -> bool:
        return bool(self.oauth_jwks_url and self.oauth_issuer and self.public_url)

    @property
    def signin_issuer(self) -> str | None:
        """The OpenID Connect issuer of the approval page's sign-in (`--approval-issuer`, else `--oauth-issuer`)."""
        return self.approval_issuer or self.oauth_issuer

    @property
    def signin_enabled(self) -> bool:
        return self.approval_client_id is not None and self.oauth_enabled

    @property
    def site_url(self) -> str | None:
        """Where the approval pages are: the public URL without its MCP path (`https://mcp.example.com/mcp` ->
        `https://mcp.example.com`); the sign-in callback is `{site_url}/approve/callback`."""
        if self.public_url is None:
            return None
        url = self.public_url.rstrip("/")
        return url.removesuffix("/mcp")

    @property
    def approval_pages(self) -> bool:
        """Whether people can approve on the approval page: HTTP with OAuth and the page's sign-in (its OpenID
        Connect client, `--approval-client-id`); without it no page is served, so nobody is sent to one."""
        return self.transport == "http" and self.signin_enabled

    @property
    def client_auth_enabled(self) -> bool:
        return self.auth_token is not None or self.auth_tokens_file is not None or self.oauth_enabled


# --- flags, environment, docs: all from the declaration above --------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting that has one; every default is None so that "not given" can be told apart."""
    groups = {"server": parser, "http": parser.add_argument_group("HTTP transport (ignored on stdio)")}
    for f, option in _options():
        if option.flag is None:
            continue
        where = f" [{option.env}]" if option.env else ""
        target = groups[option.section]
        if option.switch:
            target.add_argument(option.flag, dest=f.name, action="store_true", default=None, help=option.help + where)
            continue
        default = option.shown_default or _shown(f.default)
        target.add_argument(
            option.flag,
            dest=f.name,
            default=None,
            metavar=option.metavar or (None if option.choices else f.name.split("_")[0].upper()),
            choices=option.choices,
            type=_any_case(option.choices) if option.choices else str,
            help=f"{option.help}{where} (default {default})",
        )


def _any_case(choices: tuple[str, ...]) -> Callable[[str], str]:
    """A flag's text as the choice it names in any case (`--log-level debug`), as its variable reads it."""
    by_folded = {choice.casefold(): choice for choice in choices}

    def normalised(text: str) -> str:
        return by_folded.get(text.strip().casefold(), text)

    return normalised


def environment_variables() -> frozenset[str]:
    """Every environment variable the server reads."""
    return frozenset(o.env for _, o in _options() if o.env)


def env_only_help() -> str:
    """The settings read only from the environment (secrets, which flags would show in ps)."""
    return "; ".join(f"{o.env}: {o.help}" for f, o in _options() if o.flag is None and o.env)


def _text_value(flags: Mapping[str, Any], environ: Mapping[str, str], f: dataclasses.Field[Any], o: Option) -> Any:
    """The flag's value, else the variable's, parsed; `...` when neither is given."""
    given = flags.get(f.name)
    name = o.flag or o.env or f.name
    if given is not None:
        if o.switch:
            return bool(given)
        return o.parse(str(given), name) if o.parse else given
    raw = environ.get(o.env) if o.env else None
    if raw is None or (not raw.strip() and not o.switch):
        return ...
    assert o.env is not None
    if o.switch:
        return parse_bool(raw, o.env)
    return o.parse(raw, o.env) if o.parse else raw.strip()


def from_sources(flags: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """Settings from parsed flags (by field name; None = not given) over environment variables over defaults.

    Two settings combine: `api_token_file` supplies `api_token` by the same precedence (`--api-token`, then
    `--api-token-file`, then `VPS_API_TOKEN`, then `VPS_API_TOKEN_FILE`), and
    `--sandbox` replaces the token and URL with the sandbox's own, so a real token is never used there.
    """
    values: dict[str, Any] = {}
    for f, option in _options():
        value = _text_value(flags, environ, f, option)
        if value is not ...:
            values[f.name] = value
    file_by_flag = flags.get("api_token") is None and flags.get("api_token_file") is not None
    if file_by_flag or (values.get("api_token") is None and values.get("api_token_file")):
        path = values["api_token_file"]
        values["api_token"] = _read_token_file(path)  # a flag beats a variable here too
        if values["api_token"] is None and not values.get("sandbox"):
            named = "--api-token-file" if flags.get("api_token_file") is not None else "VPS_API_TOKEN_FILE"
            raise SettingsError(
                f"the API token file {path} ({named}) is empty: write your provider API token into it, "
                "or run with --sandbox to try the built-in simulator"
            )
    if values.get("approval_client_secret") is None and values.get("approval_client_secret_file"):
        values["approval_client_secret"] = _read_secret_file(
            values["approval_client_secret_file"], "the approval page's client secret file"
        )
    if values.get("sandbox"):
        import secrets

        values["api_token"], values["api_url"] = SecretStr(secrets.token_urlsafe(24)), SANDBOX_API_URL
    return Settings(**values)


def api_token_source(flags: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    """Where `from_sources` took the provider token from, by the same precedence, in words (never the token)."""
    if flags.get("sandbox") or parse_bool(environ.get("VPS_MCP_SANDBOX", ""), "VPS_MCP_SANDBOX"):
        return "--sandbox (the simulator's own token)"
    if flags.get("api_token") is not None:
        return "--api-token"
    if flags.get("api_token_file") is not None:
        return f"the file {flags['api_token_file']} (--api-token-file)"
    if environ.get("VPS_API_TOKEN", "").strip():
        return "VPS_API_TOKEN"
    return f"the file {environ.get('VPS_API_TOKEN_FILE', '').strip()} (VPS_API_TOKEN_FILE)"


def _read_token_file(path: str) -> SecretStr | None:
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as exc:
        raise SettingsError(f"cannot read the API token file {path}: {exc.strerror}") from None
    return SecretStr(token) if token else None


def _read_secret_file(path: str, what: str) -> SecretStr:
    """A secret from a file (its surrounding whitespace dropped); never echoed, an empty file refused."""
    try:
        with open(path, encoding="utf-8") as file:
            secret = file.read().strip()
    except OSError as exc:
        raise SettingsError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not secret:
        raise SettingsError(f"{what} {path} is empty")
    return SecretStr(secret)


def _shown(default: Any) -> str:
    if default is None or default == ():
        return "unset"
    if isinstance(default, bool):
        return "off" if not default else "on"
    return str(default)


def _secrets_note() -> list[str]:
    """What the docs say about secrets and flags, from the declarations (flags show in `ps`)."""
    secrets = [o for f, o in _options() if "SecretStr" in str(f.type)]
    flagless = " and ".join(f"`{o.env}`" for o in secrets if not o.flag)
    flagged = "; ".join(
        f"`{o.flag}` has one for a quick try, but prefer `{o.env}` or a file" for o in secrets if o.flag
    )
    note = f"the secrets {flagless} have no flag and are read from the environment only; {flagged}."
    return [f"Flags show in `ps`: {note}"]


def configuration_reference() -> str:
    """The configuration table in Markdown, as `docs/configuration.md` holds it."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated from server/vps_snapshots_mcp/settings.py by configuration_reference(); a test fails",
        "     when this file drifts. Regenerate: UPDATE_DOCS=1 .venv/bin/pytest tests/test_settings.py -->",
        "",
        "Every setting has one declaration in `settings.py`, from which the flags, the environment",
        "variables, their validation and this table are made. A flag wins over its variable, which wins",
        "over the default. Booleans read from the environment accept 1/0, true/false, yes/no, on/off;",
        "anything else, like an unknown choice, stops the server with a message naming the variable.",
        *_secrets_note(),
        "",
        "`vps-snapshots-mcp doctor` reads the same flags and variables as the server, and checks them.",
        "",
    ]
    titles = {"server": "The server", "http": "HTTP transport (ignored on stdio)"}
    for section, title in titles.items():
        lines += [f"## {title}", "", "| flag | environment | default | meaning |", "|---|---|---|---|"]
        for f, o in _options():
            if o.section != section:
                continue
            flag = f"`{o.flag}`" if o.flag else ""
            env = f"`{o.env}`" if o.env else ""
            default = o.shown_default or _shown(f.default)
            meaning = o.help + (f" ({' / '.join(o.choices)})" if o.choices else "")
            lines.append(f"| {flag} | {env} | {default} | {meaning} |")
        lines.append("")
    return "\n".join(lines)
