"""The parent's side of delivery: send tasks and shutdowns, read and cancel tasks, take reports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from ..errors import (
    ConflictError,
    DamagedRecordError,
    InvalidIdentifierError,
    LimitError,
    MessageError,
    NotFoundError,
)
from ..messages import ReportMessage, ShutdownMessage, TaskMessage, parse_message
from ..redis_client import MAX_BLOCK_SLICE_S, Redis, sliced_wait
from ..sessions import SessionConfig, check_child, touch_session
from ..utils import validate_identifier
from . import scripts, scripts_recovery
from .child import MIN_BLOCK_S
from .common import RAW, bury, check_size
from .records import TaskRecord, new_record, parse_record
from .types import OnSlice

#: Deliveries without a report before a task fails (send_task's default).
DEFAULT_MAX_DELIVERIES = 5
#: The longest deadline a task can be sent with.
MAX_DEADLINE_S = 7 * 24 * 3600.0


async def send_task(
    r: Redis,
    cfg: SessionConfig,
    child_id: int,
    prompt: str,
    context: dict[str, Any] | None = None,
    priority: int = 0,
    *,
    max_bytes: int,
    deadline_s: float | None = None,
    max_deliveries: int = DEFAULT_MAX_DELIVERIES,
) -> TaskMessage:
    """Queue a task for child `child_id` and record it (state `queued`), in one step.

    `deadline_s`: how long one delivery may take (pushed by the child's heartbeat) before the reaper takes
    the task back; `max_deliveries`: deliveries without a report before the task fails.
    """
    check_child(cfg, child_id)
    if deadline_s is not None and not 0 < deadline_s <= MAX_DEADLINE_S:
        raise InvalidIdentifierError(f"deadline_s must be between 0 and {MAX_DEADLINE_S:g} seconds, got {deadline_s!r}")
    if isinstance(max_deliveries, bool) or not 1 <= max_deliveries <= 100:
        raise InvalidIdentifierError(f"max_deliveries must be between 1 and 100, got {max_deliveries!r}")
    context = context or {}
    try:
        context_json = json.dumps(context)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"context must be a JSON object of plain values: {exc}") from None
    check_size(
        "the task (prompt + context)",
        len(prompt.encode("utf-8", "surrogatepass")) + len(context_json.encode()),
        max_bytes,
        "shorten it or pass large data by reference (a file path or URL)",
    )
    task = TaskMessage.create(prompt, cfg.session_id, child_id, context=context, priority=priority)
    raw = task.to_json()
    keys = cfg.keys
    await scripts.SEND(
        r,
        cfg,
        [
            keys.records(child_id),
            keys.task_child,
            keys.counts,
            keys.tasks(child_id),
            keys.inflight(child_id),
            keys.stopped,
            keys.status,
        ],
        [
            child_id,
            task.task_id,
            raw,
            task.priority,
            new_record(task, raw, deadline_s=deadline_s, max_deliveries=max_deliveries),
        ],
    )
    await touch_session(r, cfg)
    return task


async def send_shutdown(
    r: Redis, cfg: SessionConfig, child_id: int | None = None, *, now: bool = False, reason: str | None = None
) -> list[int]:
    """Tell one child (or all): behind its pending tasks, or at the front with `now`. Returns who was told."""
    targets = [check_child(cfg, child_id)] if child_id is not None else list(cfg.child_ids)
    msg = ShutdownMessage.create(cfg.session_id, child_id=child_id, reason=reason).to_json()
    keys = [cfg.keys.status, *(cfg.keys.tasks(n) for n in targets)]
    await scripts.SHUTDOWN(r, cfg, keys, [msg, "1" if now else "0", *targets])
    return targets


async def find_child(r: Redis, cfg: SessionConfig, task_id: str) -> int:
    """The child a task belongs to; NotFoundError if the session has no such task."""
    validate_identifier(task_id, "task id")
    owner = await r.execute_command("HGET", cfg.keys.task_child, task_id, **RAW)
    if owner is not None and not owner.isdigit():
        raise DamagedRecordError(f"the child index of task {task_id!r} is damaged; send the task again")
    if owner is None:
        raise NotFoundError(
            f"no task {task_id!r} in session {cfg.session_id!r} (it may have expired); "
            "check the id returned by send_task"
        )
    return int(owner)


async def get_task(r: Redis, cfg: SessionConfig, task_id: str) -> TaskRecord:
    """The record of `task_id`; NotFoundError if the session has no such task, DamagedRecordError if unreadable."""
    child_id = await find_child(r, cfg, task_id)
    record = parse_record(task_id, await read_record(r, cfg, child_id, task_id))
    if record is None:
        raise NotFoundError(f"task {task_id!r} has no record in session {cfg.session_id!r} (it may have expired)")
    return record


async def read_record(r: Redis, cfg: SessionConfig, child_id: int, task_id: str) -> bytes | None:
    """The stored record of a task, as its exact bytes (parse_record decodes them strictly)."""
    text: bytes | None = await r.execute_command("HGET", cfg.keys.records(child_id), task_id, **RAW)
    return text


async def cancel_task(r: Redis, cfg: SessionConfig, task_id: str) -> TaskRecord:
    """Withdraw a queued task, or mark a working one cancelled (its child learns it at its next call)."""
    child_id = await find_child(r, cfg, task_id)
    keys = cfg.keys
    outcome = await scripts.CANCEL(
        r,
        cfg,
        [keys.records(child_id), keys.task_child, keys.counts, keys.tasks(child_id), keys.status, keys.leases],
        [child_id, task_id],
    )
    if outcome[0] == "finished":
        raise ConflictError(f"task {task_id!r} is already {outcome[1]}, so it can no longer be cancelled")
    if outcome[0] != "ok":
        await get_task(r, cfg, task_id)  # raises the matching error (gone, damaged)
    return await get_task(r, cfg, task_id)


async def requeue_task(r: Redis, cfg: SessionConfig, task_id: str, child_id: int | None = None) -> TaskRecord:
    """Deliver a queued, working or failed task anew, at the front of `child_id`'s queue (default: its own child).

    The old delivery is over: its child's late report or heartbeat is refused as stale.
    """
    keys = cfg.keys
    for _ in range(3):  # the record may change between the read and the script: read it again
        old = await find_child(r, cfg, task_id)
        new = old if child_id is None else check_child(cfg, child_id)
        stored = await read_record(r, cfg, old, task_id)
        record = parse_record(task_id, stored)
        if record is None or stored is None:
            break
        recorded = json.loads(stored)["msg"]
        moved = TaskMessage.model_validate_json(recorded).model_copy(update={"child_id": new}).to_json()
        outcome = await scripts_recovery.REQUEUE(
            r,
            cfg,
            [
                keys.records(old),
                keys.records(new),
                keys.task_child,
                keys.counts,
                keys.tasks(old),
                keys.inflight(old),
                keys.tasks(new),
                keys.inflight(new),
                keys.leases,
                keys.stopped,
                keys.status,
            ],
            [task_id, old, new, recorded, moved],
        )
        if outcome[0] == "ok":
            await touch_session(r, cfg)
            return await get_task(r, cfg, task_id)
        if outcome[0] == "finished":
            raise ConflictError(f"task {task_id!r} is already {outcome[1]}: there is nothing to requeue")
        if outcome[0] == "damaged":
            break
    return await get_task(r, cfg, task_id)  # raises what is wrong (gone, damaged)


# ---------------------------------------------------------------- reports


async def take_report(
    r: Redis,
    cfg: SessionConfig,
    timeout: float | None,
    *,
    ack: bytes | None = None,
    slice_s: float = MAX_BLOCK_SLICE_S,
    on_slice: OnSlice | None = None,
    max_bytes: int | None = None,
    stop_when_idle: bool = False,
) -> tuple[ReportMessage, bytes] | None:
    """Wait up to `timeout` s for the next report; returns it with its exact bytes (pass them as `ack` next time).

    A report moves atomically into `<prefix>:reports:inflight` and stays there until acknowledged by
    the next call, so a wait cancelled at any moment gets it again. The oldest report comes first, in
    both modes. Whatever on the way is not a valid report of this session goes to the dead letters.
    With `stop_when_idle`, it returns None at once when no report can come: no task queued or working
    and none waiting (see `outstanding` to tell that from a timeout).
    """
    unacked = ack
    sweep = cfg.mode == "normal"  # reports pushed by hand onto a child's queue (no doorbell) are found once a call

    async def attempt(seconds: float) -> tuple[ReportMessage, bytes] | _Idle | None:
        nonlocal unacked, sweep
        if on_slice is not None:
            await on_slice()
        await touch_session(r, cfg)
        # First what is already in flight (taken by a wait that was cancelled, or put back by restore_report),
        # then, in summoner mode, the oldest waiting report, which the same round trip moved in behind them.
        look = await _first_look(r, cfg, unacked, counts=stop_when_idle)
        unacked = None
        for raw in look.reports:
            found = await _accept_report(r, cfg, raw, max_bytes)
            if found is not None:
                return found
        active = look.active if stop_when_idle else 1
        for block in (None, seconds) if seconds >= MIN_BLOCK_S else (None,):
            if block is not None or not look.drained:  # a look that found the queue empty needs no second one
                while (moved := await _move_report(r, cfg, block, sweep)) is not None:
                    sweep, block = False, None
                    found = await _accept_report(r, cfg, moved, max_bytes)
                    if found is not None:
                        return found
            if active == 0:
                return _IDLE
        return None

    found = await sliced_wait(attempt, timeout, slice_s, min_block_s=MIN_BLOCK_S)
    if unacked is not None:  # the wait ended before its first look
        await r.lrem(cfg.keys.reports_inflight, 1, unacked)
    return found if isinstance(found, tuple) else None  # None: timed out, or idle


class _Idle:
    """What a wait's attempt returns when no report can come: it ends the wait early."""


_IDLE = _Idle()


@dataclass
class _Look:
    """What the first look of a wait's slice found."""

    #: The reports in flight before the look, then the one it moved in (summoner mode), oldest first.
    reports: list[bytes]
    #: Tasks queued or working (from the counts the transition scripts keep), when asked for.
    active: int
    #: Summoner mode: no report was waiting (a non-blocking move now would find none either).
    drained: bool


async def _first_look(r: Redis, cfg: SessionConfig, ack: bytes | None, *, counts: bool) -> _Look:
    """In one round trip: acknowledge `ack`, read the parent's in-flight reports, the active count (with `counts`),
    and in summoner mode move the oldest waiting report into the in-flight list behind them.

    The counts are read before the move: a report that arrives after this read comes from a task counted here
    as working, so "nothing active, and no report found next" means none can come.
    """
    keys = cfg.keys
    move = cfg.mode == "summoner"
    async with r.pipeline(transaction=False) as pipe:
        if ack is not None:
            pipe.lrem(keys.reports_inflight, 1, cast(Any, ack))  # its exact bytes (redis-py annotates str)
        pipe.execute_command("LRANGE", keys.reports_inflight, 0, -1, **RAW)
        if counts:
            pipe.hmget(keys.counts, ["queued", "working"])
        if move:
            pipe.execute_command("LMOVE", keys.reports, keys.reports_inflight, "LEFT", "RIGHT", **RAW)
            pipe.expire(keys.reports_inflight, cfg.ttl_s)
        replies = await pipe.execute()
    replies = replies[1:] if ack is not None else replies
    reports: list[bytes] = list(replies[0])
    active = 1
    if counts:
        queued, working = replies[1]
        active = max(0, int(queued or 0)) + max(0, int(working or 0))
    moved = replies[1 + counts] if move else None
    if moved is not None:
        reports.append(bytes(moved))
    return _Look(reports, active, drained=move and moved is None)


async def restore_report(r: Redis, cfg: SessionConfig, raw: bytes) -> None:
    """Deliver again a report whose wait was cancelled after the report had been acknowledged."""
    await scripts_recovery.RESTORE_REPORT(r, cfg, [cfg.keys.reports_inflight], [raw])


async def _move_report(r: Redis, cfg: SessionConfig, block: float | None, sweep: bool) -> bytes | None:
    """Move the oldest waiting report into the in-flight list (blocking up to `block` s) and return it."""
    keys = cfg.keys
    if cfg.mode == "summoner":
        move = ("LMOVE",) if block is None else ("BLMOVE",)
        async with r.pipeline(transaction=False) as pipe:
            wait = () if block is None else (block,)
            pipe.execute_command(*move, keys.reports, keys.reports_inflight, "LEFT", "RIGHT", *wait, **RAW)
            pipe.expire(keys.reports_inflight, cfg.ttl_s)
            moved, _ = await pipe.execute()
        return None if moved is None else bytes(moved)
    while True:
        head = await r.execute_command("LINDEX", keys.doorbell, 0, **RAW)
        if head is None and sweep:
            sweep = False
            if await _sweep_reports(r, cfg):
                return await _newest_in_flight(r, cfg)
        if head is None and block is not None:
            head = await r.execute_command("BLMOVE", keys.doorbell, keys.doorbell, "LEFT", "LEFT", block, **RAW)
            block = None
        if head is None:
            return None
        child_id = _doorbell_child(cfg, head)
        if child_id is None:
            await bury(r, cfg, keys.doorbell, head, "not a child id of this session on the report doorbell")
            continue
        outcome = await scripts.MOVE_REPORT(
            r, cfg, [keys.doorbell, keys.child_reports(child_id), keys.reports_inflight], [child_id, "1"]
        )
        if outcome[0] == "moved":
            return await _newest_in_flight(r, cfg)


async def _newest_in_flight(r: Redis, cfg: SessionConfig) -> bytes | None:
    raw: bytes | None = await r.execute_command("LINDEX", cfg.keys.reports_inflight, -1, **RAW)
    return raw


async def _sweep_reports(r: Redis, cfg: SessionConfig) -> bool:
    """Normal mode: move a report that sits on a child's queue without a doorbell entry (pushed by hand)."""
    keys = cfg.keys
    async with r.pipeline(transaction=False) as pipe:
        for n in cfg.child_ids:
            pipe.llen(keys.child_reports(n))
        depths = await pipe.execute()
    for n, depth in zip(cfg.child_ids, depths, strict=True):
        if depth:
            outcome = await scripts.MOVE_REPORT(
                r, cfg, [keys.doorbell, keys.child_reports(n), keys.reports_inflight], [n, "0"]
            )
            if outcome[0] == "moved":
                return True
    return False


def _doorbell_child(cfg: SessionConfig, raw: bytes) -> int | None:
    text = raw.decode("ascii", "replace")
    return int(text) if text.isdigit() and 1 <= int(text) <= cfg.max_children else None


async def _accept_report(
    r: Redis, cfg: SessionConfig, raw: bytes, max_bytes: int | None
) -> tuple[ReportMessage, bytes] | None:
    """The report `raw` if it is a valid report of this session on a reported task; else it goes to the dead letters."""
    try:
        msg = parse_message(raw)
        if not isinstance(msg, ReportMessage):
            raise MessageError(f"a {msg.type} message does not belong on a report queue")
        if msg.session_id != cfg.session_id:
            raise MessageError(f"report for task {msg.task_id} belongs to session {msg.session_id!r}")
        validate_identifier(msg.task_id, "task id")
        if max_bytes is not None:
            size = len(msg.result.encode()) + len((msg.error or "").encode())
            check_size(f"the report on task {msg.task_id}", size, max_bytes, "it was not sent by report")
        if msg.child_id > cfg.max_children:
            raise MessageError(f"report from child {msg.child_id}, but this session has children 1..{cfg.max_children}")
        record = parse_record(msg.task_id, await read_record(r, cfg, msg.child_id, msg.task_id))
        if record is None:
            raise MessageError(f"report for task {msg.task_id}, which child {msg.child_id} never had")
        if record.state not in ("done", "failed"):
            raise MessageError(f"report for task {msg.task_id}, which is {record.state.value}, not reported")
        if (record.state.value, record.result or "", record.error or None) != (
            msg.status,
            msg.result,
            msg.error or None,
        ):
            raise MessageError(f"report for task {msg.task_id} differs from the result recorded for it")
    except (MessageError, ValueError, DamagedRecordError, LimitError) as exc:
        await bury(r, cfg, cfg.keys.reports_inflight, raw, str(exc))
        return None
    return msg, raw
