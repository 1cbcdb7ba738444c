"""Running the transition scripts: a shared Lua prelude, and `Transition`, one script registered with redis-py.

Every script receives the session's config key as KEYS[1] and a context object as ARGV[1] (TTL,
stream cap, monitor channel, session id, a fresh message id). The prelude answers {'gone'} when the
config no longer exists, so no script re-creates the keys of a session that was cleaned up or
expired; `Transition` turns that answer into `SessionGoneError` (saying whether cleanup_session
removed it). Times come from the Redis server's clock (TIME) at the moment the script runs, never
from the caller's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from redis.commands.core import AsyncScript
from redis.crc import key_slot

from ..errors import SessionGoneError
from ..redis_client import Redis
from ..sessions import SessionConfig, cleaned_up
from ..utils import new_id

#: The status stream keeps about this many entries (XADD MAXLEN ~).
STATUS_STREAM_MAXLEN = 10_000
#: The dead-letter list keeps the latest this many messages.
DEAD_LETTER_CAP = 1_000

# Helpers every script starts with. `redis.replicate_commands()` lets a script write after TIME on
# Redis 6.2 (it is the default, and a no-op, on 7).
PRELUDE = """
redis.replicate_commands()
local ctx = cjson.decode(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function iso(ms)
  local s = math.floor(ms / 1000)
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03d+00:00', y, m, d, math.floor(rem / 3600),
    math.floor(rem / 60) % 60, rem % 60, ms % 1000)
end
local NOW_ISO = iso(NOW)

local function touch(...)
  for _, k in ipairs({...}) do redis.call('EXPIRE', k, ctx.ttl) end
end

local function event(stream, state, child, tid, detail)
  redis.call('XADD', stream, 'MAXLEN', '~', ctx.maxlen, '*', 'state', state, 'child_id', child or '',
    'task_id', tid or '', 'detail', detail or '', 'at', NOW_ISO)
  redis.call('EXPIRE', stream, ctx.ttl)
  if ctx.channel ~= '' then
    redis.call('PUBLISH', ctx.channel, cjson.encode({
      type = 'status', message_id = ctx.message_id, session_id = ctx.session_id, created_at = NOW_ISO,
      child_id = child and tonumber(child) or cjson.null, state = state, task_id = tid or cjson.null,
      detail = detail or cjson.null}))
  end
end

-- A record: the task's JSON in a child's records hash. nil when absent, false when unreadable.
local function get_record(hash, tid)
  local raw = redis.call('HGET', hash, tid)
  if not raw then return nil end
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' or type(rec.state) ~= 'string' or type(rec.msg) ~= 'string' then
    return false
  end
  return rec
end

local function put_record(hash, tid, rec)
  redis.call('HSET', hash, tid, cjson.encode(rec))
end

local function count(counts, field, by)
  redis.call('HINCRBY', counts, field, by)
end

-- New work for child n revokes the shutdown it holds (sticky in its in-flight list).
local function revoke_shutdown(inflight, stopped, n)
  for _, item in ipairs(redis.call('LRANGE', inflight, 0, -1)) do
    local ok, msg = pcall(cjson.decode, item)
    if ok and type(msg) == 'table' and msg['type'] == 'shutdown' then redis.call('LREM', inflight, 1, item) end
  end
  redis.call('HDEL', stopped, n)
end
"""


#: Under the tests (set by tests/conftest.py): every script call first checks that all its keys share one hash
#: slot, as a Redis Cluster requires, so every test that runs a script also checks that.
CHECK_SLOTS = False


def check_one_slot(name: str, keys: Sequence[str]) -> None:
    """AssertionError naming the script if `keys` map to more than one Redis Cluster hash slot."""
    slots = {key_slot(k.encode()) for k in keys}
    if len(slots) > 1:
        raise AssertionError(f"script {name} was given keys in {len(slots)} hash slots: {list(keys)}")


class Transition:
    """One state transition: a Lua script (prelude + body) registered with redis-py's `register_script`."""

    def __init__(self, name: str, body: str) -> None:
        self.name = name
        self.text = PRELUDE + body
        self._script: AsyncScript | None = None

    async def __call__(self, r: Redis, cfg: SessionConfig, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        """Run the script with the session's config key first; SessionGoneError if the session is gone."""
        if self._script is None:
            self._script = r.register_script(self.text)
        all_keys = [cfg.keys.config, *keys]
        if CHECK_SLOTS:
            check_one_slot(self.name, all_keys)
        reply: list[Any] = await self._script(keys=all_keys, args=[context(cfg), *args], client=r)
        if reply and reply[0] == "gone":
            raise SessionGoneError(cfg.session_id, cleaned_up=await cleaned_up(r, cfg.namespace, cfg.session_id))
        return reply


def context(cfg: SessionConfig) -> str:
    """ARGV[1] of every script."""
    return json.dumps(
        {
            "ttl": cfg.ttl_s,
            "maxlen": STATUS_STREAM_MAXLEN,
            "channel": cfg.monitor_channel or "",
            "session_id": cfg.session_id,
            "message_id": new_id(),
            "mode": cfg.mode,
            "deadcap": DEAD_LETTER_CAP,
        }
    )


# Helpers of the child's scripts and the reaper. K: records, task_child, counts, last_seen, stream, inflight,
# leases, reports (where this child's reports go), doorbell, dead.
TASK_FNS = """
local function fenced(presence, token)
  return token ~= '' and redis.call('GET', presence) ~= token
end

local function note_attempt(rec, outcome)
  if type(rec.attempts) ~= 'table' then rec.attempts = {} end
  table.insert(rec.attempts, {attempt = tonumber(rec.delivery_count) or 0, outcome = outcome, at = NOW_ISO})
end

-- Give up on a task (past max_deliveries): failed, in the dead letters, and a failed report for the parent.
local function fail(K, n, tid, rec, reason)
  count(K.counts, rec.state, -1)
  count(K.counts, 'failed', 1)
  count(K.counts, 'finished:' .. n, 1)
  redis.call('LREM', K.inflight, 1, rec.msg)
  note_attempt(rec, reason)
  rec.state = 'failed'
  rec.error = reason
  rec.finished_at = NOW_ISO
  rec.lease_until = nil
  put_record(K.records, tid, rec)
  redis.call('ZREM', K.leases, tid)
  redis.call('RPUSH', K.reports, cjson.encode({type = 'report', message_id = ctx.message_id,
    session_id = ctx.session_id, created_at = NOW_ISO, task_id = tid, child_id = tonumber(n), status = 'failed',
    result = '', error = reason}))
  if ctx.mode == 'normal' then
    redis.call('RPUSH', K.doorbell, n)
    touch(K.doorbell)
  end
  redis.call('RPUSH', K.dead, cjson.encode({queue = K.inflight, reason = reason, raw = rec.msg, at = NOW_ISO}))
  redis.call('LTRIM', K.dead, -ctx.deadcap, -1)
  touch(K.records, K.counts, K.reports, K.dead)
  event(K.stream, 'failed', n, tid, reason)
  return {'failed', tid}
end

-- Claim the task `raw` (already in the child's in-flight list) for child n. `adopt` is the record JSON for a
-- raw-pushed task that has none (decision 6), or nil. Answers {'ok', attempt}, {'cancelled', tid},
-- {'failed', tid}, {'check'} (nothing known: let the caller look) or {'refuse', why, detail} (nothing changed).
local function claim(K, n, raw, tid, adopt)
  local owner = redis.call('HGET', K.task_child, tid)
  if owner and owner ~= n then return {'refuse', 'other_child', owner} end
  local rec = get_record(K.records, tid)
  if rec == false or (rec == nil and owner) then return {'refuse', 'damaged', ''} end
  if rec == nil then
    if not adopt then return {'check'} end
    rec = cjson.decode(adopt)
    if rec.msg ~= raw then return {'refuse', 'mismatch', ''} end
    redis.call('HSET', K.task_child, tid, n)
    count(K.counts, 'queued', 1)
  end
  if rec.msg ~= raw then return {'refuse', 'mismatch', rec.state} end
  if rec.state == 'cancelled' then
    redis.call('LREM', K.inflight, 1, raw)
    return {'cancelled', tid}
  end
  if rec.state ~= 'queued' and rec.state ~= 'working' then return {'refuse', 'finished', rec.state} end
  local limit = tonumber(rec.max_deliveries) or 5
  local takes = (tonumber(rec.delivery_count) or 0) - (tonumber(rec.limit_base) or 0)
  if takes >= limit then
    return fail(K, n, tid, rec, 'given to a child ' .. takes .. ' times without a report (max_deliveries ' .. limit
      .. ')')
  end
  if rec.state == 'queued' then
    count(K.counts, 'queued', -1)
    count(K.counts, 'working', 1)
  end
  rec.state = 'working'
  rec.started_at = NOW_ISO
  rec.delivery_count = (tonumber(rec.delivery_count) or 0) + 1
  if tonumber(rec.deadline_s) then
    rec.lease_until = NOW + math.floor(tonumber(rec.deadline_s) * 1000)
    redis.call('ZADD', K.leases, rec.lease_until, tid)
    touch(K.leases)
  end
  put_record(K.records, tid, rec)
  redis.call('HSET', K.last_seen, n, NOW)
  touch(K.records, K.task_child, K.counts, K.last_seen, K.inflight)
  local detail = nil
  if rec.delivery_count > 1 then detail = 'delivery ' .. rec.delivery_count end
  event(K.stream, 'working', n, tid, detail)
  return {'ok', tostring(rec.delivery_count)}
end

-- A working task goes back to the front of its child's queue (its child went away, or its deadline passed).
local function take_back(K, n, tid, rec, tasks, why)
  redis.call('LREM', K.inflight, 1, rec.msg)
  redis.call('LPUSH', tasks, rec.msg)
  note_attempt(rec, why)
  rec.state = 'queued'
  rec.lease_until = nil
  put_record(K.records, tid, rec)
  count(K.counts, 'working', -1)
  count(K.counts, 'queued', 1)
  redis.call('ZREM', K.leases, tid)
  touch(tasks, K.records)
  event(K.stream, 'requeued', n, tid, why)
end
"""
