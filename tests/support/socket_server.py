"""A bare socket HTTP server for tests of HTTP clients: it answers each request with the raw bytes it is given."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

Answer = Callable[[bytes], bytes]
"""A request's body to the raw bytes answered."""


@asynccontextmanager
async def raw_server(answer: Answer, hold_s: float = 0.0) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A socket server that reads each request (headers, then Content-Length bytes) and writes `answer(body)`,
    `hold_s` later; yields its URL and every request's head as received."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                heads.append(head)
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))  # fmt: skip
                body = await reader.readexactly(length)
                await asyncio.sleep(hold_s)
                writer.write(answer(body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp", heads
    finally:
        server.close()
