"""Named static bearer tokens (`--auth-tokens-file`): each person or bot its own revocable token and scopes.

The file is TOML; a token is stored only as the SHA-256 of its text (hex), never the token itself:

    [tokens.alice]
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    scopes = ["snapshots:read", "snapshots:create"]

    [tokens.deploy-bot]
    sha256 = "..."
    scopes = ["snapshots:read"]

Make a token and its hash with
`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'` and
`printf %s "$TOKEN" | sha256sum`. Each named token is its own principal
(kind "token", id = its name).

The file is re-read when its modification time or size changes, looked at
at most once a second: a rotation or a revocation needs no restart. A broken
file at start stops the server (one line, exit 2); a broken file later keeps
the last good one serving and logs an error.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..access import ACTION_SCOPES
from ..settings import SettingsError
from .principal import Principal, named_token_principal

logger = logging.getLogger(__name__)

RECHECK_S = 1.0
"""How often, at most, the file's modification time and size are looked at."""
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


@dataclass(frozen=True)
class NamedToken:
    name: str
    digest: bytes
    principal: Principal


def parse_tokens(text: str, path: str) -> tuple[NamedToken, ...]:
    """The named tokens of a tokens file's text, or SettingsError naming the file, the place and the reason."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"tokens file {path}: not valid TOML: {exc}") from None
    tokens = data.get("tokens")
    unknown = sorted(set(data) - {"tokens"})
    if unknown:
        raise SettingsError(f"tokens file {path}: unknown table {unknown[0]!r}; named tokens go under [tokens.NAME]")
    if not isinstance(tokens, dict) or not tokens:
        raise SettingsError(f"tokens file {path}: no [tokens.NAME] tables")
    named: list[NamedToken] = []
    seen: dict[str, str] = {}
    for name, entry in tokens.items():
        named.append(_named_token(name, entry, path))
        digest = named[-1].digest.hex()
        if digest in seen:
            raise SettingsError(f"tokens file {path}: [tokens.{name}] has the same sha256 as [tokens.{seen[digest]}]")
        seen[digest] = name
    return tuple(named)


def _named_token(name: str, entry: Any, path: str) -> NamedToken:
    where = f"tokens file {path}: [tokens.{name}]"
    if not _NAME.fullmatch(name):
        raise SettingsError(f"{where}: a name is 1-64 letters, digits and . _ @ -")
    if not isinstance(entry, dict):
        raise SettingsError(f"{where} must be a table with sha256 and scopes")
    extra = sorted(set(entry) - {"sha256", "scopes"})
    if extra:
        raise SettingsError(f"{where}: unknown key {extra[0]!r}; a token has sha256 and scopes")
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest.lower()):
        raise SettingsError(f"{where}: sha256 must be the token's SHA-256 as 64 hex digits")
    scopes = entry.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise SettingsError(f'{where}: scopes must be a list such as ["snapshots:read"]')
    wrong = [s for s in scopes if s not in ACTION_SCOPES]
    if wrong:
        raise SettingsError(f"{where}: unknown scope {wrong[0]!r}; the scopes are {', '.join(ACTION_SCOPES)}")
    return NamedToken(name, bytes.fromhex(digest), named_token_principal(name, frozenset(scopes)))


class TokensFile:
    """The named tokens of a file, kept current: `principal_for(token)` re-reads the file when it changed."""

    def __init__(self, path: str, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._monotonic = monotonic
        self._stamp = self._stat()
        self._tokens = parse_tokens(self._read(), path)  # at start: a broken file is an error
        self._checked = monotonic()

    def _stat(self) -> tuple[int, int]:
        try:
            st = os.stat(self._path)
        except OSError as exc:
            raise SettingsError(f"tokens file {self._path}: cannot read it: {exc.strerror}") from None
        return (st.st_mtime_ns, st.st_size)

    def _read(self) -> str:
        try:
            with open(self._path, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"tokens file {self._path}: cannot read it: {exc}") from None

    def _refresh(self) -> None:
        now = self._monotonic()
        if now - self._checked < RECHECK_S:
            return
        self._checked = now
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return
            self._stamp = stamp
            self._tokens = parse_tokens(self._read(), self._path)
        except SettingsError as exc:
            logger.error("%s; the last good tokens file keeps serving", exc)
            return
        logger.info("tokens file %s re-read: %d named tokens", self._path, len(self._tokens))

    def principal_for(self, presented: bytes) -> Principal | None:
        """The principal of the named token `presented`, or None; every stored hash is compared, in constant time."""
        self._refresh()
        digest = hashlib.sha256(presented).digest()
        found: Principal | None = None
        for token in self._tokens:
            if hmac.compare_digest(digest, token.digest) and found is None:
                found = token.principal
        return found


__all__ = ["RECHECK_S", "NamedToken", "TokensFile", "parse_tokens"]
