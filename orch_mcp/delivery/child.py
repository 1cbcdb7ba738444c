"""The child's side of delivery: take the next task (or shutdown), heartbeat, report its result.

Each call takes the child's presence `token` ('' for a library caller that holds no claim): the
scripts refuse to act for a token that no longer holds the child (FencedError), and a report or
heartbeat names the `attempt` (delivery number) it is about, so a late one is refused as stale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from ..errors import ConflictError, DamagedRecordError, LimitError, MessageError, NotFoundError
from ..messages import ReportMessage, ReportStatus, ShutdownMessage, TaskMessage, parse_message
from ..redis_client import MAX_BLOCK_SLICE_S, Redis, sliced_wait
from ..sessions import SessionConfig, check_child, touch_child
from ..utils import validate_identifier
from . import scripts
from .common import RAW, bury, check_size, read_list
from .records import new_record
from .status import iso_from_ms
from .types import OnSlice

#: A wait shorter than this looks once without a blocking command.
MIN_BLOCK_S = 0.05


class FencedError(ConflictError):
    """This caller's presence token no longer holds the child: another server serves it now."""


class StaleError(ConflictError):
    """A report or heartbeat for an attempt that is over: the task was taken back or given again."""


@dataclass
class Taken:
    """What one take found: a task or a shutdown (or nothing), and the tasks of this child cancelled meanwhile."""

    message: TaskMessage | ShutdownMessage | None
    cancelled: list[str] = field(default_factory=list)
    #: The delivery number of the task taken (its record's delivery_count), to name in report and heartbeat.
    attempt: int = 0
    #: Messages left in the child's queue right after the take, when the take read it (None: not read).
    queued: int | None = None


async def take_task(
    r: Redis,
    cfg: SessionConfig,
    child_id: int,
    timeout: float | None,
    *,
    slice_s: float = MAX_BLOCK_SLICE_S,
    on_slice: OnSlice | None = None,
    token: str = "",
) -> TaskMessage | ShutdownMessage | None:
    """Wait up to `timeout` s for child `child_id`'s next task or shutdown; None on timeout."""
    return (await take(r, cfg, child_id, timeout, slice_s=slice_s, on_slice=on_slice, token=token)).message


async def take(
    r: Redis,
    cfg: SessionConfig,
    child_id: int,
    timeout: float | None,
    *,
    slice_s: float = MAX_BLOCK_SLICE_S,
    on_slice: OnSlice | None = None,
    token: str = "",
    max_bytes: int | None = None,
) -> Taken:
    """Wait up to `timeout` s for child `child_id`'s next task or shutdown.

    A task already in the child's in-flight list (taken before a crash or a cancelled wait, not yet
    reported) comes back first; a shutdown stays there (sticky) until new work is sent. Each message
    moves into the in-flight list atomically (LMOVE/BLMOVE) before it is claimed, so a cancel at any
    moment loses nothing. Messages that are not valid here go to the dead letters.
    """
    check_child(cfg, child_id)
    keys = cfg.keys
    taken = Taken(None)
    try_keys = [keys.tasks(child_id), *_claim_keys(cfg, child_id)]

    async def step() -> TaskMessage | ShutdownMessage | None:
        """Without blocking: settle the in-flight list, else move the next message in and claim it."""
        while True:
            reply = await scripts.TRY_TAKE(r, cfg, try_keys, [child_id, token])
            if reply[0] == "fenced":
                raise fenced_error(cfg, child_id)
            if reply[0] == "ok":
                task = parse_message(reply[2])
                if isinstance(task, TaskMessage):
                    taken.attempt, taken.queued = int(reply[1]), int(reply[3])
                    return task
            elif reply[0] in ("cancelled", "failed"):
                if reply[0] == "cancelled":
                    taken.cancelled.append(reply[1])
                continue
            elif reply[0] == "empty":
                return None
            found, settled = await _settle_inflight(r, cfg, child_id, taken, token, max_bytes)
            if found is not None:
                return found
            if not settled:
                return None  # nothing could be settled (a message changed under us): look again next slice

    async def attempt(seconds: float) -> TaskMessage | ShutdownMessage | None:
        if on_slice is not None:
            await on_slice()
        await touch_child(r, cfg, child_id)
        found = await step()
        if found is not None or seconds < MIN_BLOCK_S:
            return found  # a wait of (nearly) 0 s looks once: a blocking command would take Redis's ~0.1 s tick
        moved = await r.execute_command(
            "BLMOVE", keys.tasks(child_id), keys.inflight(child_id), "LEFT", "RIGHT", seconds, **RAW
        )
        return None if moved is None else await step()

    taken.message = await sliced_wait(attempt, timeout, slice_s, min_block_s=MIN_BLOCK_S)
    return taken


async def queue_depth(r: Redis, cfg: SessionConfig, child_id: int) -> int:
    """How many messages wait in child `child_id`'s queue (tasks, or a shutdown)."""
    return int(await r.llen(cfg.keys.tasks(child_id)))


def _claim_keys(cfg: SessionConfig, child_id: int) -> list[str]:
    """The keys a claim may touch (after the task queue, for TRY_TAKE)."""
    keys = cfg.keys
    return [
        keys.inflight(child_id),
        keys.records(child_id),
        keys.task_child,
        keys.counts,
        keys.last_seen,
        keys.status,
        keys.presence(child_id),
        keys.leases,
        cfg.report_queue(child_id),
        keys.doorbell,
        keys.dead,
    ]


def fenced_error(cfg: SessionConfig, child_id: int) -> FencedError:
    return FencedError(
        f"this server no longer holds child {child_id} of session {cfg.session_id!r}: another orch-mcp server took "
        "it over (this one stopped renewing its claim, for example after a stall); that server has the child's "
        "tasks now - stop here and do not report the task you were working on"
    )


async def _settle_inflight(
    r: Redis, cfg: SessionConfig, child_id: int, taken: Taken, token: str, max_bytes: int | None
) -> tuple[TaskMessage | ShutdownMessage | None, int]:
    """Read the in-flight list and settle each message in order: the first task or shutdown for this child is returned
    (claimed); what does not belong goes to the dead letters. Returns (found, how many were settled)."""
    keys = cfg.keys
    inflight = keys.inflight(child_id)
    settled = 0
    for raw in await read_list(r, inflight):
        try:
            msg = parse_message(raw)
            _check_route(cfg, child_id, msg)
            if isinstance(msg, TaskMessage) and max_bytes is not None:
                size = len(msg.prompt.encode()) + len(json.dumps(msg.context).encode())
                check_size(f"task {msg.task_id} (prompt + context)", size, max_bytes, "it was not sent by send_task")
        except (MessageError, LimitError) as exc:
            await bury(r, cfg, inflight, raw, str(exc))
            settled += 1
            continue
        if isinstance(msg, ShutdownMessage):
            await scripts.STOPPED(r, cfg, [keys.stopped, keys.last_seen, keys.status], [child_id, msg.reason or ""])
            return msg, settled + 1
        if not isinstance(msg, TaskMessage):  # _check_route lets only tasks and shutdowns through
            continue
        outcome = await scripts.CLAIM(
            r, cfg, _claim_keys(cfg, child_id), [child_id, token, raw, msg.task_id, new_record(msg, raw.decode())]
        )
        settled += 1
        if outcome[0] == "fenced":
            raise fenced_error(cfg, child_id)
        if outcome[0] == "ok":
            taken.attempt = int(outcome[1])
            return msg, settled
        if outcome[0] == "cancelled":
            taken.cancelled.append(msg.task_id)
        elif outcome[0] == "refuse":
            await bury(r, cfg, inflight, raw, _refusal(msg, outcome[1], outcome[2]))
    return None, settled


def _refusal(msg: TaskMessage, why: str, detail: str) -> str:
    if why == "other_child":
        return f"task {msg.task_id} belongs to child {detail}, not {msg.child_id}"
    if why == "finished":
        return f"task {msg.task_id} is already {detail}"
    if why == "mismatch":
        return f"task {msg.task_id} differs from the task recorded under that id"
    return f"the record of task {msg.task_id} is damaged"


def _check_route(cfg: SessionConfig, child_id: int, msg: TaskMessage | ReportMessage | object) -> None:
    if isinstance(msg, TaskMessage):
        if msg.child_id != child_id:
            raise MessageError(f"task {msg.task_id} is addressed to child {msg.child_id}, not {child_id}")
        if msg.session_id != cfg.session_id:
            raise MessageError(f"task {msg.task_id} belongs to session {msg.session_id!r}, not {cfg.session_id!r}")
        try:
            validate_identifier(msg.task_id, "task id")
        except ValueError as exc:
            raise MessageError(str(exc)) from None
    elif isinstance(msg, ShutdownMessage):
        if msg.session_id != cfg.session_id:
            raise MessageError(f"a shutdown of session {msg.session_id!r} does not belong to {cfg.session_id!r}")
        if msg.child_id is not None and msg.child_id != child_id:
            raise MessageError(f"a shutdown for child {msg.child_id} does not belong on child {child_id}'s queue")
    else:
        raise MessageError(f"a {getattr(msg, 'type', '?')} message does not belong on a task queue")


class ReportOutcome(BaseModel):
    """Whether a report was recorded: accepted, or a repeat of one already recorded (which changes nothing)."""

    task_id: str
    accepted: bool = Field(description="true: the result is recorded and on its way to the moogle")
    duplicate: bool = Field(default=False, description="true: the task was already reported; nothing changed")
    state: Literal["done", "failed"] = Field(description="the task's recorded outcome")


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
    token: str = "",
    attempt: int = 0,
) -> ReportOutcome:
    """Record the result of a task in flight for child `child_id`, then queue the report (atomically)."""
    check_child(cfg, child_id)
    validate_identifier(task_id, "task id")
    if status not in ("done", "failed"):
        raise MessageError(f"status must be 'done' or 'failed', got {status!r}")
    check_size(
        "the result",
        len(result.encode("utf-8", "surrogatepass")) + len((error or "").encode("utf-8", "surrogatepass")),
        max_bytes,
        "shorten it, or write it to a file and report the path",
    )
    keys = cfg.keys
    report = ReportMessage.create(task_id, cfg.session_id, child_id, result=result, status=status, error=error)
    kind, detail = await scripts.REPORT(
        r,
        cfg,
        [
            keys.records(child_id),
            keys.task_child,
            keys.inflight(child_id),
            keys.counts,
            cfg.report_queue(child_id),
            keys.doorbell,
            keys.last_seen,
            keys.status,
            keys.presence(child_id),
            keys.leases,
        ],
        [
            child_id,
            task_id,
            status,
            result,
            error or "",
            report.to_json(),
            "1" if cfg.mode == "normal" else "0",
            token,
            attempt or "",
        ],
    )
    _refuse(cfg, child_id, task_id, kind, detail, "report")
    state: Literal["done", "failed"] = "failed" if detail == "failed" else "done"
    return ReportOutcome(task_id=task_id, accepted=kind == "ok", duplicate=kind == "duplicate", state=state)


def _refuse(cfg: SessionConfig, child_id: int, task_id: str, kind: str, detail: str, what: str) -> None:
    """Raise the error for a report or heartbeat the script refused (nothing for 'ok' or 'duplicate')."""
    if kind == "fenced":
        raise fenced_error(cfg, child_id)
    if kind == "unknown":
        raise NotFoundError(f"no task {task_id!r} in this session: {what} only task ids you got from wait_for_task")
    if kind == "other_child":
        raise StaleError(
            f"task {task_id!r} belongs to child {detail}, not to you (child {child_id}): report only your own tasks "
            "(if it was yours, the parent gave it to another child: drop it and call wait_for_task)"
        )
    if kind == "cancelled":
        raise ConflictError(f"task {task_id!r} was cancelled by the parent; drop it and call wait_for_task again")
    if kind == "stale":
        raise StaleError(
            f"your attempt at task {task_id!r} is over: the task was taken back (its deadline passed, or the parent "
            f"requeued it; it is {detail} now); drop it and call wait_for_task"
        )
    if kind in ("not_taken", "not_working"):
        raise ConflictError(
            f"task {task_id!r} is not in flight for you (it is {detail}): {what} a task only after wait_for_task "
            "gave it to you, and only once; call wait_for_task"
        )
    if kind == "damaged":
        raise DamagedRecordError(f"the record of task {task_id!r} is damaged; tell the parent, then call wait_for_task")


class Heartbeat(BaseModel):
    """What `heartbeat` did: the task's lease now runs until `lease_until` (None if the task has no deadline)."""

    task_id: str
    lease_until: str | None


async def heartbeat_task(
    r: Redis,
    cfg: SessionConfig,
    child_id: int,
    task_id: str,
    note: str | None = None,
    *,
    token: str = "",
    attempt: int = 0,
) -> Heartbeat:
    """Record progress on a task in flight for child `child_id` and push its deadline, if it has one."""
    check_child(cfg, child_id)
    validate_identifier(task_id, "task id")
    keys = cfg.keys
    kind, detail = await scripts.HEARTBEAT(
        r,
        cfg,
        [
            keys.presence(child_id),
            keys.records(child_id),
            keys.inflight(child_id),
            keys.leases,
            keys.last_seen,
            keys.status,
        ],
        [child_id, token, task_id, attempt or "", (note or "")[:2000]],
    )
    _refuse(cfg, child_id, task_id, kind, detail, "heartbeat")
    return Heartbeat(task_id=task_id, lease_until=iso_from_ms(int(detail)) if detail.isdigit() else None)
