"""The scale-out load's HTTP client reads every framing it may meet, reuses connections, and fails only as LeanError."""

from __future__ import annotations

import asyncio
import json

import anyio
import pytest

from ..support.redis_server import free_port
from ..support.socket_server import raw_server
from .lean_http import LeanError, LeanPool

pytestmark = pytest.mark.anyio


def sized(body: bytes, *, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)


def chunked(body: bytes) -> bytes:
    half = len(body) // 2
    parts = b"".join(b"%x;ext=1\r\n%b\r\n" % (len(p), p) for p in (body[:half], body[half:]))
    return (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
        + parts
        + (b"0\r\nX-Trailer: yes\r\n\r\n")
    )


async def test_a_sized_answer_is_read_and_its_connection_reused_for_the_next_post() -> None:
    async with raw_server(lambda body: sized(b"echo " + body)) as (url, heads):
        pool = LeanPool()
        for n in range(3):
            answer = await pool.post(url, json={"n": n}, headers={"Authorization": "Bearer x"}, timeout=10)
            assert (answer.status_code, answer.text) == (200, f'echo {{"n":{n}}}')
        assert len(heads) == 3 and len(pool.idle) == 1 and len(next(iter(pool.idle.values()))) == 1
        assert heads[0].startswith(b"POST /mcp HTTP/1.1\r\n") and b"\r\nAuthorization: Bearer x\r\n" in heads[0]
        await pool.aclose()


async def test_a_chunked_answer_with_extensions_and_trailers_is_read_whole_and_the_connection_kept() -> None:
    event = b'event: message\r\ndata: {"jsonrpc":"2.0","id":2,"result":{}}\r\n\r\n'
    async with raw_server(lambda body: chunked(event)) as (url, _):
        pool = LeanPool()
        for _ in range(2):  # the second post reads from where the first answer's trailers ended
            answer = await pool.post(url, json={}, headers={}, timeout=10)
            assert answer.content == event and answer.headers["content-type"] == "text/event-stream"
        assert sum(len(c) for c in pool.idle.values()) == 1
        await pool.aclose()


async def test_a_connection_the_server_closes_is_not_kept() -> None:
    async with raw_server(lambda body: sized(b"{}", close=True)) as (url, heads):
        pool = LeanPool()
        for _ in range(2):
            assert (await pool.post(url, json={}, headers={}, timeout=10)).status_code == 200
        assert len(heads) == 2 and not any(pool.idle.values())


@pytest.mark.parametrize(
    "wrong",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", b"SSH-2.0-OpenSSH\r\n\r\n",
     b"HTTP/1.1 200 OK\r\n\r\nunframed", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
    ids=["nothing", "cut-short", "not-http", "unframed", "bad-chunk-size"],
)  # fmt: skip
async def test_an_answer_that_cannot_be_read_is_a_lean_error(wrong: bytes) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:  # `wrong`, then closed
        await reader.readuntil(b"\r\n\r\n")
        writer.write(wrong)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
    pool = LeanPool()
    with pytest.raises(LeanError):
        await pool.post(url, json={"a": 1}, headers={}, timeout=10)
    server.close()


async def test_an_idle_connection_the_server_closed_is_dropped_and_the_post_goes_over_a_new_one() -> None:
    """As uvicorn closes a kept-alive connection idle for 5 s: writing to it would lose the call."""
    connections: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
        writer.write(sized(b"{}"))  # kept alive, as far as the client is told
        await writer.drain()
        writer.close()  # and then closed while idle

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
    pool = LeanPool()
    assert (await pool.post(url, json={}, headers={}, timeout=10)).status_code == 200
    ((reader, _),) = next(iter(pool.idle.values()))
    with anyio.fail_after(10):  # until the client's side has read the close
        assert await reader.read(1) == b"" and reader.at_eof()
    assert (await pool.post(url, json={}, headers={}, timeout=10)).status_code == 200
    assert len(connections) == 2
    await pool.aclose()
    server.close()


async def test_no_listener_and_a_silent_server_are_lean_errors_within_the_timeout() -> None:
    pool = LeanPool()
    with pytest.raises(LeanError, match="ConnectionRefusedError"):
        await pool.post(f"http://127.0.0.1:{free_port()}/mcp", json={}, headers={}, timeout=10)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    with pytest.raises(LeanError, match="TimeoutError"):
        await pool.post(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp", json={}, headers={}, timeout=0.2)
    server.close()
    with pytest.raises(LeanError, match="only http://"):
        await pool.post("https://example.test/mcp", json=json.loads("{}"), headers={}, timeout=1)
