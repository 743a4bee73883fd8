"""The simulated provider as an ASGI app: the documented paths, codes, bodies and messages.

Mounted at `/api/v1`, like the real API. Trailing slashes are exact (no
redirects), so a client that gets a path wrong finds out here. Errors answer
DRF-style (`{"detail": ...}` or field errors), as the real API's shapes suggest.
"""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse as _StarletteJSONResponse
from starlette.responses import Response
from starlette.routing import Route

from .faults import HTML_ERROR_PAGE, Fault
from .state import ProviderError, ProviderState, RecordedRequest

API_PREFIX = "/api/v1"


class JSONResponse(_StarletteJSONResponse):
    """JSON as a real API writes it: ASCII with escapes, so even a lone surrogate (a legal escape) can be sent."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


def create_app(state: ProviderState, *, token: str) -> Starlette:
    """An ASGI app serving `state` to clients that present `token`."""

    async def handle(request: Request) -> Response:
        raw = await request.body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        method, path = request.method, request.url.path
        fault = state.take_fault(method, path)
        authorized = _authorized(request, token)
        state.requests.append(
            RecordedRequest(
                method=method,
                path=path,
                query=request.url.query,
                body=body,
                authorized=authorized,
                bearer=_bearer(request),
                content_type=request.headers.get("content-type"),
                fault=None if fault is None or fault.passthrough else fault.body,
            )
        )
        if state.latency_s:
            await anyio.sleep(state.latency_s)
        if fault is not None:
            if fault.delay_s:
                await anyio.sleep(fault.delay_s)
            if not fault.passthrough and not fault.lose_answer:
                return _fault_response(fault)
        echo = request.headers.get("authorization", "") if state.echo_authorization else ""
        if not authorized:
            detail = (
                "Invalid token."
                if request.headers.get("authorization")
                else "Authentication credentials were not provided."
            )
            return JSONResponse(
                _echoed({"detail": detail}, echo), status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            response = await _dispatch(request, state, body, echo)
        except ProviderError as err:
            response = JSONResponse(_echoed(err.body, echo), status_code=err.status)
        return _fault_response(fault) if fault is not None and fault.lose_answer else response

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": "Not found."}, status_code=404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": f'Method "{request.method}" not allowed.'}, status_code=405)

    app = Starlette(
        routes=[
            Route(f"{API_PREFIX}/snapshots/", handle, methods=["GET", "POST"]),
            Route(f"{API_PREFIX}/snapshots/{{snapshot_id:int}}/restore/", handle, methods=["POST"]),
            Route(f"{API_PREFIX}/snapshots/{{snapshot_id:int}}/", handle, methods=["DELETE"]),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
    )
    # The real API's paths end in a slash; a client that drops it must see a 404, not a redirect.
    app.router.redirect_slashes = False
    app.state.provider = state
    return app


def _bearer(request: Request) -> str | None:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return presented if scheme.lower() == "bearer" else None


def _authorized(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), token.encode())


def _echoed(body: Any, header: str) -> Any:
    """A body whose every message carries the Authorization header it was sent: a misconfigured proxy's echo."""
    if not header:
        return body
    if isinstance(body, str):
        return f"{body} (you sent Authorization: {header})"
    if isinstance(body, list):
        return [_echoed(item, header) for item in body]
    if isinstance(body, dict):
        return {key: _echoed(value, header) if key != "id" else value for key, value in body.items()}
    return body


async def _dispatch(request: Request, state: ProviderState, body: Any, echo: str) -> Response:
    path = request.url.path
    if "snapshot_id" in request.path_params:
        snapshot_id = int(request.path_params["snapshot_id"])
        if path.endswith("/restore/"):
            answer = state.restore(snapshot_id)
            return JSONResponse(answer | {"message": _echoed(answer["message"], echo)})
        state.delete(snapshot_id)
        return Response(status_code=204)
    if request.method == "POST":
        answer = state.create(body)
        return JSONResponse(answer | {"message": _echoed(answer["message"], echo)}, status_code=201)
    return _list(request, state)


def _list(request: Request, state: ProviderState) -> Response:
    raw_server_id = request.query_params.get("server_id")
    server_id: int | None = None
    if raw_server_id is not None:
        if not raw_server_id.isdigit():
            raise ProviderError(400, {"server_id": ["A valid integer is required."]})
        server_id = int(raw_server_id)
    results = state.list(None if state.ignore_filters else server_id)
    if state.page_size is None:
        return JSONResponse({"count": len(results), "results": results})
    raw_page = request.query_params.get("page", "1")
    page = int(raw_page) if raw_page.isdigit() else 0
    pages = max(1, -(-len(results) // state.page_size))
    if not 1 <= page <= pages:
        raise ProviderError(404, {"detail": "Invalid page."})
    start = (page - 1) * state.page_size

    def link(to: int) -> str | None:
        if not 1 <= to <= pages:
            return None
        query = dict(parse_qsl(request.url.query)) | {"page": str(to)}
        return str(request.url.replace(query=urlencode(query)))

    return JSONResponse(
        {
            "count": len(results),
            "next": link(page + 1),
            "previous": link(page - 1),
            "results": results[start : start + state.page_size],
        }
    )


def _fault_response(fault: Fault) -> Response:
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    if fault.body == "html":
        return Response(HTML_ERROR_PAGE, status_code=fault.status, media_type="text/html", headers=headers)
    if fault.body == "text":
        return Response(fault.detail, status_code=fault.status, media_type="text/plain", headers=headers)
    if fault.body == "empty":
        return Response(b"", status_code=fault.status, headers=headers)
    if fault.body == "malformed_json":
        return Response(b'{"count": 2, "results": [{"id": 8', status_code=fault.status,
                        media_type="application/json", headers=headers)  # fmt: skip
    if fault.body == "fields":
        return JSONResponse({"name": [fault.detail], "server_id": [fault.detail]}, status_code=fault.status,
                            headers=headers)  # fmt: skip
    if fault.body == "wrong_shape":
        return JSONResponse({"data": {"items": "not a list"}}, status_code=fault.status, headers=headers)
    return JSONResponse({"detail": fault.detail}, status_code=fault.status, headers=headers)
