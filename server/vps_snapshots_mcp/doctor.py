"""`vps-snapshots-mcp doctor`: everything a first call would need, checked now, one line each.

It reads the same flags and variables as `serve`, and prints one line per check, `ok` or `FAIL`, with what
was found or what to do:

    settings     the settings can be read (a mistake in them is the only line: nothing else can be checked)
    token        where the provider token was read from (the variable, flag or file, never the token)
    provider     ONE GET of the snapshot list's first page: the token is accepted, the URL answers like the API
    state        the consent ledger opens, and a test redemption round-trips: recorded once, refused the second
                 time (a `doctor:` key, which no consent uses, kept only until a minute after the check)
    audit        the audit trail can be opened for appending and locked as a writer locks it; no line is added
    permissions  the --policy file can be used
    http auth    HTTP client authentication is coherent (OAuth parts together, the tokens file readable), and
                 with OAuth, the JWKS URL serves signing keys
    extras, state directory, port
                 what `serve` checks at start (`compose.START_CHECKS`), one by one; the state is not checked
                 when the extra or the directory it needs is missing (one mistake, one FAIL line)

Exit 0 only when every check passes, 1 otherwise. No line holds a secret: each is redacted like a log line.
The audit check adds no line to the trail: a writer needs a file it can open for appending and lock (the
chain continues from the last line, whatever it is), so a test line would prove nothing more, and would
stay in the trail forever. Like `serve` at start, it creates the file (empty, mode 0600) when it is missing.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import jwt

from .access import AccessPolicy
from .audit import open_audit_file
from .compose import START_CHECKS, client_authentication
from .errors import (
    NotFoundError,
    ProviderConnectionError,
    ProviderTimeoutError,
    SnapshotsError,
    UnauthorizedError,
    UpstreamError,
)
from .policy import PolicyError
from .protocol.streams import EVENT_TTL_S
from .provider.text import redact
from .settings import Settings, SettingsError
from .state import ConsentRefused, RedemptionUncertain, open_state, sqlite_path
from .timing import Timing

if TYPE_CHECKING:
    from .provider.client import Transport

STATE_DEADLINE_S = 10.0
"""The state check gives up after this (a Redis that does not answer fails its own timeouts well before)."""
PROBE_KEY_PREFIX = "doctor:"
"""The test redemption's key: consents are spent as `token:...` and `round:...`, so it can never meet one."""
PROBE_TTL_S = 60.0


@dataclass(frozen=True)
class Check:
    """One line of the doctor's answer."""

    name: str
    ok: bool
    detail: str

    def line(self, *secrets: str) -> str:
        return redact(f"{'ok' if self.ok else 'FAIL':<4} {self.name}: {self.detail}", *secrets)


def _said(error: Exception | str) -> str:
    """A message without its error code and the tool-call closing words ("Nothing was changed. ...")."""
    message = error.message if isinstance(error, SnapshotsError) else str(error)
    return _CODE.sub("", message).partition(" Nothing was changed.")[0].rstrip(". ")


def _fix_of(error: Exception) -> str:
    """What the message says to do after "Nothing was changed.", if anything."""
    message = error.message if isinstance(error, SnapshotsError) else str(error)
    return message.partition(" Nothing was changed.")[2].strip()


_CODE = re.compile(r"^[a-z_]+: ")


def provider_failure(error: SnapshotsError, settings: Settings, token_source: str) -> str:
    """What a failed probe of the provider means for the operator, and what to change."""
    url = settings.api_url
    if isinstance(error, UnauthorizedError) and error.status == 401:
        return f"the provider at {url} rejected the API token (HTTP 401): check the token in {token_source}"
    if isinstance(error, UnauthorizedError):
        return (
            f"the provider at {url} does not let this token list snapshots (HTTP {error.status}): give the "
            f"token read access to snapshots, or use another (from {token_source})"
        )
    if isinstance(error, NotFoundError):
        return (
            f"{url}/snapshots/ answered HTTP 404: check VPS_API_URL, the API's base URL "
            "(such as https://admin.vps.org/api/v1)"
        )
    if isinstance(error, ProviderConnectionError):
        if error.advice is not None and error.advice.kind == "check_api_url":
            return f"{_said(error)}: check VPS_API_URL ({url})"
        return f"{_said(error)}; if it persists, check VPS_API_URL ({url}) and the network"
    if isinstance(error, ProviderTimeoutError):
        return (
            f"{url} did not answer within {settings.timeout_s:g} s: check VPS_API_URL and the network, "
            "or raise --timeout"
        )
    if isinstance(error, UpstreamError) and (error.status is None or error.status < 500):  # HTML, another shape
        return f"{url} does not answer like the API ({_said(error)}): check VPS_API_URL"
    return f"{_said(error)}: check VPS_API_URL ({url}), or try again if the provider is having trouble"


async def check_provider(settings: Settings, token_source: str, transport: Transport | None) -> Check:
    from .provider.client import RetryPolicy, SnapshotsClient  # the provider's request path, only when asked

    assert settings.api_token is not None
    client = SnapshotsClient(
        base_url=settings.api_url,
        token=settings.api_token,
        timeout_s=settings.timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        transport=transport,
        retry=RetryPolicy(max_attempts=1),  # one GET, whatever it answers
        max_response_bytes=settings.max_response_bytes,
    )
    try:
        async with client:
            count = await client.first_page()
    except SnapshotsError as error:
        return Check("provider", False, provider_failure(error, settings, token_source))
    return Check(
        "provider",
        True,
        f"{settings.api_url} accepted the token and answered like the API ({count} snapshot records on the first "
        "page of the list)",
    )


async def check_state(settings: Settings) -> Check:
    state = open_state(settings.state_url, wall=Timing().wall, event_ttl_s=EVENT_TTL_S)
    ledger = state.ledger
    where = ledger.description if settings.state_url else "memory: this process alone"
    try:
        with anyio.move_on_after(STATE_DEADLINE_S):
            why = await ledger.unavailable()
            if why is not None:
                return Check("state", False, f"{_said(why)}: check VPS_MCP_STATE_URL and that the store is running")
            key = f"{PROBE_KEY_PREFIX}{secrets.token_hex(16)}"
            expires_at = Timing().wall() + PROBE_TTL_S
            first = await ledger.redeem(key, expires_at=expires_at)
            again = await ledger.redeem(key, expires_at=expires_at)
            if first and not again:
                return Check("state", True, f"the consent ledger ({where}) recorded a test redemption once")
            return Check(
                "state",
                False,
                f"the consent ledger ({where}) did not record a test redemption once (first {first}, second "
                f"{again}): a consent could be used twice; check that nothing else writes to it",
            )
        return Check("state", False, f"the consent ledger ({where}) did not answer within {STATE_DEADLINE_S:g} s")
    except (SnapshotsError, ConsentRefused, RedemptionUncertain) as error:
        fix = _fix_of(error)
        fix = fix if "--state-url" in fix else "check VPS_MCP_STATE_URL and that the store is running"
        return Check("state", False, f"{_said(error)}: {fix}")
    finally:
        await state.aclose()


def check_audit(settings: Settings) -> Check:
    path = settings.audit_log
    if not path:
        return Check("audit", True, "no audit trail (--audit-log is off)")
    try:
        fd = open_audit_file(path)  # as the server opens it at start: creating it, mode 0600
    except OSError as exc:
        return Check(
            "audit",
            False,
            f"cannot open the audit trail {path} for appending ({exc.strerror}): create its directory and make it "
            "writable by this user, or set --audit-log (VPS_MCP_AUDIT_LOG) to another path",
        )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # every writer takes this lock; a held one is no fault
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        pass
    except OSError as exc:
        return Check("audit", False, f"the audit trail {path} cannot be locked ({exc.strerror}): use a local disk")
    finally:
        os.close(fd)
    return Check("audit", True, f"{path} can be appended to (no line was added)")


def check_permissions(settings: Settings) -> Check:
    try:
        AccessPolicy.from_settings(settings)
    except (PolicyError, SettingsError) as error:
        return Check("permissions", False, str(error))
    return Check("permissions", True, f"the policy file {settings.policy}" if settings.policy else "no --policy")


async def check_http_auth(settings: Settings) -> Check:
    if settings.transport != "http":
        return Check("http auth", True, "not used on stdio")
    try:
        auth = client_authentication(settings)  # reads the tokens file, builds the OAuth verifier, as serve does
    except (SettingsError, PolicyError, ValueError) as error:
        return Check("http auth", False, str(error))
    if settings.oauth_enabled:
        try:
            keys = await auth.sdk_options["token_verifier"].signing_keys()
        except jwt.PyJWKClientError as error:
            return Check(
                "http auth",
                False,
                f"the JWKS at {settings.oauth_jwks_url} cannot be used ({error}): check VPS_MCP_OAUTH_JWKS_URL",
            )
        how = f"OAuth (issuer {settings.oauth_issuer}, audience {settings.public_url}; the JWKS has {keys} keys)"
    elif settings.auth_tokens_file:
        also = " and VPS_MCP_AUTH_TOKEN" if settings.auth_token else ""
        how = f"named client tokens from {settings.auth_tokens_file}{also}"
    elif settings.auth_token:
        how = "the static client token VPS_MCP_AUTH_TOKEN"
    else:
        how = f"none: clients on {settings.host} (loopback) are not asked to authenticate"
    return Check("http auth", True, how)


def _start_ok(name: str, settings: Settings) -> str:
    """What a start check that passed found."""
    url = settings.state_url or ""
    if name == "extras":
        return "the redis extra is installed" if url.startswith("redis") else "none needed"
    if name == "state directory":
        return f"{os.path.dirname(sqlite_path(url))} exists" if url.startswith("sqlite") else "no SQLite ledger"
    if settings.transport != "http":
        return "not used on stdio"
    return f"{settings.host}:{settings.port} can be listened on" if settings.port else "a free one is picked"


def start_checks(settings: Settings) -> list[Check]:
    """`compose.START_CHECKS`, what `serve` refuses to start without, one line each."""
    found = []
    for name, check in START_CHECKS:
        try:
            check(settings)
        except SettingsError as error:
            found.append(Check(name, False, str(error)))
        else:
            found.append(Check(name, True, _start_ok(name, settings)))
    return found


async def diagnose(settings: Settings, token_source: str, transport: Transport | None = None) -> list[Check]:
    """Every check, in the order printed."""
    found = [Check("token", True, f"read from {token_source}")]
    found += start_checks(settings)  # first: a missing extra would make the state check fail without a word
    found.append(await check_provider(settings, token_source, transport))
    unmet = [check.name for check in found if check.name in ("extras", "state directory") and not check.ok]
    if unmet:
        found.append(Check("state", False, f"not checked: see {unmet[0]}"))  # one mistake, one line to fix it
    else:
        found.append(await check_state(settings))
    found += [check_audit(settings), check_permissions(settings), await check_http_auth(settings)]
    return found


def run(settings: Settings, token_source: str, transport: Transport | None, write: Callable[[str], object]) -> int:
    """Run every check, write one line each; 0 when all pass."""

    async def checks() -> list[Check]:
        return await diagnose(settings, token_source, transport)

    runner: Callable[[], Awaitable[list[Check]]] = checks
    found = anyio.run(runner)
    for check in found:
        write(check.line(*settings.secrets()))
    return 0 if all(check.ok for check in found) else 1
