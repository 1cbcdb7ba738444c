"""At-least-once task delivery within a session (plain async functions taking the Redis client).

Parent: send_task, take_report, send_shutdown, get_task, cancel_task. Child: take_task, report_task,
claim/refresh/release presence. A child takes a task with BLMOVE into its in-flight list; the task
leaves that list only when its report is recorded, so a child restarted under the same id gets it
back. Every state change goes to the status stream (and the monitor channel in summoner mode).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis.exceptions as rexc
from pydantic import BaseModel

from .errors import ConflictError, LimitError, MessageError, NotFoundError
from .keys import SessionKeys
from .messages import Message, ReportMessage, ReportStatus, ShutdownMessage, TaskMessage, parse_message
from .redis_client import MAX_BLOCK_SLICE_S, Redis, sliced_wait
from .sessions import SessionConfig, check_child, touch_session
from .utils import iso_now, new_id, unix_ms, validate_identifier

STATUS_STREAM_MAXLEN = 10_000
TaskState = Literal["queued", "working", "done", "failed", "cancelled"]
TASK_STATES: tuple[TaskState, ...] = ("queued", "working", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
PRESENCE_TTL_S = 15

OnSlice = Callable[[], Awaitable[None]]


class TaskRecord(BaseModel):
    """A task's record (`<prefix>:task:<task_id>`)."""

    task_id: str
    session_id: str
    child_id: int
    state: str
    prompt: str
    context: dict[str, Any]
    priority: int
    delivery_count: int
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    result: str | None = None
    error: str | None = None


class ReportOutcome(BaseModel):
    """What report_task did: `accepted` false with `duplicate` true for a task already reported."""

    task_id: str
    accepted: bool
    duplicate: bool = False
    state: str


@dataclass
class InflightHint:
    """What a long-lived parent or child knows about its in-flight list between calls (a shortcut, never needed).

    `empty` True means the last call returned normally and left nothing in the list beyond what it
    returned (which the caller then reported, or acknowledges with the next call), so the next call
    may skip reading the list first. Every call clears it on entry: a cancelled call leaves it False.
    """

    empty: bool = False


class LuaScript:
    """A Lua script run by EVALSHA, falling back to EVAL (which also caches it) when the server lacks it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def __call__(self, r: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await r.evalsha(self.sha, len(keys), *keys, *args)
        except rexc.NoScriptError:
            return await r.eval(self.text, len(keys), *keys, *args)


class DeadLetter(BaseModel):
    """A message that could not be delivered, as stored in `<prefix>:dead`."""

    queue: str
    reason: str
    raw: str
    at: str


# ---------------------------------------------------------------- events


def _event_fields(
    cfg: SessionConfig, state: str, child_id: int | None, task_id: str | None, detail: str | None
) -> list[str]:
    return [
        "state", state,
        "child_id", "" if child_id is None else str(child_id),
        "task_id", task_id or "",
        "detail", detail or "",
        "at", iso_now(),
    ]  # fmt: skip


def _event_json(cfg: SessionConfig, state: str, child_id: int | None, task_id: str | None, detail: str | None) -> str:
    """The StatusMessage published on the monitor channel ('' in normal mode, which has none)."""
    if not cfg.monitor_channel:
        return ""
    # The fields of StatusMessage.create(...).to_json(), built directly: this runs on every state change.
    return json.dumps({
        "type": "status", "message_id": new_id(), "session_id": cfg.session_id, "created_at": iso_now(),
        "child_id": child_id, "state": state, "task_id": task_id, "detail": detail,
    })  # fmt: skip


def _add_event(pipe: Any, cfg: SessionConfig, state: str, child_id: int | None = None, task_id: str | None = None,
               detail: str | None = None) -> None:  # fmt: skip
    fields = _event_fields(cfg, state, child_id, task_id, detail)
    pipe.xadd(cfg.keys.status, dict(zip(fields[::2], fields[1::2], strict=True)), maxlen=STATUS_STREAM_MAXLEN,
              approximate=True)  # fmt: skip
    pipe.expire(cfg.keys.status, cfg.ttl_s)
    if cfg.monitor_channel:
        pipe.publish(cfg.monitor_channel, _event_json(cfg, state, child_id, task_id, detail))


async def record_event(
    r: Redis, cfg: SessionConfig, state: str, child_id: int | None = None, task_id: str | None = None,
    detail: str | None = None,
) -> None:  # fmt: skip
    """Append a state change to the status stream (and publish it on the monitor channel)."""
    async with r.pipeline(transaction=False) as pipe:
        _add_event(pipe, cfg, state, child_id, task_id, detail)
        await pipe.execute()


async def recent_events(r: Redis, cfg: SessionConfig, count: int = 20) -> list[dict[str, str]]:
    """The latest `count` status events, newest first, each with its stream id."""
    entries = await r.xrevrange(cfg.keys.status, count=count)
    return [{"id": entry_id, **fields} for entry_id, fields in entries]


# ---------------------------------------------------------------- parent side

# Create the record, index it, queue the task and log the event in one step (one round trip). A
# task with priority > 0 goes in behind every message of equal or higher priority (shutdowns count
# as highest): priority tasks jump the queue, equal priorities keep their order.
# KEYS: record, task_index, queue, status. ARGV: raw, priority, ttl, now_ms, task_id, stream maxlen,
# event fields (JSON list), monitor channel or '', monitor message, the record's fields (JSON list).
_SEND = LuaScript("""
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[10])))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local p = tonumber(ARGV[2])
local placed = false
if p > 0 then
  local n = redis.call('LLEN', KEYS[3])
  local i = 0
  while i < n and not placed do
    local chunk = redis.call('LRANGE', KEYS[3], i, i + 99)
    for _, item in ipairs(chunk) do
      local ok, msg = pcall(cjson.decode, item)
      local ip = 0
      if ok and type(msg) == 'table' then
        if msg['type'] == 'shutdown' then ip = math.huge
        elseif type(msg['priority']) == 'number' then ip = msg['priority'] end
      end
      if ip < p then
        redis.call('LINSERT', KEYS[3], 'BEFORE', item, ARGV[1])
        placed = true
        break
      end
    end
    i = i + 100
  end
end
if not placed then redis.call('RPUSH', KEYS[3], ARGV[1]) end
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', unpack(cjson.decode(ARGV[7])))
redis.call('EXPIRE', KEYS[4], ARGV[3])
if ARGV[8] ~= '' then redis.call('PUBLISH', ARGV[8], ARGV[9]) end
return 1
""")


def check_size(what: str, size: int, limit: int, advice: str) -> None:
    """Raise LimitError if `size` bytes exceed `limit`."""
    if size > limit:
        raise LimitError(f"{what} is {size} bytes, over the limit of {limit} bytes (ORCH_MAX_MESSAGE_BYTES); {advice}")


async def send_task(
    r: Redis,
    cfg: SessionConfig,
    child_id: int,
    prompt: str,
    context: dict[str, Any] | None = None,
    priority: int = 0,
    *,
    max_bytes: int,
) -> TaskMessage:
    """Queue a task for child `child_id` and create its record (state `queued`)."""
    check_child(cfg, child_id)
    context = context or {}
    try:
        context_json = json.dumps(context)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"context must be a JSON object of plain values: {exc}") from None
    check_size("the task (prompt + context)", len(prompt.encode()) + len(context_json.encode()), max_bytes,
               "shorten it or pass large data by reference (a file path or URL)")  # fmt: skip
    task = TaskMessage.create(prompt, cfg.session_id, child_id, context=context, priority=priority)
    raw = task.to_json()
    keys = cfg.keys
    event = _event_fields(cfg, "queued", child_id, task.task_id, None)
    await _SEND(
        r, [keys.task(task.task_id), keys.task_index, keys.tasks(child_id), keys.status],
        [raw, task.priority, cfg.ttl_s, unix_ms(), task.task_id, STATUS_STREAM_MAXLEN, json.dumps(event),
         cfg.monitor_channel or "", _event_json(cfg, "queued", child_id, task.task_id, None),
         _record_json(task, raw)],
    )  # fmt: skip
    await touch_session(r, cfg)
    return task


def _record_json(task: TaskMessage, raw: str) -> str:
    """The record's fields as a flat JSON list of strings [field, value, ...], for HSET in a script."""
    return json.dumps([str(v) for kv in _record_fields(task, raw).items() for v in kv])


def _record_fields(task: TaskMessage, raw: str) -> dict[str, str | int]:
    return {
        "task_id": task.task_id,
        "session_id": task.session_id,
        "child_id": task.child_id,
        "state": "queued",
        "prompt": task.prompt,
        "context": json.dumps(task.context),
        "priority": task.priority,
        "delivery_count": 0,
        "created_at": task.created_at.isoformat(),
        "raw": raw,
    }


async def send_shutdown(
    r: Redis, cfg: SessionConfig, child_id: int | None = None, *, now: bool = False, reason: str | None = None
) -> list[int]:
    """Tell one child (or all): behind its pending tasks, or at the front with `now`. Returns who was told."""
    targets = [check_child(cfg, child_id)] if child_id is not None else list(cfg.child_ids)
    msg = ShutdownMessage.create(cfg.session_id, child_id=child_id, reason=reason).to_json()
    async with r.pipeline(transaction=True) as pipe:
        for n in targets:
            (pipe.lpush if now else pipe.rpush)(cfg.keys.tasks(n), msg)
            pipe.expire(cfg.keys.tasks(n), cfg.ttl_s)
            _add_event(pipe, cfg, "shutdown_sent", n, None, "now" if now else "after pending tasks")
        await pipe.execute()
    return targets


async def get_task(r: Redis, cfg: SessionConfig, task_id: str) -> TaskRecord:
    """The record of `task_id`; NotFoundError if the session has no such task."""
    validate_identifier(task_id, "task id")
    data: dict[str, str] = await r.hgetall(cfg.keys.task(task_id))
    if not data:
        raise NotFoundError(f"no task {task_id!r} in session {cfg.session_id!r} (it may have expired); "
                            "check the id returned by send_task")  # fmt: skip
    return _to_record(data)


def _to_record(data: dict[str, str]) -> TaskRecord:
    try:
        context = json.loads(data.get("context") or "{}")
    except json.JSONDecodeError:
        context = {}
    return TaskRecord(
        task_id=data.get("task_id", ""),
        session_id=data.get("session_id", ""),
        child_id=int(data.get("child_id") or 0),
        state=data.get("state", "queued"),
        prompt=data.get("prompt", ""),
        context=context if isinstance(context, dict) else {},
        priority=int(data.get("priority") or 0),
        delivery_count=int(data.get("delivery_count") or 0),
        created_at=data.get("created_at") or None,
        started_at=data.get("started_at") or None,
        finished_at=data.get("finished_at") or None,
        result=data.get("result"),
        error=data.get("error") or None,
    )


_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'unknown' end
if state ~= 'queued' then return state end
redis.call('LREM', KEYS[2], 0, redis.call('HGET', KEYS[1], 'raw'))
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1])
return 'cancelled'
"""


async def cancel_task(r: Redis, cfg: SessionConfig, task_id: str) -> TaskRecord:
    """Withdraw a task that no child has taken yet; ConflictError once it is being worked on or finished."""
    record = await get_task(r, cfg, task_id)
    outcome = await r.eval(_CANCEL, 2, cfg.keys.task(task_id), cfg.keys.tasks(record.child_id), iso_now())
    if outcome != "cancelled":
        raise ConflictError(f"task {task_id!r} is {outcome}, so it can no longer be cancelled")
    await record_event(r, cfg, "cancelled", record.child_id, task_id)
    return await get_task(r, cfg, task_id)


# The start of a report wait, in one round trip: acknowledge the previous report, return the oldest
# unacknowledged one ('pending'), else move one waiting report into the in-flight list without
# blocking ('new'), else 'none'. KEYS: reports_inflight, then the report queue(s). ARGV: ack or '', ttl.
_REPORT_START = LuaScript("""
if ARGV[1] ~= '' then redis.call('LREM', KEYS[1], 1, ARGV[1]) end
local pending = redis.call('LINDEX', KEYS[1], 0)
if pending then return {'pending', pending} end
for i = 2, #KEYS do
  local item = redis.call('LPOP', KEYS[i])
  if item then
    redis.call('RPUSH', KEYS[1], item)
    redis.call('EXPIRE', KEYS[1], ARGV[2])
    return {'new', item}
  end
end
return {'none', ''}
""")


async def take_report(
    r: Redis, cfg: SessionConfig, timeout: float | None, *, ack: str | None = None, slice_s: float = MAX_BLOCK_SLICE_S,
    on_slice: OnSlice | None = None, hint: InflightHint | None = None,
) -> tuple[ReportMessage, str] | None:  # fmt: skip
    """Wait up to `timeout` s for the next report; returns it with its raw text (pass that as `ack` next time).

    The report moves to `<prefix>:reports:inflight` and stays there until acknowledged, so a wait
    cancelled at the wrong moment gets it again on the next call. `hint` (kept by a long-lived
    parent, e.g. AsyncParent) lets a summoner-mode wait skip its first round trip when the in-flight
    list is known to hold nothing but `ack`.
    """
    keys = cfg.keys
    queues = [keys.reports] if cfg.mode == "summoner" else [keys.child_reports(n) for n in cfg.child_ids]
    unacked = ack
    if hint is not None and hint.empty and cfg.mode == "summoner":
        hint.empty = False  # the ack goes out with the first blocking attempt
    else:
        if hint is not None:
            hint.empty = False
        while True:
            kind, raw = await _REPORT_START(r, [keys.reports_inflight, *queues], [unacked or "", cfg.ttl_s])
            unacked = None
            if kind == "none":
                break
            found = await _accept_report(r, cfg, raw)
            if found is not None:
                if hint is not None and kind == "new":
                    hint.empty = True
                return found
            # that one was malformed and went to the dead letters: look again

    async def attempt(seconds: float) -> tuple[ReportMessage, str] | None:
        nonlocal unacked
        if on_slice is not None:
            await on_slice()
        await touch_session(r, cfg)
        raw = await _pop_report(r, cfg, queues, seconds, unacked)
        unacked = None
        return None if raw is None else await _accept_report(r, cfg, raw)

    found = await sliced_wait(attempt, timeout, slice_s)
    if unacked is not None:  # the wait ended before its first attempt
        await r.lrem(keys.reports_inflight, 1, unacked)
    if hint is not None:
        hint.empty = True  # the list was empty (after the ack) when the wait began; it holds at most `found`
    return found


async def _pop_report(r: Redis, cfg: SessionConfig, queues: list[str], seconds: float, ack: str | None) -> str | None:
    """Block up to `seconds` for a report and move it into the in-flight list (acknowledging `ack` first)."""
    keys = cfg.keys
    async with r.pipeline(transaction=False) as pipe:
        if ack is not None:
            pipe.lrem(keys.reports_inflight, 1, ack)
        if cfg.mode == "summoner":
            pipe.blmove(keys.reports, keys.reports_inflight, seconds, "LEFT", "RIGHT")
            pipe.expire(keys.reports_inflight, cfg.ttl_s)
            *_, moved, _ = await pipe.execute()
            return None if moved is None else str(moved)
        # Normal mode has one report queue per child and Redis 6.2 has no multi-key BLMOVE: block on
        # all queues and move what arrives into the in-flight list at once (a report is also in its
        # task record, readable through get_task, should the parent die in between).
        pipe.blpop(queues, seconds)
        *_, popped = await pipe.execute()
    if popped is None:
        return None
    async with r.pipeline(transaction=False) as pipe:
        pipe.rpush(keys.reports_inflight, popped[1])
        pipe.expire(keys.reports_inflight, cfg.ttl_s)
        await pipe.execute()
    return str(popped[1])


async def _accept_report(r: Redis, cfg: SessionConfig, raw: str) -> tuple[ReportMessage, str] | None:
    try:
        msg = parse_message(raw)
        if not isinstance(msg, ReportMessage):
            raise MessageError(f"a {msg.type} message does not belong on a report queue")
    except MessageError as exc:
        await _dead_letter(r, cfg, cfg.keys.reports_inflight, raw, str(exc))
        return None
    return msg, raw


async def _dead_letter(r: Redis, cfg: SessionConfig, inflight: str, raw: str, reason: str) -> None:
    letter = DeadLetter(queue=inflight, reason=reason, raw=raw, at=iso_now()).model_dump_json()
    async with r.pipeline(transaction=True) as pipe:
        pipe.lrem(inflight, 1, raw)
        pipe.rpush(cfg.keys.dead, letter)
        pipe.expire(cfg.keys.dead, cfg.ttl_s)
        _add_event(pipe, cfg, "dead_letter", None, None, reason[:200])
        await pipe.execute()


async def dead_letters(r: Redis, cfg: SessionConfig) -> list[DeadLetter]:
    """The session's dead letters, oldest first."""
    return [DeadLetter.model_validate_json(t) for t in await r.lrange(cfg.keys.dead, 0, -1)]


# ---------------------------------------------------------------- child side

# Mark a taken task as working (creating the record for a raw RPUSH), or drop it if it is finished.
_CLAIM = LuaScript("""
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'done' or state == 'failed' or state == 'cancelled' then
  redis.call('LREM', KEYS[2], 1, ARGV[1])
  return {'skip', state}
end
if not state then
  redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[6])))
  redis.call('ZADD', KEYS[5], ARGV[7], ARGV[8])
  redis.call('EXPIRE', KEYS[5], ARGV[4])
end
redis.call('HSET', KEYS[1], 'state', 'working', 'started_at', ARGV[2], 'raw', ARGV[1])
local n = redis.call('HINCRBY', KEYS[1], 'delivery_count', 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[7])
redis.call('EXPIRE', KEYS[4], ARGV[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', unpack(cjson.decode(ARGV[9])))
redis.call('EXPIRE', KEYS[3], ARGV[4])
if ARGV[10] ~= '' then redis.call('PUBLISH', ARGV[10], ARGV[11]) end
return {'ok', tostring(n)}
""")


# Sent in the same round trip as the BLMOVE (pipelined behind it, so it runs the moment the BLMOVE
# returns) while the in-flight list was empty: claim what the BLMOVE moved in (the list's last item)
# if it is, byte for byte, a task that send_task recorded for this child. Anything else (a shutdown,
# a raw RPUSH without a record, a malformed or misrouted message) is left to `_accept_task`. The
# record's key is built here from the task id in the message: it starts with the session prefix, so
# its hash tag puts it in the same cluster slot as the declared keys.
# KEYS: inflight, status, last_seen, task_index. ARGV: record key prefix, now (ISO), child id, ttl,
# stream maxlen, now (ms), monitor channel or '', monitor message template (JSON, task_id null) or ''.
_CLAIM_MOVED = LuaScript("""
local raw = redis.call('LINDEX', KEYS[1], -1)
if not raw then return {'none'} end
local tid = string.match(raw, '"task_id":"([%w_.:-]+)"')
if not tid then return {'check'} end
local rec = ARGV[1] .. tid
local found = redis.call('HMGET', rec, 'state', 'raw', 'child_id')
if found[2] ~= raw or found[3] ~= ARGV[3] then return {'check'} end
local state = found[1]
if state == 'done' or state == 'failed' or state == 'cancelled' then
  redis.call('LREM', KEYS[1], 1, raw)
  return {'skip', state}
end
redis.call('HSET', rec, 'state', 'working', 'started_at', ARGV[2])
local n = redis.call('HINCRBY', rec, 'delivery_count', 1)
redis.call('EXPIRE', rec, ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'state', 'working', 'child_id', ARGV[3], 'task_id', tid,
  'detail', '', 'at', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
if ARGV[7] ~= '' then
  local event = cjson.decode(ARGV[8])
  event['task_id'] = tid
  redis.call('PUBLISH', ARGV[7], cjson.encode(event))
end
return {'ok', tostring(n)}
""")


async def take_task(
    r: Redis, cfg: SessionConfig, child_id: int, timeout: float | None, *, slice_s: float = MAX_BLOCK_SLICE_S,
    on_slice: OnSlice | None = None, hint: InflightHint | None = None,
) -> TaskMessage | ShutdownMessage | None:  # fmt: skip
    """Wait up to `timeout` s for child `child_id`'s next task or shutdown; None on timeout.

    A task already in the child's in-flight list (taken before a crash or a cancelled wait, not yet
    reported) comes back first. Malformed or misrouted messages go to the dead letters. `hint`
    (kept by a long-lived child, e.g. AsyncChild) skips reading the in-flight list when the last
    report left it empty.
    """
    check_child(cfg, child_id)
    keys = cfg.keys
    inflight = keys.inflight(child_id)
    known_empty = hint is not None and hint.empty
    if hint is not None:
        hint.empty = False
    if not known_empty:
        for raw in await r.lrange(inflight, 0, -1):
            found = await _accept_task(r, cfg, child_id, raw)
            if found is not None:
                return found

    # From here on the in-flight list is empty: each attempt moves at most one message into it and
    # claims it in the same round trip, or leaves it to _accept_task, which returns or removes it.

    async def attempt(seconds: float) -> TaskMessage | ShutdownMessage | None:
        if on_slice is not None:
            await on_slice()
        await touch_session(r, cfg)
        monitor = _event_json(cfg, "working", child_id, None, None)  # '' in normal mode
        async with r.pipeline(transaction=False) as pipe:
            pipe.blmove(keys.tasks(child_id), inflight, seconds, "LEFT", "RIGHT")
            pipe.evalsha(
                _CLAIM_MOVED.sha, 4, inflight, keys.status, keys.last_seen, keys.task_index,
                keys.task(""), iso_now(), child_id, cfg.ttl_s, STATUS_STREAM_MAXLEN, unix_ms(),
                cfg.monitor_channel or "", monitor,
            )  # fmt: skip
            raw, claimed = await pipe.execute(raise_on_error=False)
        if isinstance(raw, Exception):
            raise raw
        if isinstance(claimed, rexc.NoScriptError):
            claimed = await _CLAIM_MOVED(r, [inflight, keys.status, keys.last_seen, keys.task_index],
                                         [keys.task(""), iso_now(), child_id, cfg.ttl_s, STATUS_STREAM_MAXLEN,
                                          unix_ms(), cfg.monitor_channel or "", monitor])  # fmt: skip
        if isinstance(claimed, Exception):
            raise claimed
        if raw is None or claimed[0] == "skip":
            return None
        if claimed[0] == "ok":
            msg = parse_message(raw)
            assert isinstance(msg, TaskMessage)  # it is what send_task (or _accept_task) recorded
            return msg
        return await _accept_task(r, cfg, child_id, raw)

    taken: TaskMessage | ShutdownMessage | None = await sliced_wait(attempt, timeout, slice_s)
    if hint is not None and not isinstance(taken, TaskMessage):
        hint.empty = True  # whatever was in the list has been returned, dead-lettered or dropped
    return taken


async def _accept_task(r: Redis, cfg: SessionConfig, child_id: int, raw: str) -> TaskMessage | ShutdownMessage | None:
    keys = cfg.keys
    inflight = keys.inflight(child_id)
    try:
        msg: Message = parse_message(raw)
        _check_route(cfg, child_id, msg)
    except MessageError as exc:
        await _dead_letter(r, cfg, inflight, raw, str(exc))
        return None
    if isinstance(msg, ShutdownMessage):
        async with r.pipeline(transaction=True) as pipe:
            pipe.lrem(inflight, 1, raw)
            _add_event(pipe, cfg, "shutdown", child_id, None, msg.reason)
            await pipe.execute()
        return msg
    assert isinstance(msg, TaskMessage)
    now_ms = unix_ms()
    event = _event_fields(cfg, "working", child_id, msg.task_id, None)
    outcome = await _CLAIM(
        r, [keys.task(msg.task_id), inflight, keys.status, keys.last_seen, keys.task_index],
        [raw, iso_now(), child_id, cfg.ttl_s, STATUS_STREAM_MAXLEN,
         _record_json(msg, raw), now_ms, msg.task_id,
         json.dumps(event), cfg.monitor_channel or "", _event_json(cfg, "working", child_id, msg.task_id, None)],
    )  # fmt: skip
    if outcome[0] == "skip":
        return None
    return msg


def _check_route(cfg: SessionConfig, child_id: int, msg: Message) -> None:
    if isinstance(msg, TaskMessage):
        if msg.child_id != child_id:
            raise MessageError(f"task {msg.task_id} is addressed to child {msg.child_id}, not {child_id}")
        if msg.session_id != cfg.session_id:
            raise MessageError(f"task {msg.task_id} belongs to session {msg.session_id!r}, not {cfg.session_id!r}")
        validate_task_id(msg.task_id)
    elif not isinstance(msg, ShutdownMessage):
        raise MessageError(f"a {msg.type} message does not belong on a task queue")


def validate_task_id(task_id: str) -> str:
    """Task ids become key names: the same character rules as other identifiers."""
    try:
        return validate_identifier(task_id, "task id")
    except ValueError as exc:
        raise MessageError(str(exc)) from None


_REPORT = LuaScript("""
local rec = redis.call('HMGET', KEYS[1], 'state', 'child_id', 'raw')
if not rec[1] then return {'unknown', ''} end
if rec[2] ~= ARGV[1] then return {'other_child', rec[2]} end
if rec[1] == 'done' or rec[1] == 'failed' then return {'duplicate', rec[1]} end
if rec[3] then redis.call('LREM', KEYS[2], 0, rec[3]) end
if rec[1] == 'cancelled' then return {'cancelled', rec[1], redis.call('LLEN', KEYS[2])} end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'result', ARGV[3], 'error', ARGV[4], 'finished_at', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('RPUSH', KEYS[3], ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[7])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[8])
redis.call('EXPIRE', KEYS[5], ARGV[7])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[9], '*', unpack(cjson.decode(ARGV[10])))
redis.call('EXPIRE', KEYS[4], ARGV[7])
if ARGV[11] ~= '' then redis.call('PUBLISH', ARGV[11], ARGV[12]) end
return {'ok', ARGV[2], redis.call('LLEN', KEYS[2])}
""")


async def report_task(
    r: Redis,
    cfg: SessionConfig,
    child_id: int,
    task_id: str,
    result: str,
    status: ReportStatus = "done",
    error: str | None = None,
    *,
    max_bytes: int,
    hint: InflightHint | None = None,
) -> ReportOutcome:
    """Record child `child_id`'s result for `task_id`, then queue the report for the parent (atomically).

    `hint` (the one passed to take_task) learns whether the child's in-flight list is now empty.
    """
    check_child(cfg, child_id)
    validate_identifier(task_id, "task id")
    if status not in ("done", "failed"):
        raise MessageError(f"status must be 'done' or 'failed', got {status!r}")
    check_size("the result", len(result.encode()) + len((error or "").encode()), max_bytes,
               "shorten it, or write it to a file and report the path")  # fmt: skip
    keys = cfg.keys
    report = ReportMessage.create(task_id, cfg.session_id, child_id, result=result, status=status, error=error)
    event = _event_fields(cfg, status, child_id, task_id, None)
    outcome = await _REPORT(
        r, [keys.task(task_id), keys.inflight(child_id), cfg.report_queue(child_id), keys.status, keys.last_seen],
        [child_id, status, result, error or "", iso_now(), report.to_json(), cfg.ttl_s, unix_ms(),
         STATUS_STREAM_MAXLEN, json.dumps(event), cfg.monitor_channel or "",
         _event_json(cfg, status, child_id, task_id, None)],
    )  # fmt: skip
    kind, detail = outcome[0], outcome[1]
    if hint is not None and len(outcome) > 2:
        hint.empty = int(outcome[2]) == 0
    if kind == "unknown":
        raise NotFoundError(f"no task {task_id!r} in this session: report only task ids you got from wait_for_task")
    if kind == "other_child":
        raise ConflictError(f"task {task_id!r} belongs to child {detail}, not to you (child {child_id}); "
                            "report only your own tasks")  # fmt: skip
    if kind == "cancelled":
        raise ConflictError(f"task {task_id!r} was cancelled by the parent; drop it and call wait_for_task again")
    if kind == "duplicate":
        return ReportOutcome(task_id=task_id, accepted=False, duplicate=True, state=detail)
    await touch_session(r, cfg)
    return ReportOutcome(task_id=task_id, accepted=True, state=detail)


# ---------------------------------------------------------------- presence

_REFRESH = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end "
    "return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') and 1 or 0"
)
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


async def claim_presence(r: Redis, cfg: SessionConfig, child_id: int, token: str, ttl_s: int = PRESENCE_TTL_S) -> None:
    """Mark child `child_id` as served by the caller (`token`); ConflictError if another live process serves it."""
    check_child(cfg, child_id)
    if not await r.eval(_REFRESH, 1, cfg.keys.presence(child_id), token, ttl_s):
        raise ConflictError(
            f"child {child_id} of session {cfg.session_id!r} is already served by another live orch-mcp process; "
            f"use a different --child-id (1..{cfg.max_children}) or stop the other one (its claim lapses {ttl_s} s "
            "after it stops)"
        )
    async with r.pipeline(transaction=False) as pipe:
        pipe.hset(cfg.keys.last_seen, str(child_id), unix_ms())
        pipe.expire(cfg.keys.last_seen, cfg.ttl_s)
        await pipe.execute()


async def release_presence(r: Redis, cfg: SessionConfig, child_id: int, token: str) -> None:
    """Give up the claim on child `child_id`, if it is still ours."""
    await r.eval(_RELEASE, 1, cfg.keys.presence(child_id), token)


# ---------------------------------------------------------------- status


class ChildStatus(BaseModel):
    """One child as session_status sees it."""

    child_id: int
    state: Literal["idle", "working", "offline"]
    online: bool
    last_seen: str | None
    queue_depth: int
    in_flight_task: str | None


class SessionStatus(BaseModel):
    """A session's children and task counts."""

    session_id: str
    mode: str
    children: list[ChildStatus]
    tasks: dict[str, int]
    dead_letters: int
    report_queue_depth: int


async def session_status(r: Redis, cfg: SessionConfig) -> SessionStatus:
    """Every child's state, last seen time, queue depth and in-flight task; task counts by state."""
    keys = cfg.keys
    async with r.pipeline(transaction=False) as pipe:
        for n in cfg.child_ids:
            pipe.exists(keys.presence(n))
            pipe.llen(keys.tasks(n))
            pipe.lrange(keys.inflight(n), 0, 0)
        pipe.hgetall(keys.last_seen)
        pipe.zrange(keys.task_index, 0, -1)
        pipe.llen(keys.dead)
        for queue in sorted({cfg.report_queue(n) for n in cfg.child_ids}):
            pipe.llen(queue)
        replies = await pipe.execute()
    per_child = [replies[i * 3 : i * 3 + 3] for i in range(cfg.max_children)]
    last_seen, task_ids, dead, *report_depths = replies[cfg.max_children * 3 :]
    async with r.pipeline(transaction=False) as pipe:
        for t in task_ids:
            pipe.hget(keys.task(t), "state")
        states = await pipe.execute()
    counts: dict[str, int] = dict.fromkeys(TASK_STATES, 0)
    for state in states:
        if state is not None:
            counts[state] = counts.get(state, 0) + 1
    children = []
    for n, (online, depth, inflight) in zip(cfg.child_ids, per_child, strict=True):
        task_id = _task_id_of(inflight[0]) if inflight else None
        seen = last_seen.get(str(n))
        children.append(
            ChildStatus(
                child_id=n,
                state="offline" if not online else ("working" if task_id else "idle"),
                online=bool(online),
                last_seen=_iso_from_ms(int(seen)) if seen else None,
                queue_depth=int(depth),
                in_flight_task=task_id,
            )
        )
    return SessionStatus(
        session_id=cfg.session_id, mode=cfg.mode, children=children, tasks=counts, dead_letters=int(dead),
        report_queue_depth=sum(int(d) for d in report_depths),
    )  # fmt: skip


def _task_id_of(raw: str) -> str | None:
    try:
        msg = parse_message(raw)
    except MessageError:
        return None
    return msg.task_id if isinstance(msg, TaskMessage) else None


def _iso_from_ms(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat()


def presence_token() -> str:
    """A token unique to this process and moment, to tell our presence claim from another's."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"


__all__ = [
    "SessionKeys",
    "TaskRecord",
]
