"""A session's tasks, newest first (the moogle's list_tasks), at a cost set by what is asked for, not by the history.

Records sit in one hash per child with no order (decision 1), so the order comes from the status
stream: it is read newest first, page by page, and the records of the tasks it names are read with
HMGET until `limit` tasks in the wanted state are found. The stream keeps about 10,000 events; only
when it runs out before enough tasks are found (a state whose tasks are all older than that) are
the records hashes scanned, reading each record's state and creation time without parsing it.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable
from typing import cast

from pydantic import BaseModel, Field

from ..errors import DamagedRecordError, InvalidIdentifierError
from ..redis_client import Redis, StreamEntries
from ..sessions import SessionConfig
from .common import RAW
from .records import TASK_STATES, TaskRecord, TaskState, parse_record
from .status import age_s

#: list_tasks' default and largest `limit`.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: How much of a prompt a listed task shows.
EXCERPT_CHARS = 160
#: Status events read per page (at least).
_PAGE = 200
#: Records read per HSCAN step of the fallback scan.
_SCAN_COUNT = 1000

_STATE = re.compile(rb'"state":\s*"([a-z]+)"')
_CREATED = re.compile(rb'"created_at":\s*"([^"\\]*)"')


class TaskSummary(BaseModel):
    """One task as list_tasks shows it: its state, child, the start of its prompt and how long ago things happened."""

    task_id: str
    child_id: int
    state: TaskState
    prompt: str = Field(description=f"the prompt's first {EXCERPT_CHARS} characters, on one line")
    delivery_count: int
    created_at: str | None
    created_ago_s: float | None = Field(description="seconds since send_task")
    started_ago_s: float | None = Field(description="seconds since a child last took it")
    finished_ago_s: float | None = Field(description="seconds since it was reported or cancelled")


class TaskListing(BaseModel):
    """The session's tasks, newest first: at most `limit`, in `state` if one was asked for."""

    session_id: str
    state: TaskState | None = Field(description="the state asked for (null: every state)")
    limit: int
    total: int = Field(description="how many of the session's tasks are in that state (in any state if none)")
    counts: dict[str, int] = Field(description="the session's tasks by state")
    tasks: list[TaskSummary]
    damaged: list[str] = Field(default_factory=list, description="ids of tasks whose record cannot be read")


def excerpt(prompt: str, chars: int = EXCERPT_CHARS) -> str:
    """The start of `prompt` on one line."""
    flat = " ".join(prompt.split())
    return flat if len(flat) <= chars else flat[: chars - 1].rstrip() + "…"


def summary(rec: TaskRecord, now_ms: int) -> TaskSummary:
    """A record as list_tasks shows it, ages measured to `now_ms` (the Redis clock)."""
    return TaskSummary(
        task_id=rec.task_id,
        child_id=rec.child_id,
        state=rec.state,
        prompt=excerpt(rec.prompt),
        delivery_count=rec.delivery_count,
        created_at=rec.created_at,
        created_ago_s=age_s(now_ms, rec.created_at),
        started_ago_s=age_s(now_ms, rec.started_at),
        finished_ago_s=age_s(now_ms, rec.finished_at),
    )


async def list_tasks(
    r: Redis, cfg: SessionConfig, state: TaskState | None = None, limit: int = DEFAULT_LIMIT
) -> TaskListing:
    """The session's newest `limit` tasks (in `state`, if given), newest first."""
    if isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidIdentifierError(f"limit must be between 1 and {MAX_LIMIT}, got {limit!r}")
    wanted = {state.value} if state is not None else set(TASK_STATES)
    keys = cfg.keys
    async with r.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.counts, list(TASK_STATES))
        pipe.execute_command("TIME")  # not pipe.time(): redis-py's cluster pipeline refuses that method
        raw_counts, (seconds, micros) = await pipe.execute()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    counts = {s: max(0, int(c or 0)) for s, c in zip(TASK_STATES, raw_counts, strict=True)}
    total = sum(counts[s] for s in wanted)
    want = min(limit, total)
    found: dict[str, TaskRecord] = {}
    damaged: list[str] = []
    seen: set[str] = set()
    cursor = "+"
    while len(found) < want:
        count = max(_PAGE, 2 * (want - len(found)))
        page = cast(StreamEntries, await r.xrevrange(keys.status, max=cursor, min="-", count=count))
        if page:
            cursor = f"({page[-1][0]}"
            named = [f.get("task_id") or "" for _, f in page]
            fresh = [t for t in dict.fromkeys(named) if t and t not in seen]
            seen.update(fresh)
            await _read(r, cfg, fresh, wanted, found, damaged)
        if len(page) < count:  # the stream's start: older tasks only the records hashes know
            if len(found) < want:
                await _scan(r, cfg, wanted, want - len(found), seen, found, damaged)
            break
    newest = sorted(found.values(), key=lambda rec: rec.created_at or "", reverse=True)[:limit]
    return TaskListing(
        session_id=cfg.session_id,
        state=state,
        limit=limit,
        total=total,
        counts=counts,
        tasks=[summary(rec, now_ms) for rec in newest],
        damaged=damaged,
    )


async def _read(
    r: Redis,
    cfg: SessionConfig,
    task_ids: list[str],
    wanted: set[str],
    found: dict[str, TaskRecord],
    damaged: list[str],
) -> None:
    """Read the records of `task_ids` (two round trips) and keep those in a wanted state."""
    if not task_ids:
        return
    owners = await r.hmget(cfg.keys.task_child, task_ids)
    by_child: dict[int, list[str]] = {}
    for task_id, owner in zip(task_ids, owners, strict=True):
        if owner is not None and owner.isdigit():
            by_child.setdefault(int(owner), []).append(task_id)
    await _read_records(r, cfg, by_child.items(), wanted, found, damaged)


async def _read_records(
    r: Redis,
    cfg: SessionConfig,
    by_child: Iterable[tuple[int, list[str]]],
    wanted: set[str],
    found: dict[str, TaskRecord],
    damaged: list[str],
) -> None:
    groups = list(by_child)
    async with r.pipeline(transaction=False) as pipe:
        for child_id, ids in groups:
            pipe.execute_command("HMGET", cfg.keys.records(child_id), *ids, **RAW)
        replies = await pipe.execute()
    for (_, ids), texts in zip(groups, replies, strict=True):
        for task_id, text in zip(ids, texts, strict=True):
            try:
                rec = parse_record(task_id, text)
            except DamagedRecordError:
                damaged.append(task_id)
                continue
            if rec is not None and rec.state.value in wanted:
                found[task_id] = rec


async def _scan(
    r: Redis,
    cfg: SessionConfig,
    wanted: set[str],
    need: int,
    seen: set[str],
    found: dict[str, TaskRecord],
    damaged: list[str],
) -> None:
    """The fallback: scan every records hash for the newest `need` tasks in a wanted state not seen yet.

    Each record's state and creation time are picked out of its JSON by two regular expressions (the
    task message inside a record is a JSON string, its quotes escaped, so it cannot match them); only
    the chosen records are parsed.
    """
    wanted_bytes = {s.encode() for s in wanted}
    candidates: list[tuple[bytes, str, int]] = []
    for child_id in cfg.child_ids:
        key = cfg.keys.records(child_id)
        cursor = 0
        while True:
            cursor, page = await r.execute_command("HSCAN", key, cursor, "COUNT", _SCAN_COUNT, **RAW)
            for field, text in page.items():
                task_id = field.decode("ascii", "replace")
                if task_id in seen:
                    continue
                state = _STATE.search(text)
                if state is None:
                    damaged.append(task_id)
                elif state.group(1) in wanted_bytes:
                    created = _CREATED.search(text)
                    candidates.append((created.group(1) if created else b"", task_id, child_id))
            if int(cursor) == 0:
                break
    by_child: dict[int, list[str]] = {}
    for _, task_id, child_id in heapq.nlargest(need, candidates):
        by_child.setdefault(child_id, []).append(task_id)
    await _read_records(r, cfg, by_child.items(), wanted, found, damaged)
