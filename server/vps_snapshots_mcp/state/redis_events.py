"""Redis, for replicas: the event log (one Lua script per step, `_APPEND` and `_FORGET`, on Redis's own clock)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from redis import asyncio as aioredis

from . import EVENT_OVERHEAD_BYTES, MAX_SESSION_BYTES, REDIS_MAX_BYTES
from .redis import connect

EVENTS_PREFIX = "vps-snapshots-mcp:events:"

# One session's events: a list of "<ms kept>\t<event id>\t<[stream, payload] as JSON>", oldest first. The byte
# counts (a sorted set: session -> bytes; a total) and the sessions' last activity (a sorted set) are kept in
# the same script, so every replica sees one bound. Redis's clock (TIME) judges age: replicas' clocks do not.
# One call appends a batch of events (ARGV from the 6th: session, body, session, body, ...; KEYS from the 4th:
# their lists, in the same order) and answers 1 or 0 for each, in order: a batch costs one round trip, and
# Redis's memory is read once for it.
_APPEND = """
local sizes, active, total = KEYS[1], KEYS[2], KEYS[3]
local ttl, max_session, max_total = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local overhead, prefix = tonumber(ARGV[4]), ARGV[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function drop(s)
  redis.call('DECRBY', total, tonumber(redis.call('ZSCORE', sizes, s) or '0'))
  redis.call('DEL', prefix .. s)
  redis.call('ZREM', sizes, s)
  redis.call('ZREM', active, s)
end
if redis.call('EXISTS', total) == 0 then
  local sum = 0
  local all = redis.call('ZRANGE', sizes, 0, -1, 'WITHSCORES')
  for i = 2, #all, 2 do sum = sum + tonumber(all[i]) end
  redis.call('SET', total, sum)
end
for _, s in ipairs(redis.call('ZRANGEBYSCORE', active, '-inf', now - ttl)) do drop(s) end
local memory = redis.call('INFO', 'memory')
local used = tonumber(string.match(memory, 'used_memory:(%d+)'))
local limit = tonumber(string.match(memory, 'maxmemory:(%d+)'))
local kept = {}
for i = 6, #ARGV, 2 do
  local session, list = ARGV[i], KEYS[(i - 6) / 2 + 4]
  local entry = now .. '\t' .. ARGV[i + 1]
  local size = #entry + overhead
  if size > max_session or (limit and limit > 0 and used and used + size > limit / 2) then
    kept[#kept + 1] = 0
  else
    if used then used = used + size end
    redis.call('RPUSH', list, entry)
    redis.call('INCRBY', total, size)
    local mine = tonumber(redis.call('ZINCRBY', sizes, size, session))
    while true do
      local head = redis.call('LINDEX', list, 0)
      if not head then break end
      if mine <= max_session and tonumber(string.match(head, '^(%d+)')) >= now - ttl then break end
      redis.call('LPOP', list)
      mine = tonumber(redis.call('ZINCRBY', sizes, -(#head + overhead), session))
      redis.call('DECRBY', total, #head + overhead)
    end
    redis.call('ZADD', active, now, session)
    while tonumber(redis.call('GET', total)) > max_total do
      local oldest = redis.call('ZRANGE', active, 0, 0)[1]
      if not oldest or oldest == session then break end
      drop(oldest)
    end
    redis.call('PEXPIRE', list, ttl)
    kept[#kept + 1] = 1
  end
end
for _, key in ipairs({sizes, active, total}) do redis.call('PEXPIRE', key, ttl) end
return kept
"""
_FORGET = """
redis.call('DECRBY', KEYS[3], tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0'))
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


class RedisEventLog:
    """Events in Redis, per session, bounded in bytes across every replica (see `_APPEND`).

    Consents must never be evicted or refused because of events, so events are bounded twice: their
    accounted bytes never pass `max_bytes` (`REDIS_MAX_BYTES`, all replicas together), and none is written
    while Redis uses more than half its `maxmemory`. An event not written loses only its resumption.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float,
        max_bytes: int = REDIS_MAX_BYTES,
        max_session_bytes: int = MAX_SESSION_BYTES,
        client: aioredis.Redis | None = None,
    ) -> None:
        self._ttl_ms = int(ttl_s * 1000)
        self._max_bytes = max_bytes
        self._max_session_bytes = max_session_bytes
        self._redis = client if client is not None else connect(url)  # one client may serve the ledger too
        self._append_script = self._redis.register_script(_APPEND)
        self._forget_script = self._redis.register_script(_FORGET)

    def _keys(self, session: str) -> list[str]:
        return [EVENTS_PREFIX + "bytes", EVENTS_PREFIX + "active", EVENTS_PREFIX + "total", _session_key(session)]

    async def append(self, session: str, event_id: str, stream_id: str, payload: str | None) -> bool:
        return (await self.append_many([(session, event_id, stream_id, payload)]))[0]

    async def append_many(self, events: Sequence[tuple[str, str, str, str | None]]) -> list[bool]:
        """Keep each (session, event id, stream id, payload) in order, in one round trip; whether each was kept."""
        if not events:
            return []
        keys = [EVENTS_PREFIX + "bytes", EVENTS_PREFIX + "active", EVENTS_PREFIX + "total"]
        arguments: list[str | int] = [self._ttl_ms, self._max_session_bytes, self._max_bytes]
        arguments += [EVENT_OVERHEAD_BYTES, _session_key("")]
        for session, event_id, stream_id, payload in events:
            keys.append(_session_key(session))
            arguments += [session, event_id + "\t" + json.dumps([stream_id, payload])]
        kept = await self._append_script(keys=keys, args=arguments)
        return [bool(k) for k in kept]

    async def after(self, session: str, event_id: str) -> tuple[str, list[tuple[str, str | None]]] | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.lrange(_session_key(session), 0, -1)
            (seconds, micros), raw = await pipe.execute()
        oldest = int(seconds) * 1000 + int(micros) // 1000 - self._ttl_ms
        events: list[tuple[str, str, str | None]] = []
        for entry in raw:
            kept_at, kept_id, encoded = (entry.decode() if isinstance(entry, bytes) else str(entry)).split("\t", 2)
            if int(kept_at) >= oldest:
                stream_id, payload = json.loads(encoded)
                events.append((kept_id, stream_id, payload))
        ids = [kept_id for kept_id, _, _ in events]
        if event_id not in ids:
            return None
        stream_id = events[ids.index(event_id)][1]
        later = events[ids.index(event_id) + 1 :]
        return stream_id, [(i, payload) for i, stream, payload in later if stream == stream_id]

    async def forget(self, session: str) -> None:
        await self._forget_script(keys=self._keys(session), args=[session])

    async def aclose(self) -> None:
        await self._redis.aclose()


def _session_key(session: str) -> str:
    return EVENTS_PREFIX + "session:" + session
