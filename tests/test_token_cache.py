"""A verified access token is remembered for a minute, never past its expiry, and the JWKS is asked once.

A client sends the same bearer token on every request: checking its RS256 signature (and the JWKS look-up, on a
worker thread) every time is most of what OAuth costs a call. These tests drive the real verifier against a real
JWKS server on loopback, with an injected clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vps_snapshots_mcp.protocol import auth
from vps_snapshots_mcp.protocol.auth import VERIFIED_FOR_S, JwtTokenVerifier
from vps_snapshots_mcp.simulator.serve import serving_in_thread

from .support.http_serving import mint

pytestmark = pytest.mark.anyio

AUDIENCE = "http://127.0.0.1:9/mcp"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Jwks:
    """A JWKS endpoint that counts its fetches."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "k1", "alg": "RS256"}
        self.fetches = 0
        self.keys: list[dict[str, str]] = [self.jwk]

    async def serve(self, request: Request) -> JSONResponse:
        self.fetches += 1
        return JSONResponse({"keys": self.keys})


@pytest.fixture
def jwks(key: rsa.RSAPrivateKey) -> Iterator[tuple[str, Jwks]]:
    endpoint = Jwks(key)
    with serving_in_thread(Starlette(routes=[Route("/jwks.json", endpoint.serve)])) as url:
        yield url, endpoint


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def verifier(url: str, clock: Clock) -> JwtTokenVerifier:
    return JwtTokenVerifier(jwks_url=f"{url}/jwks.json", issuer=url, audience=AUDIENCE, clock=clock)


async def test_the_same_token_is_verified_once_a_minute(key: rsa.RSAPrivateKey, jwks: tuple[str, Jwks]) -> None:
    url, endpoint = jwks
    clock = Clock()
    check = verifier(url, clock)
    token = mint(key, iss=url, aud=AUDIENCE)
    first = await check.verify_token(token)
    assert first is not None and first.subject == "operator-7"
    assert await check.verify_token(token) is first  # remembered: no second signature check
    assert endpoint.fetches == 1
    [(until, _)] = check._verified.values()  # what the verifier remembers
    assert until == clock.now + VERIFIED_FOR_S
    clock.now += VERIFIED_FOR_S - 1
    assert await check.verify_token(token) is first
    clock.now += 2  # a minute on: the signature is checked again, and remembered for another minute
    again = await check.verify_token(token)
    assert again is not None and again is not first
    assert [u for u, _ in check._verified.values()] == [clock.now + VERIFIED_FOR_S]
    # The issuer rotates the key away: once the JWKS client's own cache (five minutes) lets go of the key set, the
    # next check after our minute refuses the token.
    endpoint.keys = []
    check._jwks.jwk_set_cache = None  # the five minutes of the JWKS client's cache, passed
    clock.now += VERIFIED_FOR_S + 1
    assert await check.verify_token(token) is None
    assert not check._verified


async def test_a_token_is_never_remembered_past_its_expiry(key: rsa.RSAPrivateKey, jwks: tuple[str, Jwks]) -> None:
    url, _ = jwks
    clock = Clock()
    check = verifier(url, clock)
    expires = int(clock.now) + 10
    token = mint(key, iss=url, aud=AUDIENCE, exp=expires)
    assert await check.verify_token(token) is not None
    [(until, _)] = check._verified.values()
    assert until == expires  # not a minute: the token's own expiry comes first
    clock.now = expires  # from then on it is checked on every call, and no longer remembered
    assert await check.verify_token(token) is not None  # (jwt itself judges by the real clock, with its leeway)
    assert not check._verified


async def test_refused_tokens_are_not_remembered_and_the_memory_is_bounded(
    key: rsa.RSAPrivateKey, jwks: tuple[str, Jwks], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "VERIFIED_KEPT", 8)
    url, _ = jwks
    clock = Clock()
    check = verifier(url, clock)
    assert await check.verify_token(mint(key, iss=url, aud="http://elsewhere/mcp")) is None
    assert not check._verified
    for n in range(13):
        assert await check.verify_token(mint(key, iss=url, aud=AUDIENCE, jti=str(n))) is not None
    assert len(check._verified) == 8
