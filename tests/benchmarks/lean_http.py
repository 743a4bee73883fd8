"""POSTs over HTTP/1.1 keep-alive connections on plain asyncio streams: a load client that costs its machine little.

Scale-out runs its replicas, their load, Redis and the provider on one machine; every core the load takes is one
the replicas may wait for, and that wait lands in the latencies measured. A call through `httpx2` costs the load
process about 2.3 ms of CPU; one through `LeanPool` about 0.7 ms (`client_cpu_cores` in scale-out's JSON).
It speaks only what the benchmark needs: POST with a JSON body to `http://` URLs, an answer framed by
`Content-Length` or chunked, connections kept alive and reused (or closed when the server says so; an idle one
the server has closed meanwhile is dropped, never written to). A failed POST is not sent again: a confirming
call sent twice would be two consents.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio


class LeanError(Exception):
    """The connection failed, closed early, or the answer could not be read."""


@dataclass
class LeanResponse:
    status_code: int
    headers: dict[str, str]
    """Names in lower case."""
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
UNREADABLE = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError)
"""What a failed connection or an answer that cannot be read raises; each becomes a `LeanError`."""


class LeanPool:
    """Idle connections by host and port; a POST takes one (or opens one) and gives it back when the answer is read."""

    def __init__(self) -> None:
        self.idle: dict[tuple[str, int], list[Connection]] = {}

    async def post(
        self,
        url: str,
        *,
        json: Any,
        headers: dict[str, str],
        timeout: float = 120,  # noqa: ASYNC109 - httpx2's post takes it so, and the load calls both alike
    ) -> LeanResponse:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise LeanError(f"only http:// URLs: {url}")
        where = (parts.hostname, parts.port or 80)
        body = _dumps(json).encode()
        head = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        connection = None
        try:
            with anyio.fail_after(timeout):
                connection = self._idle(where) or await asyncio.open_connection(*where)
                reader, writer = connection
                writer.write(request)
                answer, keep = await _read(reader)
        except BaseException as exc:  # failed or cancelled: the answer may be half read, the connection spent
            if connection is not None:
                connection[1].close()
            if isinstance(exc, UNREADABLE):
                raise LeanError(f"{type(exc).__name__}: {exc}") from exc
            raise
        if keep:
            self.idle.setdefault(where, []).append(connection)
        else:
            connection[1].close()
        return answer

    def _idle(self, where: tuple[str, int]) -> Connection | None:
        """An idle connection the server has not closed meanwhile (those it has are dropped), or None."""
        idle = self.idle.get(where, [])
        while idle:
            reader, writer = connection = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return connection
            writer.close()
        return None

    async def aclose(self) -> None:
        for connections in self.idle.values():
            for _, writer in connections:
                writer.close()
        self.idle.clear()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def _read(reader: asyncio.StreamReader) -> tuple[LeanResponse, bool]:
    """One answer; and whether its connection may be used again."""
    status = (await reader.readuntil(b"\r\n")).split(b" ", 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/1."):
        raise ValueError("not an HTTP/1.x answer")
    headers: dict[str, str] = {}
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append((await reader.readexactly(size + 2))[:-2])
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
            pass
        content = b"".join(chunks)
    elif "content-length" in headers:
        content = await reader.readexactly(int(headers["content-length"]))
    else:
        raise ValueError("an answer framed by neither Content-Length nor chunks")
    keep = headers.get("connection", "").lower() != "close" and status[0] == b"HTTP/1.1"
    return LeanResponse(int(status[1]), headers, content), keep
