"""A session's children and task counts in a few commands, whatever its history (counts kept by the scripts)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

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
    state: ChildState = Field(
        description="working (on in_flight_task), idle (online, nothing to do), stopped (it took its shutdown), "
        "offline (no live server serves it)"
    )
    online: bool = Field(description="whether a live orch-mcp server serves this child now")
    last_seen: str | None = Field(description="when the child last took, reported or renewed its claim (UTC)")
    last_seen_ago_s: float | None = Field(default=None, description="how many seconds ago that was")
    queue_depth: int = Field(description="messages waiting in its queue")
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
        pipe.execute_command("TIME")  # not pipe.time(): redis-py's cluster pipeline refuses that method
        for queue in report_queues:
            pipe.llen(queue)
        replies = await pipe.execute()
    per_child = [replies[i * 3 : i * 3 + 3] for i in range(cfg.max_children)]
    last_seen, counts, stopped, dead, now, *report_depths = replies[cfg.max_children * 3 :]
    now_ms = _ms(now)
    children = []
    for n, (online, depth, first) in zip(cfg.child_ids, per_child, strict=True):
        task_id = _task_id_of(first)
        seen = last_seen.get(str(n))
        seen_ms = int(seen) if seen and seen.isdigit() else None
        state: ChildState
        if task_id:
            state = "working" if online else "offline"
        elif str(n) in stopped:  # it took its shutdown: stopped, whether its server still runs or not
            state = "stopped"
        else:
            state = "idle" if online else "offline"
        children.append(
            ChildStatus(
                child_id=n,
                state=state,
                online=bool(online),
                last_seen=iso_from_ms(seen_ms) if seen_ms is not None else None,
                last_seen_ago_s=age_s(now_ms, seen_ms),
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


def _ms(time_reply: tuple[int, int]) -> int:
    """Redis TIME's (seconds, microseconds) as milliseconds since the epoch."""
    seconds, micros = time_reply
    return int(seconds) * 1000 + int(micros) // 1000


async def server_ms(r: Redis) -> int:
    """The Redis server's clock (the clock every stamp of a session comes from), in ms since the epoch."""
    return _ms(await r.time())


def age_s(now_ms: int, then: int | str | None) -> float | None:
    """Seconds from `then` (ms since the epoch, or ISO 8601 text) to `now_ms`, to 0.1 s; None without `then`."""
    if then is None:
        return None
    if isinstance(then, str):
        try:
            stamp = datetime.fromisoformat(then)
        except ValueError:
            return None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        then = int(stamp.timestamp() * 1000)
    return round(max(0, now_ms - then) / 1000, 1)


class Outstanding(BaseModel):
    """What a moogle can still expect from its session: tasks queued or working, and reports not collected yet."""

    queued: int = Field(description="tasks waiting in the children's queues")
    working: int = Field(description="tasks a child is working on")
    reports_waiting: int = Field(description="reports in, not collected yet: the next wait_for_report returns one")
    done: int = Field(description="tasks reported done (collected or not)")
    failed: int = Field(description="tasks reported failed (collected or not)")
    cancelled: int = Field(description="tasks cancelled with cancel_task (they send no report)")

    @property
    def nothing_left(self) -> bool:
        """Nothing queued, working or waiting: no report can come until new work is sent."""
        return self.queued == self.working == self.reports_waiting == 0

    @property
    def sent(self) -> int:
        """Every task of the session, whatever its state."""
        return self.queued + self.working + self.done + self.failed + self.cancelled


async def outstanding(r: Redis, cfg: SessionConfig, *, returned: int = 0) -> Outstanding:
    """The session's outstanding counts, read at one moment (MULTI): `returned` reports just handed to the moogle
    (still in its in-flight list until its next wait acknowledges them) are not counted as waiting."""
    keys = cfg.keys
    report_queues = sorted({cfg.report_queue(n) for n in cfg.child_ids})
    async with r.pipeline(transaction=True) as pipe:
        pipe.hmget(keys.counts, list(TASK_STATES))
        pipe.llen(keys.reports_inflight)
        for queue in report_queues:
            pipe.llen(queue)
        counts, in_flight, *depths = await pipe.execute()
    n = dict(zip(TASK_STATES, (max(0, int(c or 0)) for c in counts), strict=True))
    return Outstanding(
        queued=n["queued"],
        working=n["working"],
        reports_waiting=sum(int(d) for d in depths) + max(0, int(in_flight) - returned),
        done=n["done"],
        failed=n["failed"],
        cancelled=n["cancelled"],
    )
