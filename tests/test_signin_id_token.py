"""The ID token the approval page accepts: signed by a key of the issuer's JWKS (an asymmetric algorithm), for our
client, by our issuer, unexpired, with this login's nonce; anything else signs nobody in. And the person it names
has EXACTLY the principal key the MCP server derives for an access token with the same issuer and subject."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vps_snapshots_mcp.protocol.auth import JwtTokenVerifier
from vps_snapshots_mcp.protocol.principal import current_principal
from vps_snapshots_mcp.protocol.web.oidc import OidcClient, SignInFailed
from vps_snapshots_mcp.simulator.serve import serving_in_thread

pytestmark = pytest.mark.anyio

CLIENT = "approval-page"
NONCE = "the-nonce-of-this-login"


@pytest.fixture
def op(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    """An issuer that publishes its discovery document and JWKS (the keys the tests sign with); its URL."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    where: dict[str, str] = {}

    async def discovery(request: Request) -> JSONResponse:
        base = where["url"]
        return JSONResponse(
            {"issuer": base, "jwks_uri": f"{base}/jwks", "authorization_endpoint": f"{base}/auth", "token_endpoint": ""}
        )

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]})

    routes = [Route("/.well-known/openid-configuration", discovery), Route("/jwks", jwks)]
    with serving_in_thread(Starlette(routes=routes)) as url:
        where["url"] = url
        yield url


def id_token(key: Any, issuer: str, *, algorithm: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": issuer, "aud": CLIENT, "sub": "alice", "iat": now, "exp": now + 300, "nonce": NONCE} | claims
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=algorithm, headers={"kid": "k1"})


def client(issuer: str) -> OidcClient:
    return OidcClient(
        issuer=issuer, client_id=CLIENT, client_secret=SecretStr("x" * 24), redirect_uri="http://127.0.0.1/cb"
    )


async def test_a_good_id_token_names_the_person(op: str, signing_key: rsa.RSAPrivateKey) -> None:
    identity = await client(op).check_id_token(id_token(signing_key, op, name="Alice", groups=["ops"]), nonce=NONCE)
    assert (identity.subject, identity.name, identity.groups) == ("alice", "Alice", frozenset({"ops"}))


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "another-client"},
        {"aud": [CLIENT, "another-client"]},  # several audiences and no azp naming us
        {"nonce": "another-login"},
        {"nonce": None},
        {"iss": "http://127.0.0.1:1"},
        {"exp": int(time.time()) - 120},
        {"sub": None},
    ],
    ids=["another audience", "several audiences", "wrong nonce", "no nonce", "another issuer", "expired", "no sub"],
)
async def test_an_id_token_that_is_not_for_this_login_signs_nobody_in(
    op: str, signing_key: rsa.RSAPrivateKey, claims: dict[str, Any]
) -> None:
    with pytest.raises(SignInFailed):
        await client(op).check_id_token(id_token(signing_key, op, **claims), nonce=NONCE)


async def test_an_id_token_signed_otherwise_signs_nobody_in(op: str) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(SignInFailed):
        await client(op).check_id_token(id_token(stranger, op), nonce=NONCE)
    with pytest.raises(SignInFailed):  # a symmetric algorithm keyed with something public
        await client(op).check_id_token(id_token("k1" * 16, op, algorithm="HS256"), nonce=NONCE)
    unsigned = jwt.encode({"iss": op, "aud": CLIENT, "sub": "alice", "nonce": NONCE}, "", algorithm="none")
    with pytest.raises(SignInFailed):
        await client(op).check_id_token(unsigned, nonce=NONCE)


async def test_the_person_has_the_principal_key_of_the_same_mcp_caller(op: str, signing_key: rsa.RSAPrivateKey) -> None:
    from vps_snapshots_mcp.protocol.principal import Principal

    identity = await client(op).check_id_token(id_token(signing_key, op), nonce=NONCE)
    person_key = Principal(kind="oauth", id=f"{op}#{identity.subject}").key  # as SignIn.callback makes it
    access = id_token(signing_key, op, aud="http://127.0.0.1:9/mcp", nonce=None, scope="vps-snapshots")
    verified = await JwtTokenVerifier(jwks_url=f"{op}/jwks", issuer=op, audience="http://127.0.0.1:9/mcp").verify_token(
        access
    )
    assert verified is not None
    handle = auth_context_var.set(AuthenticatedUser(verified))
    try:
        assert current_principal().key == person_key == f"oauth:{op}#alice"
    finally:
        auth_context_var.reset(handle)
