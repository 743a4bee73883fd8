"""The Redis ledger: single use across replicas, with `SET key 1 NX PX ttl`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from urllib.parse import urlsplit

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from ..errors import StateUnavailableError
from . import MARGIN_S

KEY_PREFIX = "vps-snapshots-mcp:consent:"
TIMEOUT_S = 2.0
"""A Redis that does not answer in this time counts as down: the change is refused, not delayed."""


class RedisLedger:
    def __init__(self, url: str, *, wall: Callable[[], float]) -> None:
        parts = urlsplit(url)
        self._where = f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"  # no password
        self._wall = wall
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S, retry_on_timeout=False
        )

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
