"""Redis, for replicas: the ledger (single use with `SET key 1 NX PX ttl`) and the event log."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from urllib.parse import urlsplit

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from ..errors import StateUnavailableError
from . import MARGIN_S

KEY_PREFIX = "vps-snapshots-mcp:consent:"
EVENTS_PREFIX = "vps-snapshots-mcp:events:"
TIMEOUT_S = 2.0
"""A Redis that does not answer in this time counts as down: the change is refused, not delayed."""


def connect(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S, retry_on_timeout=False
    )


def where(url: str) -> str:
    """The store's address for messages: never its password."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


class RedisLedger:
    def __init__(self, url: str, *, wall: Callable[[], float]) -> None:
        self._where = where(url)
        self._wall = wall
        self._redis = connect(url)

    @property
    def shared(self) -> bool:
        return True

    @property
    def description(self) -> str:
        return f"redis {self._where}"

    async def redeem(self, key: str, *, expires_at: float) -> bool:
        ttl_ms = max(1000, int((expires_at + MARGIN_S - self._wall()) * 1000))
        name = KEY_PREFIX + hashlib.sha256(key.encode()).hexdigest()
        try:
            return bool(await self._redis.set(name, b"1", nx=True, px=ttl_ms))
        except (RedisError, OSError) as exc:
            raise StateUnavailableError(
                f"the consent ledger ({self.description}) cannot be reached ({type(exc).__name__}), so no consent "
                "can be recorded and no change may run. Nothing was changed. Reads still work; try again when "
                "the state store is back."
            ) from None

    async def aclose(self) -> None:
        await self._redis.aclose()


class RedisEventLog:
    """Events in Redis: a list per stream and a key per event naming its stream, each expiring after `ttl_s`."""

    def __init__(self, url: str, *, ttl_s: float) -> None:
        self._ttl_ms = int(ttl_s * 1000)
        self._redis = connect(url)

    async def append(self, stream_id: str, payload: str | None) -> str:
        event_id = str(await self._redis.incr(EVENTS_PREFIX + "last-id"))
        stream_key = _stream_key(stream_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(stream_key, json.dumps([event_id, payload]))
            pipe.pexpire(stream_key, self._ttl_ms)
            pipe.set(EVENTS_PREFIX + "event:" + event_id, stream_id, px=self._ttl_ms)
            await pipe.execute()
        return event_id

    async def after(self, event_id: str) -> tuple[str, list[tuple[str, str | None]]] | None:
        if not event_id.isdigit():
            return None
        stream = await self._redis.get(EVENTS_PREFIX + "event:" + event_id)
        if stream is None:
            return None
        stream_id = stream.decode() if isinstance(stream, bytes) else str(stream)
        events = [json.loads(raw) for raw in await self._redis.lrange(_stream_key(stream_id), 0, -1)]
        return stream_id, [(i, payload) for i, payload in events if int(i) > int(event_id)]

    async def aclose(self) -> None:
        await self._redis.aclose()


def _stream_key(stream_id: str) -> str:
    # Hashed: a stream id is the SDK's, of any length and alphabet.
    return EVENTS_PREFIX + "stream:" + hashlib.sha256(stream_id.encode()).hexdigest()
