"""Redis, for replicas: the ledger (one Lua script on Redis's own clock, `_REDEEM`); the event log is in
`redis_events.py`, over the same client."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import cast
from urllib.parse import urlsplit

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError, ResponseError, TimeoutError

from ..errors import StateUnavailableError
from . import (
    BUDGET_WINDOW_S,
    MARGIN_S,
    ApprovalStatus,
    ConsentRefused,
    PendingApproval,
    RedemptionUncertain,
    Refusal,
    approval_key,
    approval_refused,
    budget_key,
    expired_by_the_ledger,
    iso_time,
    new_approval_id,
)
from .redis_scripts import (
    APPROVAL,
    APPROVAL_PREFIX,
    APPROVALS_INDEX,
    BUDGET_PREFIX,
    SESSION,
    SESSION_PREFIX,
    SPEND_CHANGE,
    on_ledger_clock,
)

logger = logging.getLogger(__name__)

KEY_PREFIX = "vps-snapshots-mcp:consent:"
TIMEOUT_S = 2.0
"""A Redis that does not answer in this time counts as down: the change is refused, not delayed."""
POLICY_CHECK_S = 60.0
"""How often the ledger reads Redis's eviction policy again (and at start)."""


LEDGER_KEY = "vps-snapshots-mcp:ledger"
"""A hash that never expires: `born`, when this Redis's ledger began (its data since then is whole), and `clock`."""

_REDEEM = (
    on_ledger_clock("KEYS[2]")
    + """
local time = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSETNX', KEYS[2], 'born', string.format('%.6f', time))
local born = tonumber(redis.call('HGET', KEYS[2], 'born'))
if redis.call('EXISTS', KEYS[1]) == 1 then return {'used'} end
if tonumber(ARGV[1]) < now then return {'expired', string.format('%.6f', now)} end
if ARGV[2] ~= '' then
    local issued = tonumber(ARGV[2])
    local ahead = tonumber(ARGV[4]) - time
    if ahead > 0 then issued = issued - ahead end
    if issued < born then return {'reset', string.format('%.6f', born)} end
end
redis.call('SET', KEYS[1], '1', 'NX', 'PXAT', ARGV[3])
return {'first'}
"""
)
"""One redemption, atomic, judged on Redis's own clock (`TIME`, never taken back: `clock`), which also expires
the key: a key Redis dropped is past its consent's expiry on that clock, so it is refused as expired, never
redeemed again. A consent issued before `born` is refused: the spent keys of that time may be lost (a restart
without persistence, FLUSHALL, an eviction: the hash went with them). `issued` is moved back by as much as the
caller's clock runs ahead of Redis's, so a fast replica cannot pass off an old consent as new. A token carries
whole seconds: one issued in the second the ledger was reborn is refused too, to be safe (preview again)."""


def connect(url: str) -> aioredis.Redis:
    # A dropped connection is retried once (a Redis that restarted); a timeout never is: the command may yet land.
    return aioredis.Redis.from_url(
        url,
        socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S,
        retry=Retry(NoBackoff(), 1, supported_errors=(ConnectionError,)),
    )


def where(url: str) -> str:
    """The store's address for messages: never its password."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


class RedisLedger:
    def __init__(self, url: str, *, wall: Callable[[], float], client: aioredis.Redis | None = None) -> None:
        self._where = where(url)
        self._wall = wall
        self._redis = client if client is not None else connect(url)  # one client may serve the event log too
        self._policy: tuple[float, str | None] | None = None  # when the eviction policy was read, what is wrong

    @property
    def description(self) -> str:
        return f"redis {self._where}"

    async def prepare(self) -> None:
        """At start: mark the ledger's birth if it has none, and say loudly if this Redis may evict consents."""
        try:
            # Whole seconds, like a token's: a token issued in the second the server started is not refused.
            await self._redis.hsetnx(LEDGER_KEY, "born", int((await self._redis.time())[0]))
            problem = await self._eviction_problem()
        except (RedisError, OSError) as exc:
            logger.warning(
                "the consent ledger (%s) cannot be reached at start (%s): restores and deletes are refused until "
                "it answers",
                self.description,
                type(exc).__name__,
            )
            return
        if problem:
            logger.error("%s; every restore and delete is refused until it does", problem)

    async def unavailable(self) -> str | None:
        try:
            await self._redis.ping()  # bounded by the client's timeouts (TIMEOUT_S); a dropped connection: once more
        except (RedisError, OSError) as exc:
            return str(self._unreachable(exc))
        return None

    async def _eviction_problem(self) -> str | None:
        """What is wrong with this Redis's eviction policy, or None when it never evicts: read again each minute."""
        now = self._wall()
        if self._policy is not None and now - self._policy[0] < POLICY_CHECK_S:
            return self._policy[1]
        try:
            policy = str((await self._redis.info("memory")).get("maxmemory_policy", "noeviction"))
        except ResponseError:  # INFO renamed or denied: the policy cannot be read, and is not assumed bad
            policy = "noeviction"
        self._policy = (now, None if policy == "noeviction" else self._evicting(policy))
        return self._policy[1]

    def _evicting(self, policy: str) -> str:
        return (
            f"the consent ledger ({self.description}) runs with maxmemory-policy {policy}, which can evict spent "
            "consents and so let a confirmation be used twice: it must be noeviction "
            "(CONFIG SET maxmemory-policy noeviction, and the same in its configuration file)"
        )

    async def redeem(self, key: str, *, expires_at: float, issued_at: float | None = None) -> bool:
        name = KEY_PREFIX + hashlib.sha256(key.encode()).hexdigest()
        until_ms = str(int((expires_at + MARGIN_S) * 1000))
        issued = "" if issued_at is None else repr(issued_at)
        try:
            problem = await self._eviction_problem()
        except (RedisError, OSError) as exc:  # nothing that records was sent yet
            raise self._unreachable(exc) from None
        if problem:
            raise StateUnavailableError(
                f"{problem}. No consent can be recorded, so no change may run. Nothing was changed."
            )
        try:
            answer = await self._redis.eval(
                _REDEEM, 2, name, LEDGER_KEY, repr(expires_at), issued, until_ms, repr(self._wall())
            )
        except (ConnectionError, TimeoutError, OSError) as exc:
            if "connecting to" in str(exc):  # never reached Redis: nothing was sent
                raise self._unreachable(exc) from None
            raise RedemptionUncertain(
                f"the consent ledger ({self.description}) did not answer in time ({type(exc).__name__}), and may "
                "still record this consent, so it may be used up"
            ) from None
        except RedisError as exc:  # an error answer: nothing was recorded
            raise self._unreachable(exc) from None
        verdict, *detail = [part.decode() if isinstance(part, bytes) else str(part) for part in answer]
        if verdict == "expired":
            raise ConsentRefused(expired_by_the_ledger(expires_at, float(detail[0]), self.description))
        if verdict == "reset":
            raise ConsentRefused(
                f"the consent ledger ({self.description}) lost its data at {iso_time(float(detail[0]))} (a restart "
                "without persistence, a flush or an eviction), after this consent was given, so it cannot tell "
                "whether the consent was already used."
            )
        return verdict == "first"

    def _unreachable(self, exc: BaseException) -> StateUnavailableError:
        return StateUnavailableError(
            f"the consent ledger ({self.description}) cannot be reached ({type(exc).__name__}), so no consent "
            "can be recorded and no change may run. Nothing was changed. Reads still work; try again when "
            "the state store is back."
        )

    # --- pending approvals: one script per step (`redis_scripts.APPROVAL`), on the ledger's clock ---------------------

    async def propose(
        self, plan_digest: str, *, expires_at: float, plan: str = "", requester: str = "", protected: bool = False
    ) -> str:
        approval_id = new_approval_id()
        shown = [approval_id, plan, requester, "1" if protected else "", repr(MARGIN_S)]
        await self._approval(approval_id, "propose", plan=plan_digest, expires_at=expires_at, shown=shown)
        return approval_id

    async def approval(self, approval_id: str) -> PendingApproval | None:
        try:
            held = await self._redis.hgetall(APPROVAL_PREFIX + approval_key(approval_id))
        except (RedisError, OSError) as exc:
            raise self._unreachable(exc) from None
        return _pending(held)

    async def pending_approvals(self) -> list[PendingApproval]:
        try:
            seconds, micros = await self._redis.time()
            clock = await self._redis.hget(LEDGER_KEY, "clock")
            now = max(int(seconds) + int(micros) / 1e6, float(clock or 0))
            keys = await self._redis.zrangebyscore(APPROVALS_INDEX, now, "+inf")
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key.decode() if isinstance(key, bytes) else str(key))
                found = [_pending(held) for held in await pipe.execute()]
        except (RedisError, OSError) as exc:
            raise self._unreachable(exc) from None
        held = [a for a in found if a is not None and a.status == "pending" and a.expires_at >= now]
        return sorted(held, key=lambda a: a.expires_at)

    async def approve(self, approval_id: str, *, by: str) -> None:
        await self._approval(approval_id, "approved", by=by)

    async def decline(self, approval_id: str, *, by: str) -> None:
        await self._approval(approval_id, "declined", by=by)

    async def redeem_approval(self, approval_id: str, *, plan_digest: str) -> str:
        return (await self._approval(approval_id, "redeem", plan=plan_digest))[0]

    async def _approval(
        self,
        approval_id: str,
        op: str,
        *,
        plan: str = "",
        expires_at: float = 0.0,
        by: str = "",
        shown: list[str] | None = None,
    ) -> list[str]:
        name = APPROVAL_PREFIX + approval_key(approval_id)
        forget_at_ms = str(int((expires_at + MARGIN_S) * 1000))
        arguments = [op, plan, repr(expires_at), by, forget_at_ms, *(shown or ["", "", "", "", "0"])]
        try:
            answer = await self._redis.eval(APPROVAL, 3, name, LEDGER_KEY, APPROVALS_INDEX, *arguments)
        except (ConnectionError, TimeoutError, OSError) as exc:
            if op == "redeem" and "connecting to" not in str(exc):  # sent: it may have landed
                raise RedemptionUncertain(
                    f"the consent ledger ({self.description}) did not answer in time ({type(exc).__name__}), and "
                    "may still record this approval as used"
                ) from None
            raise self._unreachable(exc) from None
        except RedisError as exc:  # an error answer: nothing was recorded
            raise self._unreachable(exc) from None
        verdict, *detail = [part.decode() if isinstance(part, bytes) else str(part) for part in answer]
        if verdict == "ok":
            return detail
        if verdict == "expired":
            expired, now = float(detail[0]), float(detail[1])
            raise approval_refused("expired", where=self.description, expires_at=expired, now=now)
        reason = cast(Refusal, verdict)
        raise approval_refused(reason, where=self.description, status=detail[0] if detail else "")

    # --- sign-in sessions: one script per step (`redis_scripts.SESSION`), on the ledger's clock ----------------

    async def open_session(self, key: str, record: str, *, idle_s: float, lifetime_s: float) -> None:
        await self._session("open", key, record, repr(idle_s), repr(lifetime_s))

    async def session(self, key: str) -> str | None:
        verdict, *held = await self._session("get", key)
        return held[0] if verdict == "ok" else None

    async def end_session(self, key: str) -> bool:
        return (await self._session("end", key))[1] == "1"

    async def _session(self, op: str, key: str, *arguments: str) -> list[str]:
        try:
            answer = await self._redis.eval(SESSION, 2, SESSION_PREFIX + key, LEDGER_KEY, op, *arguments)
        except (RedisError, OSError) as exc:
            raise StateUnavailableError(
                f"the consent ledger ({self.description}) cannot keep sign-in sessions ({type(exc).__name__})"
            ) from None
        return [part.decode() if isinstance(part, bytes) else str(part) for part in answer]

    # --- the change budget: one script (`redis_scripts.SPEND_CHANGE`), on the ledger's clock ---------------

    async def spend_change(
        self, principal: str, server_id: int, *, per_hour: int | None, per_server_per_hour: int | None
    ) -> float | None:
        keys = [BUDGET_PREFIX + budget_key(principal), BUDGET_PREFIX + budget_key(principal, server_id), LEDGER_KEY]
        caps = ["" if cap is None else str(cap) for cap in (per_hour, per_server_per_hour)]
        try:
            answer = await self._redis.eval(SPEND_CHANGE, 3, *keys, *caps, repr(BUDGET_WINDOW_S), secrets.token_hex(8))
        except (RedisError, OSError) as exc:  # counted or not, the change is refused: it is not sent
            raise StateUnavailableError(
                f"the consent ledger ({self.description}) cannot count this change against the change budget "
                f"({type(exc).__name__}), so it may not run. Nothing was changed. Try again when the state store is "
                "back."
            ) from None
        verdict, *later = [part.decode() if isinstance(part, bytes) else str(part) for part in answer]
        return None if verdict == "counted" else float(later[0])

    async def aclose(self) -> None:
        await self._redis.aclose()


def _pending(held: Mapping[bytes | str, bytes | str]) -> PendingApproval | None:
    """An approval as Redis holds it (a hash), or None when it holds none."""
    field = {_text(k): _text(v) for k, v in held.items()}
    if "status" not in field:
        return None
    return PendingApproval(
        field.get("plan", ""),
        float(field.get("expires", "0")),
        cast(ApprovalStatus, field["status"]),
        field.get("by") or None,
        approval_id=field.get("id", ""),
        plan=field.get("show", ""),
        requester=field.get("requester", ""),
        protected=bool(field.get("protected")),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
