"""Serve the simulator on a loopback socket with uvicorn (for `sandbox` and end-to-end tests)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; `port=0` picks a free port (read it back with `getsockname`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say they are TCP,
    # and without it every keep-alive answer stalls ~40 ms on the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def _server(app: ASGIApp, lifespan: Literal["on", "off"] = "off") -> uvicorn.Server:
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan)
    return uvicorn.Server(config)


def serve_forever(app: Starlette, sock: socket.socket) -> None:
    """Serve until interrupted (Ctrl-C)."""
    _server(app).run(sockets=[sock])


@contextmanager
def serving_in_thread(
    app: ASGIApp,
    host: str = "127.0.0.1",
    *,
    sock: socket.socket | None = None,
    lifespan: Literal["on", "off"] = "off",
) -> Iterator[str]:
    """Serve `app` in a background thread on `sock` (default: a free loopback port); yield its base URL.

    Connections made before uvicorn is ready wait in the listen backlog, so there is nothing to poll.
    """
    sock = sock or bind_socket(host, 0)
    port = sock.getsockname()[1]
    server = _server(app, lifespan)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
