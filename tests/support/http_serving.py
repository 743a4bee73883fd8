"""The server over streamable HTTP in a background thread, and a local OAuth issuer that signs access tokens."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vps_snapshots_mcp.compose import Composition, compose
from vps_snapshots_mcp.provider.client import asgi_transport
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import ProviderState, create_app
from vps_snapshots_mcp.simulator.serve import bind_socket, serving_in_thread

from .world import BASE_URL, TOKEN

ServeFn = Callable[..., AbstractContextManager[str]]


def serving_over_http(provider: ProviderState) -> ServeFn:
    """Start the MCP server over HTTP with these settings; yields its base URL (no /mcp)."""
    composed = serving_composed(provider)

    @contextmanager
    def start(**overrides: Any) -> Iterator[str]:
        with composed(**overrides) as (url, _):
            yield url

    return start


def serving_composed(provider: ProviderState) -> Callable[..., AbstractContextManager[tuple[str, Composition]]]:
    """As `serving_over_http`, yielding the composition too (its approval service, as the approval page uses it)."""

    @contextmanager
    def start(**overrides: Any) -> Iterator[tuple[str, Composition]]:
        sock = bind_socket("127.0.0.1", 0)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        public_url = overrides.pop("public_url", None)
        timing = overrides.pop("timing", None)
        settings = Settings(
            api_token=SecretStr(TOKEN),
            api_url=BASE_URL,
            transport="http",
            public_url=public_url(base) if callable(public_url) else public_url,
            **overrides,
        )
        composed = compose(settings, transport=asgi_transport(create_app(provider, token=TOKEN)), timing=timing)
        with serving_in_thread(composed.http_app(), sock=sock, lifespan="on") as url:
            yield url, composed

    return start


@contextmanager
def jwks_issuer(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    """A local authorization server that publishes only its JWKS; yields its base URL."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]})

    with serving_in_thread(Starlette(routes=[Route("/jwks.json", jwks)])) as url:
        yield url


def mint(key: rsa.RSAPrivateKey, **claims: Any) -> str:
    """An RS256 access token signed by `key`, valid for five minutes, with these claims on top."""
    now = int(time.time())
    body = {"sub": "operator-7", "client_id": "assistant", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})
