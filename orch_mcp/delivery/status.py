"""A session's children and task counts in a few commands, whatever its history (counts kept by the scripts)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel

from ..errors import MessageError
from ..messages import TaskMessage, parse_message
from ..redis_client import Redis
from ..sessions import SessionConfig
from .common import RAW
from .records import TASK_STATES

ChildState = Literal["idle", "working", "offline", "stopped"]


class ChildStatus(BaseModel):
    """One child as session_status sees it."""

    child_id: int
    state: ChildState
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
    finished_by_child: dict[str, int]
    dead_letters: int
    report_queue_depth: int


async def session_status(r: Redis, cfg: SessionConfig) -> SessionStatus:
    """Every child's state, last seen time, queue depth and in-flight task; task counts by state."""
    keys = cfg.keys
    report_queues = sorted({cfg.report_queue(n) for n in cfg.child_ids})
    async with r.pipeline(transaction=False) as pipe:
        for n in cfg.child_ids:
            pipe.exists(keys.presence(n))
            pipe.llen(keys.tasks(n))
            pipe.execute_command("LINDEX", keys.inflight(n), 0, **RAW)
        pipe.hgetall(keys.last_seen)
        pipe.hgetall(keys.counts)
        pipe.hgetall(keys.stopped)
        pipe.llen(keys.dead)
        for queue in report_queues:
            pipe.llen(queue)
        replies = await pipe.execute()
    per_child = [replies[i * 3 : i * 3 + 3] for i in range(cfg.max_children)]
    last_seen, counts, stopped, dead, *report_depths = replies[cfg.max_children * 3 :]
    children = []
    for n, (online, depth, first) in zip(cfg.child_ids, per_child, strict=True):
        task_id = _task_id_of(first)
        seen = last_seen.get(str(n))
        state: ChildState = "working" if task_id else ("stopped" if str(n) in stopped else "idle")
        children.append(
            ChildStatus(
                child_id=n,
                state=state if online else "offline",
                online=bool(online),
                last_seen=iso_from_ms(int(seen)) if seen and seen.isdigit() else None,
                queue_depth=int(depth),
                in_flight_task=task_id,
            )
        )
    return SessionStatus(
        session_id=cfg.session_id,
        mode=cfg.mode,
        children=children,
        tasks={s: max(0, int(counts.get(s, 0))) for s in TASK_STATES},
        finished_by_child={k.split(":", 1)[1]: int(v) for k, v in counts.items() if k.startswith("finished:")},
        dead_letters=int(dead),
        report_queue_depth=sum(int(d) for d in report_depths),
    )


def _task_id_of(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        msg = parse_message(raw)
    except MessageError:
        return None
    return msg.task_id if isinstance(msg, TaskMessage) else None


def iso_from_ms(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC text."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat()
