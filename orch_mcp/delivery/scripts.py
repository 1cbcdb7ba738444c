"""The transition scripts (see the table in `orch_mcp.delivery`). KEYS[1] is always the session's config.

Replies are short lists of plain ASCII words and ids, or a task message byte-identical to the one
its record holds (valid UTF-8 by construction): a script never hands foreign bytes back to a client
that decodes its replies.
"""

from __future__ import annotations

from .lua import Transition

# Helpers of the child's scripts and the reaper. K: records, task_child, counts, last_seen, stream, inflight,
# leases, reports (where this child's reports go), doorbell, dead.
_TASK_FNS = """
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
for _, item in ipairs(redis.call('LRANGE', KEYS[6], 0, -1)) do
  local ok, msg = pcall(cjson.decode, item)
  if ok and type(msg) == 'table' and msg['type'] == 'shutdown' then redis.call('LREM', KEYS[6], 1, item) end
end
redis.call('HDEL', KEYS[7], n)
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
# then holds exactly one message and it is a task recorded for this child, claim it and return it.
# Anything else ({'check'}) the caller reads, validates and settles message by message.
TRY_TAKE = Transition(
    "try_take",
    _TASK_FNS
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
if res[1] == 'ok' then return {'ok', res[2], raw} end
if res[1] == 'cancelled' or res[1] == 'failed' then return res end
return {'check'}
""",
)

# KEYS: config, inflight, records, task_child, counts, last_seen, status, presence, leases, reports, doorbell, dead.
# ARGV: ctx, child, token, raw (validated by the caller), task_id, record JSON to adopt a raw-pushed task.
CLAIM = Transition(
    "claim",
    _TASK_FNS
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
    _TASK_FNS
    + """
local n, tid, attempt = ARGV[2], ARGV[3], tonumber(ARGV[10])
if fenced(KEYS[10], ARGV[9]) then return {'fenced', ''} end
local owner = redis.call('HGET', KEYS[3], tid)
if not owner then return {'unknown', ''} end
if owner ~= n then return {'other_child', owner} end
local rec = get_record(KEYS[2], tid)
if not rec then return {'damaged', ''} end
if rec.state == 'done' or rec.state == 'failed' then return {'duplicate', rec.state} end
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
    _TASK_FNS
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
    _TASK_FNS
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
    _TASK_FNS
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
    _TASK_FNS
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
for _, item in ipairs(redis.call('LRANGE', KEYS[9], 0, -1)) do
  local ok, msg = pcall(cjson.decode, item)
  if ok and type(msg) == 'table' and msg['type'] == 'shutdown' then redis.call('LREM', KEYS[9], 1, item) end
end
redis.call('HDEL', KEYS[11], new)
touch(KEYS[3], KEYS[4], KEYS[5], KEYS[8])
event(KEYS[12], 'requeued', new, tid, why)
return {'ok', was}
""",
)
