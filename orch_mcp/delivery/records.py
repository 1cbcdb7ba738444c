"""Task records (one JSON value per task in its child's `records:<n>` hash) and dead letters."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

from ..errors import DamagedRecordError, MessageError
from ..messages import TaskMessage, parse_message


class TaskState(str, Enum):
    """Where a task is in its life: queued -> working -> done | failed | cancelled."""

    queued = "queued"
    working = "working"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"

    def __str__(self) -> str:
        return self.value


TASK_STATES: tuple[str, ...] = tuple(s.value for s in TaskState)
FINISHED: tuple[str, ...] = ("done", "failed", "cancelled")


class Attempt(BaseModel):
    """An earlier delivery of a task that ended without its report: how it ended."""

    attempt: int
    outcome: str
    at: str | None = None


class TaskRecord(BaseModel):
    """A task's record: its message, its state and, once reported, its result."""

    task_id: str
    session_id: str
    child_id: int
    state: TaskState
    prompt: str
    context: dict[str, Any]
    priority: int
    delivery_count: int = Field(description="how many times a child took it (a re-take after a crash counts)")
    created_at: str | None = None
    started_at: str | None = Field(default=None, description="when a child last took it")
    finished_at: str | None = None
    result: str | None = None
    error: str | None = None
    deadline_s: float | None = Field(default=None, description="how long one delivery may take before it is taken back")
    lease_until: str | None = Field(
        default=None, description="when the current delivery is taken back, unless heartbeat"
    )
    max_deliveries: int = Field(default=5, description="deliveries without a report before the task fails")
    note: str | None = Field(default=None, description="the child's latest heartbeat note")
    attempts: list[Attempt] = Field(default_factory=list, description="earlier deliveries that ended without a report")


def new_record(task: TaskMessage, raw: str, *, deadline_s: float | None = None, max_deliveries: int = 5) -> str:
    """The record JSON of a task just sent (or adopted from a raw push): state queued."""
    record: dict[str, object] = {
        "task_id": task.task_id,
        "session_id": task.session_id,
        "child_id": task.child_id,
        "state": "queued",
        "msg": raw,
        "delivery_count": 0,
        "created_at": task.created_at.isoformat(),
        "max_deliveries": max_deliveries,
    }
    if deadline_s is not None:
        record["deadline_s"] = deadline_s
    return json.dumps(record, ensure_ascii=False)


def parse_record(task_id: str, text: str | bytes | None) -> TaskRecord | None:
    """The record stored for `task_id` (None if there is none); DamagedRecordError if it cannot be read."""
    if text is None:
        return None
    damaged = DamagedRecordError(
        f"the record of task {task_id!r} is damaged (unreadable in Redis); it cannot be trusted: send the task again"
    )
    try:
        data = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
        if not isinstance(data, dict):
            raise damaged
        task = parse_message(data["msg"])
        if not isinstance(task, TaskMessage) or task.task_id != task_id:
            raise damaged
        return TaskRecord(
            task_id=task_id,
            session_id=task.session_id,
            child_id=task.child_id,
            state=TaskState(data["state"]),
            prompt=task.prompt,
            context=task.context,
            priority=task.priority,
            delivery_count=int(data.get("delivery_count") or 0),
            created_at=_text(data.get("created_at")),
            started_at=_text(data.get("started_at")),
            finished_at=_text(data.get("finished_at")),
            result=_text(data.get("result")),
            error=_text(data.get("error")),
            deadline_s=float(data["deadline_s"]) if data.get("deadline_s") is not None else None,
            lease_until=_iso_ms(data.get("lease_until")),
            max_deliveries=int(data.get("max_deliveries") or 5),
            note=_text(data.get("note")),
            attempts=[Attempt.model_validate(a) for a in data.get("attempts") or []],
        )
    except (KeyError, TypeError, ValueError, MessageError):
        raise damaged from None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _iso_ms(value: object) -> str | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return datetime.fromtimestamp(value / 1000, timezone.utc).isoformat()


class DeadLetter(BaseModel):
    """A message that could not be delivered, as stored in `<prefix>:dead`, with the reason."""

    queue: str
    reason: str
    raw: str = Field(description="the message as text (bytes that are not UTF-8 shown as \\x escapes)")
    raw_base64: str | None = Field(default=None, description="the exact bytes, when they are not UTF-8")
    at: str


def dead_letter_json(queue: str, raw: bytes, reason: str, at: str) -> str:
    """The dead letter for `raw` found on `queue`."""
    try:
        text, exact = raw.decode("utf-8"), None
    except UnicodeDecodeError:
        text, exact = raw.decode("utf-8", "backslashreplace"), base64.b64encode(raw).decode("ascii")
    return DeadLetter(queue=queue, reason=reason, raw=text, raw_base64=exact, at=at).model_dump_json()
