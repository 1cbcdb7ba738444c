"""The transition scripts (see the table in `orch_mcp.delivery`). KEYS[1] is always the session's config.

Replies are short lists of plain ASCII words and ids, or a task message byte-identical to the one
its record holds (valid UTF-8 by construction): a script never hands foreign bytes back to a client
that decodes its replies.
"""

from __future__ import annotations

from .lua import TASK_FNS, Transition

# KEYS: config, records, task_child, counts, tasks, inflight, stopped, status.
# ARGV: ctx, child, task_id, raw message, priority, record JSON.
# Record the task (queued), put it on the child's queue behind every message of equal or higher
# priority (a shutdown counts as highest), and withdraw a shutdown the child already holds: new work
# revokes it (decision 8).
SEND = Transition(
    "send",
    """
local n, tid, raw, p = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if redis.call('HEXISTS', KEYS[3], tid) == 1 then return {'exists'} end
redis.call('HSET', KEYS[2], tid, ARGV[6])
redis.call('HSET', KEYS[3], tid, n)
count(KEYS[4], 'queued', 1)
local placed = false
if p > 0 then
  local len = redis.call('LLEN', KEYS[5])
  local i = 0
  while i < len and not placed do
    local chunk = redis.call('LRANGE', KEYS[5], i, i + 99)
    for _, item in ipairs(chunk) do
      local ok, msg = pcall(cjson.decode, item)
      local ip = 0
      if ok and type(msg) == 'table' then
        if msg['type'] == 'shutdown' then ip = math.huge
        elseif type(msg['priority']) == 'number' then ip = msg['priority'] end
      end
      if ip < p then
        redis.call('LINSERT', KEYS[5], 'BEFORE', item, raw)
        placed = true
        break
      end
    end
    i = i + 100
  end
end
if not placed then redis.call('RPUSH', KEYS[5], raw) end
revoke_shutdown(KEYS[6], KEYS[7], n)
touch(KEYS[2], KEYS[3], KEYS[4], KEYS[5])
event(KEYS[8], 'queued', n, tid)
return {'ok'}
""",
)

# KEYS: config, status, then the task queue of each child told. ARGV: ctx, raw, '1' for now, then the child ids.
SHUTDOWN = Transition(
    "shutdown",
    """
for i = 3, #KEYS do
  if ARGV[3] == '1' then redis.call('LPUSH', KEYS[i], ARGV[2]) else redis.call('RPUSH', KEYS[i], ARGV[2]) end
  touch(KEYS[i])
  event(KEYS[2], 'shutdown_sent', ARGV[i + 1], nil, ARGV[3] == '1' and 'now' or 'after pending tasks')
end
return {'ok'}
""",
)

# KEYS: config, tasks, inflight, records, task_child, counts, last_seen, status, presence, leases, reports,
# doorbell, dead. ARGV: ctx, child, presence token ('' = unfenced).
# The fast path of a take: with the in-flight list empty, move the next message into it; if the list
# then holds exactly one message and it is a task recorded for this child, claim it and return it (with the
# number of messages left in the queue).
# Anything else ({'check'}) the caller reads, validates and settles message by message.
TRY_TAKE = Transition(
    "try_take",
    TASK_FNS
    + """
local K = {tasks = KEYS[2], inflight = KEYS[3], records = KEYS[4], task_child = KEYS[5], counts = KEYS[6],
  last_seen = KEYS[7], stream = KEYS[8], leases = KEYS[10], reports = KEYS[11], doorbell = KEYS[12], dead = KEYS[13]}
if fenced(KEYS[9], ARGV[3]) then return {'fenced'} end
if redis.call('LLEN', KEYS[3]) == 0 then
  if not redis.call('LMOVE', KEYS[2], KEYS[3], 'LEFT', 'RIGHT') then return {'empty'} end
  touch(KEYS[3])
end
if redis.call('LLEN', KEYS[3]) ~= 1 then return {'check'} end
local raw = redis.call('LINDEX', KEYS[3], 0)
local ok, msg = pcall(cjson.decode, raw)
if not ok or type(msg) ~= 'table' or msg['type'] ~= 'task' or type(msg['task_id']) ~= 'string' then
  return {'check'}
end
local res = claim(K, ARGV[2], raw, msg['task_id'], nil)
if res[1] == 'ok' then return {'ok', res[2], raw, redis.call('LLEN', KEYS[2])} end
if res[1] == 'cancelled' or res[1] == 'failed' then return res end
return {'check'}
""",
)

# KEYS: config, inflight, records, task_child, counts, last_seen, status, presence, leases, reports, doorbell, dead.
# ARGV: ctx, child, token, raw (validated by the caller), task_id, record JSON to adopt a raw-pushed task.
CLAIM = Transition(
    "claim",
    TASK_FNS
    + """
local K = {inflight = KEYS[2], records = KEYS[3], task_child = KEYS[4], counts = KEYS[5], last_seen = KEYS[6],
  stream = KEYS[7], leases = KEYS[9], reports = KEYS[10], doorbell = KEYS[11], dead = KEYS[12]}
if fenced(KEYS[8], ARGV[3]) then return {'fenced'} end
if not redis.call('LPOS', KEYS[2], ARGV[4]) then return {'absent'} end
return claim(K, ARGV[2], ARGV[4], ARGV[5], ARGV[6])
""",
)

# KEYS: config, stopped, last_seen, status. ARGV: ctx, child, reason.
# The child got its shutdown (which stays in its in-flight list: sticky); the first time is an event.
STOPPED = Transition(
    "stopped",
    """
redis.call('HSET', KEYS[3], ARGV[2], NOW)
touch(KEYS[3])
if redis.call('HSETNX', KEYS[2], ARGV[2], NOW) == 1 then
  touch(KEYS[2])
  event(KEYS[4], 'shutdown', ARGV[2], nil, ARGV[3] ~= '' and ARGV[3] or nil)
end
return {'ok'}
""",
)

# KEYS: config, records, task_child, inflight, counts, report queue, doorbell, last_seen, status, presence, leases.
# ARGV: ctx, child, task_id, status, result, error, report message, '1' to ring the doorbell (normal mode),
# presence token ('' = unfenced), attempt ('' = any).
# Only the current attempt of a task in flight for this child may be reported; the record is written,
# then the report queued.
REPORT = Transition(
    "report",
    TASK_FNS
    + """
local n, tid, attempt = ARGV[2], ARGV[3], tonumber(ARGV[10])
if fenced(KEYS[10], ARGV[9]) then return {'fenced', ''} end
local owner = redis.call('HGET', KEYS[3], tid)
if not owner then return {'unknown', ''} end
if owner ~= n then return {'other_child', owner} end
local rec = get_record(KEYS[2], tid)
if not rec then return {'damaged', ''} end
if rec.state == 'done' or rec.state == 'failed' then
  -- a repeat of the report that finished it is a duplicate; any other attempt's report is stale
  if attempt and attempt > 0 and attempt ~= tonumber(rec.reported_attempt) then return {'stale', rec.state} end
  return {'duplicate', rec.state}
end
if rec.state == 'cancelled' then
  redis.call('LREM', KEYS[4], 1, rec.msg)
  return {'cancelled', ''}
end
local current = tonumber(rec.delivery_count) or 0
if attempt and attempt > 0 and (attempt ~= current or rec.state ~= 'working') then
  return {'stale', rec.state}
end
if rec.state ~= 'working' or not redis.call('LPOS', KEYS[4], rec.msg) then return {'not_taken', rec.state} end
redis.call('LREM', KEYS[4], 1, rec.msg)
rec.state = ARGV[4]
rec.result = ARGV[5]
if ARGV[6] ~= '' then rec.error = ARGV[6] end
rec.finished_at = NOW_ISO
rec.lease_until = nil
rec.reported_attempt = current
put_record(KEYS[2], tid, rec)
redis.call('ZREM', KEYS[11], tid)
count(KEYS[5], 'working', -1)
count(KEYS[5], ARGV[4], 1)
count(KEYS[5], 'finished:' .. n, 1)
redis.call('RPUSH', KEYS[6], ARGV[7])
if ARGV[8] == '1' then
  redis.call('RPUSH', KEYS[7], n)
  touch(KEYS[7])
end
redis.call('HSET', KEYS[8], n, NOW)
touch(KEYS[2], KEYS[5], KEYS[6], KEYS[8])
event(KEYS[9], ARGV[4], n, tid)
return {'ok', ARGV[4]}
""",
)

# KEYS: config, presence, records, inflight, leases, last_seen, status.
# ARGV: ctx, child, token, task_id, attempt ('' = any), note.
# The child is still on a task: record its progress and push its lease's deadline.
HEARTBEAT = Transition(
    "heartbeat",
    TASK_FNS
    + """
local n, tid, attempt = ARGV[2], ARGV[4], tonumber(ARGV[5])
if fenced(KEYS[2], ARGV[3]) then return {'fenced', ''} end
local rec = get_record(KEYS[3], tid)
if rec == nil then return {'unknown', ''} end
if rec == false then return {'damaged', ''} end
if rec.state ~= 'working' or not redis.call('LPOS', KEYS[4], rec.msg) then return {'not_working', rec.state} end
if attempt and attempt > 0 and attempt ~= tonumber(rec.delivery_count) then return {'stale', rec.state} end
if tonumber(rec.deadline_s) then
  rec.lease_until = NOW + math.floor(tonumber(rec.deadline_s) * 1000)
  redis.call('ZADD', KEYS[5], rec.lease_until, tid)
  touch(KEYS[5])
end
if ARGV[6] ~= '' then rec.note = ARGV[6] end
rec.heartbeat_at = NOW_ISO
put_record(KEYS[3], tid, rec)
redis.call('HSET', KEYS[6], n, NOW)
touch(KEYS[3], KEYS[6])
event(KEYS[7], 'heartbeat', n, tid, ARGV[6] ~= '' and string.sub(ARGV[6], 1, 200) or nil)
return {'ok', tostring(rec.lease_until or '')}
""",
)

# KEYS: config, records, task_child, counts, tasks, status, leases. ARGV: ctx, child, task_id.
# A queued task leaves its queue; a working one is marked and its child learns it at its next call.
CANCEL = Transition(
    "cancel",
    """
local n, tid = ARGV[2], ARGV[3]
local rec = get_record(KEYS[2], tid)
if rec == nil then return {'unknown'} end
if rec == false then return {'damaged'} end
if rec.state ~= 'queued' and rec.state ~= 'working' then return {'finished', rec.state} end
if rec.state == 'queued' then redis.call('LREM', KEYS[5], 1, rec.msg) end
count(KEYS[4], rec.state, -1)
count(KEYS[4], 'cancelled', 1)
local was = rec.state
rec.state = 'cancelled'
rec.finished_at = NOW_ISO
rec.lease_until = nil
put_record(KEYS[2], tid, rec)
redis.call('ZREM', KEYS[7], tid)
event(KEYS[6], 'cancelled', n, tid, was == 'working' and 'its child is told at its next call' or nil)
return {'ok', was}
""",
)

# KEYS: config, the list it sits on, dead, status. ARGV: ctx, raw (exact bytes), dead letter JSON, cap, reason.
DEAD = Transition(
    "dead_letter",
    """
if redis.call('LREM', KEYS[2], 1, ARGV[2]) == 0 then return {'absent'} end
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[4]), -1)
touch(KEYS[3])
event(KEYS[4], 'dead_letter', nil, nil, ARGV[5])
return {'ok'}
""",
)

# KEYS: config, doorbell, the child's report queue, reports:inflight. ARGV: ctx, child, '1' if rung.
# Normal mode: move the oldest report (the doorbell's head names its child) into the parent's
# in-flight list. Without the doorbell ('0') it sweeps a report pushed by hand.
MOVE_REPORT = Transition(
    "move_report",
    """
if ARGV[3] == '1' then
  if redis.call('LINDEX', KEYS[2], 0) ~= ARGV[2] then return {'retry'} end
  redis.call('LPOP', KEYS[2])
end
local moved = redis.call('LMOVE', KEYS[3], KEYS[4], 'LEFT', 'RIGHT')
-- Every report waiting on a child's queue keeps a doorbell entry, even one that was not pushed with one.
if redis.call('LLEN', KEYS[3]) > 0 and not redis.call('LPOS', KEYS[2], ARGV[2]) then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  touch(KEYS[2])
end
if moved then
  touch(KEYS[4])
  return {'moved'}
end
return {'stale'}
""",
)
