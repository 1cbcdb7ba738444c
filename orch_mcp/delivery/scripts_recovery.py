"""The transitions that recover work: presence claims, the reaper's take-backs, requeue, a restored report.

KEYS[1] is always the session's config (see `orch_mcp.delivery.lua`).
"""

from __future__ import annotations

from .lua import TASK_FNS, Transition

# KEYS: config, reports:inflight. ARGV: ctx, raw.
# Put back at the front of the parent's in-flight list a report that was acknowledged, though the wait
# that returned it was cancelled after all (the client's cancel arrived after the next wait began).
RESTORE_REPORT = Transition(
    "restore_report",
    """
if redis.call('LPOS', KEYS[2], ARGV[2]) then return {'present'} end
redis.call('LPUSH', KEYS[2], ARGV[2])
touch(KEYS[2])
return {'ok'}
""",
)

# KEYS: config, presence, last_seen. ARGV: ctx, child id ('' for the parent), token, TTL (ms).
# Claim or renew a presence: {'claimed'} (it was free), {'renewed'}, or {'held', pttl} (another live holder).
PRESENCE = Transition(
    "presence",
    """
local held = redis.call('GET', KEYS[2])
if held and held ~= ARGV[3] then return {'held', tostring(redis.call('PTTL', KEYS[2]))} end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[2], NOW)
  touch(KEYS[3])
end
if held then return {'renewed'} end
return {'claimed'}
""",
)

# KEYS: config, presence, inflight, tasks, records, counts, leases, status, last_seen.
# ARGV: ctx, child, grace (ms). The child is absent (no presence, not seen for the grace): its working
# tasks go back to the front of its queue, in order.
REAP_ABSENT = Transition(
    "reap_absent",
    TASK_FNS
    + """
local n = ARGV[2]
if redis.call('EXISTS', KEYS[2]) == 1 then return {'present'} end
if NOW - (tonumber(redis.call('HGET', KEYS[9], n)) or 0) < tonumber(ARGV[3]) then return {'recent'} end
local K = {inflight = KEYS[3], records = KEYS[5], counts = KEYS[6], leases = KEYS[7], stream = KEYS[8]}
local items = redis.call('LRANGE', KEYS[3], 0, -1)
local moved = 0
for i = #items, 1, -1 do
  local ok, msg = pcall(cjson.decode, items[i])
  if ok and type(msg) == 'table' and msg['type'] == 'task' and type(msg['task_id']) == 'string' then
    local rec = get_record(KEYS[5], msg['task_id'])
    if rec and rec.state == 'working' and rec.msg == items[i] then
      take_back(K, n, msg['task_id'], rec, KEYS[4], 'its child went away: back at the front of its queue')
      moved = moved + 1
    end
  end
end
return {'ok', tostring(moved)}
""",
)

# KEYS: config, inflight, tasks, records, counts, leases, status. ARGV: ctx, child, task_id.
# A working task whose deadline passed goes back to the front of its child's queue (even from a live child,
# whose late report is then stale).
REAP_DEADLINE = Transition(
    "reap_deadline",
    TASK_FNS
    + """
local n, tid = ARGV[2], ARGV[3]
local K = {inflight = KEYS[2], records = KEYS[4], counts = KEYS[5], leases = KEYS[6], stream = KEYS[7]}
local rec = get_record(KEYS[4], tid)
if not rec or rec.state ~= 'working' or not redis.call('LPOS', KEYS[2], rec.msg) then
  redis.call('ZREM', KEYS[6], tid)
  return {'skip'}
end
if (tonumber(rec.lease_until) or 0) > NOW then return {'not_yet'} end
take_back(K, n, tid, rec, KEYS[3], 'its deadline passed: back at the front of its queue')
return {'ok'}
""",
)

# KEYS: config, old records, new records, task_child, counts, old tasks, old inflight, new tasks, new inflight,
# leases, stopped, status. ARGV: ctx, task_id, old child, new child, the recorded message, the new message.
# A queued, working or failed task goes to the front of a child's queue (the same or another), as a new
# delivery: the old attempt's report is stale from now on.
REQUEUE = Transition(
    "requeue",
    TASK_FNS
    + """
local tid, old, new = ARGV[2], ARGV[3], ARGV[4]
local rec = get_record(KEYS[2], tid)
if rec == nil then return {'unknown'} end
if rec == false then return {'damaged'} end
if rec.msg ~= ARGV[5] then return {'changed'} end
local was = rec.state
if was ~= 'queued' and was ~= 'working' and was ~= 'failed' then return {'finished', was} end
if was == 'queued' then redis.call('LREM', KEYS[6], 1, rec.msg) end
if was == 'working' then redis.call('LREM', KEYS[7], 1, rec.msg) end
count(KEYS[5], was, -1)
count(KEYS[5], 'queued', 1)
if was == 'failed' then count(KEYS[5], 'finished:' .. old, -1) end
local why = 'requeued from child ' .. old .. ' (' .. was .. ') to child ' .. new
if was == 'failed' and type(rec.error) == 'string' then why = why .. ' after: ' .. rec.error end
note_attempt(rec, why)
rec.state = 'queued'
rec.child_id = tonumber(new)
rec.msg = ARGV[6]
rec.limit_base = tonumber(rec.delivery_count) or 0
rec.lease_until = nil
rec.result = nil
rec.error = nil
rec.finished_at = nil
if old ~= new then redis.call('HDEL', KEYS[2], tid) end
put_record(KEYS[3], tid, rec)
redis.call('HSET', KEYS[4], tid, new)
redis.call('ZREM', KEYS[10], tid)
redis.call('LPUSH', KEYS[8], ARGV[6])
revoke_shutdown(KEYS[9], KEYS[11], new)
touch(KEYS[3], KEYS[4], KEYS[5], KEYS[8])
event(KEYS[12], 'requeued', new, tid, why)
return {'ok', was}
""",
)

# KEYS: config, presence. ARGV: ctx, token. Give up a claim if it is still the caller's.
RELEASE = Transition(
    "release",
    """
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return {'ok'}
""",
)
