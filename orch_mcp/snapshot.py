"""A point-in-time view of one session for people (`orch-mcp status`, `orch-mcp watch`).

`take_snapshot` reads everything a monitor shows in a few round trips: each child's state (idle,
working on a task since when, offline), queue depths, task counts, the latest status events.
`wait_for_events` blocks on the session's status stream (XREAD BLOCK), so a live view redraws
when something happens instead of polling.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import cast

from pydantic import BaseModel

from . import delivery
from .delivery.common import RAW
from .delivery.records import parse_record
from .delivery.status import ChildStatus
from .errors import DamagedRecordError
from .redis_client import Redis, StreamEntries
from .sessions import SessionConfig


class ChildView(ChildStatus):
    """One child as a monitor shows it: what session_status says, and what it is working on since when."""

    in_flight_prompt: str | None = None
    working_since: str | None = None
    working_for_s: float | None = None
    finished: int = 0

    @property
    def description(self) -> str:
        """`idle`, `working on <task> for N s`, or `offline` (with the task it left in flight)."""
        if self.state == "working" and self.in_flight_task:
            since = f" for {self.working_for_s:.0f} s" if self.working_for_s is not None else ""
            return f"working on {self.in_flight_task[:8]}{since}"
        if self.state == "offline" and self.in_flight_task:
            return f"offline, {self.in_flight_task[:8]} in flight"
        return self.state


class EventView(BaseModel):
    """One entry of the status stream."""

    id: str
    at: str | None
    state: str
    child_id: int | None
    task_id: str | None
    detail: str | None


class SessionSnapshot(BaseModel):
    """Everything `status` prints and `watch` draws, at one moment."""

    session_id: str
    mode: str
    prefix: str
    namespace: str
    max_children: int
    created_at: str
    alive: bool
    ttl_left_s: int | None
    taken_at: str
    children: list[ChildView]
    tasks: dict[str, int]
    queued: int
    in_flight: int
    finished: int
    report_queue_depth: int
    dead_letters: int
    events: list[EventView]
    last_event_id: str | None


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _event(entry: dict[str, str]) -> EventView:
    child = entry.get("child_id") or ""
    return EventView(
        id=entry["id"],
        at=entry.get("at") or None,
        state=entry.get("state", "?"),
        child_id=int(child) if child.isdigit() else None,
        task_id=entry.get("task_id") or None,
        detail=entry.get("detail") or None,
    )


async def take_snapshot(r: Redis, cfg: SessionConfig, *, events: int = 10) -> SessionSnapshot:
    """Read the session's state now: children, queues, task counts and the latest `events` status events."""
    keys = cfg.keys
    status = await delivery.session_status(r, cfg)
    latest = await delivery.recent_events(r, cfg, max(events, 1))
    working = [(c.child_id, c.in_flight_task) for c in status.children if c.in_flight_task]
    async with r.pipeline(transaction=False) as pipe:
        pipe.ttl(keys.config)
        for child_id, task_id in working:
            pipe.execute_command("HGET", keys.records(child_id), task_id, **RAW)
        ttl, *texts = await pipe.execute()
    records: dict[str, tuple[str | None, str | None]] = {}
    for (_, task_id), text in zip(working, texts, strict=True):
        try:
            record = parse_record(task_id, text)
        except DamagedRecordError:
            record = None
        records[task_id] = (record.prompt, record.started_at) if record is not None else (None, None)
    now = datetime.now(timezone.utc)
    children = []
    for c in status.children:
        prompt, started = records.get(c.in_flight_task or "", (None, None))
        since = _parse_time(started)
        children.append(
            ChildView(
                **c.model_dump(),
                in_flight_prompt=prompt,
                working_since=started,
                working_for_s=round((now - since).total_seconds(), 1) if since else None,
                finished=status.finished_by_child.get(str(c.child_id), 0),
            )
        )
    counts = status.tasks
    return SessionSnapshot(
        session_id=cfg.session_id,
        mode=cfg.mode,
        prefix=cfg.prefix,
        namespace=cfg.namespace,
        max_children=cfg.max_children,
        created_at=cfg.created_at,
        alive=ttl != -2,
        ttl_left_s=ttl if ttl >= 0 else None,
        taken_at=now.isoformat(),
        children=children,
        tasks=counts,
        queued=counts.get("queued", 0),
        in_flight=counts.get("working", 0),
        finished=sum(counts.get(s, 0) for s in delivery.FINISHED),
        report_queue_depth=status.report_queue_depth,
        dead_letters=status.dead_letters,
        events=[_event(e) for e in latest[:events]] if events > 0 else [],
        last_event_id=latest[0]["id"] if latest else None,
    )


async def wait_for_events(r: Redis, cfg: SessionConfig, after: str | None, block_ms: int) -> list[EventView]:
    """Block up to `block_ms` for status events newer than stream id `after` (None: from the start), oldest first."""
    reply = cast(
        "list[tuple[str, StreamEntries]]",
        await r.xread({cfg.keys.status: after or "0-0"}, count=1000, block=max(1, block_ms)),
    )
    if not reply:
        return []
    _, entries = reply[0]
    return [_event({"id": entry_id, **fields}) for entry_id, fields in entries]
