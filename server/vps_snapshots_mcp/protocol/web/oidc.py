"""The approval page as an OpenID Connect relying party: authorization code + PKCE, the ID token checked.

The issuer's endpoints come from its discovery document (whose `issuer` must be the configured one). The
authorization request carries `state`, `nonce` and an S256 `code_challenge`; the code is exchanged with the
client secret (HTTP Basic) and the verifier; the ID token's signature is checked against the issuer's JWKS with
the same code as MCP access tokens (`auth.verified_claims`), then its issuer, audience (our client id; `azp` when
there are several), expiry and nonce. Nothing here logs or returns the client secret, a code or a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import httpx2
import jwt
from pydantic import SecretStr

from ..auth import groups_of, scopes_of, verified_claims

logger = logging.getLogger(__name__)

TIMEOUT_S = 10.0
SCOPE = "openid profile"


class SignInFailed(Exception):
    """The sign-in cannot be completed; the message is for the person, and names no secret."""


@dataclass(frozen=True)
class LoginStart:
    """What one login attempt keeps server-side until its callback (never sent anywhere but the issuer)."""

    state: str
    nonce: str
    verifier: str

    @staticmethod
    def new() -> LoginStart:
        return LoginStart(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64))

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Identity:
    """Who the verified ID token names."""

    subject: str
    name: str
    scopes: frozenset[str]
    groups: frozenset[str]


class OidcClient:
    def __init__(
        self, *, issuer: str, client_id: str, client_secret: SecretStr, redirect_uri: str, groups_claim: str = "groups"
    ) -> None:
        self.issuer = issuer
        self._client_id = client_id
        self._secret = client_secret
        self.redirect_uri = redirect_uri
        self._groups_claim = groups_claim
        self._metadata: dict[str, Any] | None = None
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = anyio.Lock()

    async def _discovered(self) -> dict[str, Any]:
        async with self._lock:
            if self._metadata is None:
                url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
                try:
                    async with httpx2.AsyncClient(timeout=TIMEOUT_S) as http:
                        answer = await http.get(url)
                    answer.raise_for_status()
                    metadata = answer.json()
                except (httpx2.HTTPError, ValueError) as exc:
                    logger.warning("the OpenID issuer's discovery document is unavailable (%s)", type(exc).__name__)
                    raise SignInFailed("the identity provider cannot be reached; try again in a moment") from None
                if not isinstance(metadata, dict) or metadata.get("issuer") != self.issuer:
                    logger.error("the OpenID discovery document at %s names another issuer", url)
                    raise SignInFailed("the identity provider is misconfigured (its issuer differs)")
                self._metadata = metadata
                self._jwks = jwt.PyJWKClient(str(metadata["jwks_uri"]), cache_keys=True, lifespan=300, timeout=10)
            return self._metadata

    async def authorization_url(self, start: LoginStart) -> str:
        """Where to send the browser to sign in."""
        metadata = await self._discovered()
        query = {
            "response_type": "code",
            "client_id": self._client_id,
            "redirect_uri": self.redirect_uri,
            "scope": SCOPE,
            "state": start.state,
            "nonce": start.nonce,
            "code_challenge": start.challenge,
            "code_challenge_method": "S256",
        }
        return f"{metadata['authorization_endpoint']}?{urlencode(query)}"

    async def identity(self, code: str, start: LoginStart) -> Identity:
        """Exchange `code` with the verifier of `start`; the identity of the checked ID token."""
        metadata = await self._discovered()
        auth = (quote(self._client_id, safe=""), quote(self._secret.get_secret_value(), safe=""))
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": start.verifier,
        }
        try:
            async with httpx2.AsyncClient(timeout=TIMEOUT_S) as http:
                answer = await http.post(str(metadata["token_endpoint"]), data=form, auth=auth)
            body = answer.json()
        except (httpx2.HTTPError, ValueError) as exc:
            logger.warning("the OpenID token endpoint did not answer (%s)", type(exc).__name__)
            raise SignInFailed("the identity provider cannot be reached; try again in a moment") from None
        if answer.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
            error = body.get("error") if isinstance(body, dict) else None
            logger.info("sign-in refused by the token endpoint: %s", str(error)[:64] if error else answer.status_code)
            raise SignInFailed("the identity provider did not accept this sign-in; start again")
        identity = await self.check_id_token(body["id_token"], nonce=start.nonce)
        granted = body.get("scope")
        if isinstance(granted, str):
            identity = Identity(
                identity.subject, identity.name, identity.scopes | set(granted.split()), identity.groups
            )
        return identity

    async def check_id_token(self, token: str, *, nonce: str) -> Identity:
        """The identity an ID token names, once its signature, issuer, audience, expiry and nonce hold."""
        await self._discovered()
        assert self._jwks is not None
        try:
            claims = await verified_claims(
                self._jwks,
                token,
                audience=self._client_id,
                issuer=self.issuer,
                require=("exp", "iat", "iss", "aud", "sub", "nonce"),
            )
        except jwt.PyJWKClientError as exc:
            logger.warning("cannot check an ID token: the JWKS is unavailable (%s)", type(exc).__name__)
            raise SignInFailed("the identity provider's keys cannot be had; try again in a moment") from None
        except jwt.PyJWTError as exc:
            logger.info("ID token refused: %s", type(exc).__name__)
            raise SignInFailed("the identity provider's answer could not be verified; start again") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self._client_id:
            logger.info("ID token refused: several audiences and azp is not this client")
            raise SignInFailed("the identity provider's answer is for another client; start again")
        if not hmac.compare_digest(str(claims["nonce"]).encode(), nonce.encode()):
            logger.info("ID token refused: the nonce is not this login's")
            raise SignInFailed("the identity provider's answer is for another sign-in; start again")
        subject = str(claims["sub"])
        name = claims.get("name") or claims.get("preferred_username") or subject
        return Identity(
            subject=subject,
            name=str(name)[:200],
            scopes=frozenset(scopes_of(claims)),
            groups=frozenset(groups_of(claims.get(self._groups_claim))),
        )


__all__ = ["Identity", "LoginStart", "OidcClient", "SignInFailed"]
