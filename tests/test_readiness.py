"""`GET /readyz`: ready while the consent ledger can be reached, 503 naming it while it cannot; `/healthz` is liveness.

Real parts: the server over HTTP on a loopback port, a redis-server each test starts, stops, restarts and freezes
(SIGSTOP) with a password in its URL, a SQLite state file.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import anyio
import httpx2
import pytest
import redis
from pydantic import SecretStr

from vps_snapshots_mcp.protocol.http import READY_DEADLINE_S

from .support.http_serving import ServeFn
from .support.redis_server import running_redis

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

PASSWORD = "ledger-password-0123456789"
AUTH_TOKEN = "client-auth-token-0123456789abcdef"


async def readyz(url: str) -> httpx2.Response:
    """One probe, as a kubelet sends it: no token."""
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.get(f"{url}/readyz")


async def until_status(url: str, status: int, within_s: float = 15.0) -> httpx2.Response:
    """Probe until /readyz answers `status` (a restarted Redis gives no event to wait on), with a deadline."""
    deadline = time.monotonic() + within_s
    while True:
        response = await readyz(url)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        await anyio.sleep(0.1)


async def test_readyz_follows_redis_down_and_back_and_never_names_its_password(serve: ServeFn, tmp_path: Path) -> None:
    with running_redis(tmp_path, password=PASSWORD) as redis_server, serve(state_url=redis_server.url) as url:
        where = f"redis redis://127.0.0.1:{redis_server.port}/0"
        response = await readyz(url)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ready", "ledger": where}

        redis_server.stop()
        response = await readyz(url)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable" and body["ledger"] == where
        assert "cannot be reached" in body["reason"] and where in body["reason"]
        assert PASSWORD not in response.text
        async with httpx2.AsyncClient(timeout=30) as http:  # the process is up: liveness stays green
            assert (await http.get(f"{url}/healthz")).status_code == 200

        redis_server.start()
        response = await until_status(url, 200)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ready", "ledger": where}
        with redis.Redis.from_url(redis_server.url) as raw:  # probing spent and made nothing
            assert raw.keys("vps-snapshots-mcp:consent:*") == []


async def test_readyz_answers_within_its_deadline_while_redis_is_frozen(serve: ServeFn, tmp_path: Path) -> None:
    with running_redis(tmp_path, password=PASSWORD) as redis_server, serve(state_url=redis_server.url) as url:
        assert (await readyz(url)).status_code == 200
        redis_server.pause()
        try:
            started = time.monotonic()
            response = await readyz(url)
            took = time.monotonic() - started
        finally:
            redis_server.resume()
        assert response.status_code == 503, response.text
        assert took < READY_DEADLINE_S + 1.0, took
        assert PASSWORD not in response.text
        assert (await until_status(url, 200)).status_code == 200


async def test_readyz_is_503_while_the_sqlite_state_file_cannot_be_opened(serve: ServeFn, tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with serve(state_url=f"sqlite:///{path}") as url:
        assert (await readyz(url)).status_code == 200
        path.rename(tmp_path / "aside.db")
        path.mkdir()  # in its place something no ledger can be read from (root reads any mode, so not chmod)
        response = await readyz(url)
        assert response.status_code == 503, response.text
        assert response.json()["ledger"] == f"sqlite {path}"
        assert str(path) in response.json()["reason"]
        path.rmdir()
        (tmp_path / "aside.db").rename(path)
        assert (await readyz(url)).status_code == 200
    with sqlite3.connect(path) as db:  # probing spent and made nothing
        assert db.execute("SELECT COUNT(*) FROM consent").fetchone() == (0,)


async def test_readyz_is_200_for_the_memory_ledger(serve: ServeFn) -> None:
    with serve() as url:
        response = await readyz(url)
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "ledger": "memory (this process only)"}


async def test_readyz_needs_no_token_when_a_static_token_guards_the_rest(serve: ServeFn) -> None:
    with serve(auth_token=SecretStr(AUTH_TOKEN)) as url:
        assert (await readyz(url)).status_code == 200
        async with httpx2.AsyncClient(timeout=30) as http:
            assert (await http.get(f"{url}/metrics-or-anything")).status_code == 401
