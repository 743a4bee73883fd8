"""The ledger's Lua scripts for Redis beside the redemption: the change budget, pending approvals, sign-in sessions.

Plain text: only `redis.py` talks to Redis. Each runs atomically on Redis's own clock (`TIME`, never taken back:
the ledger's `clock`), as `redis.redis._REDEEM` does.
"""

from __future__ import annotations


def on_ledger_clock(ledger: str) -> str:
    """The opening of every ledger script: `now` is Redis's `TIME`, never earlier than the ledger's `clock` (held in
    the hash `ledger`, a `KEYS[n]`), which is moved on to it; `t` keeps Redis's own reading."""
    return f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local clock = tonumber(redis.call('HGET', {ledger}, 'clock'))
if clock and clock > now then now = clock end
redis.call('HSET', {ledger}, 'clock', string.format('%.6f', now))"""


BUDGET_PREFIX = "vps-snapshots-mcp:budget:"
SPEND_CHANGE = (
    on_ledger_clock("KEYS[3]")
    + """
local window = tonumber(ARGV[3])
local later = nil
for i = 1, 2 do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', string.format('%.6f', now - window))
    if ARGV[i] ~= '' then
        local cap = tonumber(ARGV[i])
        local count = redis.call('ZCARD', KEYS[i])
        if count >= cap then
            local freed = math.huge
            if cap > 0 then
                local oldest = redis.call('ZRANGE', KEYS[i], count - cap, count - cap, 'WITHSCORES')
                freed = tonumber(oldest[2]) + window
            end
            if later == nil or freed > later then later = freed end
        end
    end
end
if later ~= nil then
    if later == math.huge then return {'spent', 'inf'} end
    return {'spent', string.format('%.6f', later)}
end
for i = 1, 2 do
    redis.call('ZADD', KEYS[i], string.format('%.6f', now), string.format('%.6f', now) .. ':' .. ARGV[4])
    redis.call('PEXPIRE', KEYS[i], math.ceil(window * 1000))
end
return {'counted'}
"""
)
"""One change counted against the budget, atomic, judged on Redis's own clock (`TIME`, never taken back: the
ledger's `clock`, as `redis._REDEEM`): each replica sees one count. A sorted set per principal (and per principal and
server) holds the last hour's changes by time; past a cap nothing is added, and the answer is when the change that
fills the window leaves it."""


APPROVAL_PREFIX = "vps-snapshots-mcp:approval:"
APPROVALS_INDEX = "vps-snapshots-mcp:approvals"
"""A sorted set of approval keys by expiry, for the list of pending approvals (pruned as approvals are proposed)."""
APPROVAL = (
    on_ledger_clock("KEYS[2]")
    + """
local now_text = string.format('%.6f', now)
local op = ARGV[1]
if op == 'propose' then
    if tonumber(ARGV[3]) < now then return {'expired', ARGV[3], now_text} end
    redis.call('HSET', KEYS[1], 'plan', ARGV[2], 'expires', ARGV[3], 'status', 'pending', 'id', ARGV[6],
        'show', ARGV[7], 'requester', ARGV[8], 'protected', ARGV[9])
    redis.call('PEXPIREAT', KEYS[1], ARGV[5])
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%.6f', now - tonumber(ARGV[10])))
    redis.call('ZADD', KEYS[3], ARGV[3], KEYS[1])
    return {'ok'}
end
local held = redis.call('HMGET', KEYS[1], 'plan', 'expires', 'status', 'by')
if not held[3] then return {'unknown'} end
if tonumber(held[2]) < now then return {'expired', held[2], now_text} end
if op ~= 'redeem' then
    if held[3] ~= 'pending' then return {'decided', held[3]} end
    redis.call('HSET', KEYS[1], 'status', op, 'by', ARGV[4])
    return {'ok'}
end
if held[3] == 'pending' then return {'pending'} end
if held[3] == 'declined' then return {'declined'} end
if held[3] ~= 'approved' then return {'used'} end
if held[1] ~= ARGV[2] then return {'another_plan'} end
redis.call('HSET', KEYS[1], 'status', 'redeemed')
return {'ok', held[4]}
"""
)
"""One step of a pending approval (propose; approved or declined; redeem), atomic, judged as `judge_approval`
judges, on the ledger's own clock (Redis's `TIME`, never taken back: `clock`, as `redis._REDEEM`). An approval is kept
until `MARGIN_S` past its expiry; one Redis forgot (a restart, a flush) is unknown, and refused. It holds what a
person deciding is shown (`show`), who asked and whether its server is protected, and its id (for the list page)."""


SESSION_PREFIX = "vps-snapshots-mcp:signin:"
SESSION = (
    on_ledger_clock("KEYS[2]")
    + """
if ARGV[1] == 'end' then return {'ok', tostring(redis.call('DEL', KEYS[1]))} end
if ARGV[1] == 'open' then
    local idle, until_ = tonumber(ARGV[3]), now + tonumber(ARGV[4])
    redis.call('HSET', KEYS[1], 'record', ARGV[2], 'idle', ARGV[3], 'until', string.format('%.6f', until_),
        'seen', string.format('%.6f', now))
    redis.call('PEXPIREAT', KEYS[1], math.ceil(math.min(now + idle, until_) * 1000))
    return {'ok'}
end
local held = redis.call('HMGET', KEYS[1], 'record', 'idle', 'until', 'seen')
if not held[1] then return {'none'} end
local idle, until_ = tonumber(held[2]), tonumber(held[3])
if now > until_ or now > tonumber(held[4]) + idle then
    redis.call('DEL', KEYS[1])
    return {'none'}
end
redis.call('HSET', KEYS[1], 'seen', string.format('%.6f', now))
redis.call('PEXPIREAT', KEYS[1], math.ceil(math.min(now + idle, until_) * 1000))
return {'ok', held[1]}
"""
)
"""One step of a sign-in session (open; get, which moves its idle expiry on; end), atomic, judged on the ledger's
own clock (Redis's `TIME`, never taken back: `clock`, as `_REDEEM`) as `session_alive` judges."""
