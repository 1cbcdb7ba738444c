"""The tools' output models (their output schemas) and the argument types several tools share."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from ..delivery import OfflineChild, Outstanding, TaskRecord, age_s
from ..sessions import SessionConfig
from .settings import MAX_WAIT_S


class SessionInfo(BaseModel):
    """A session and the names of its queues, channel and stream."""

    session_id: str
    mode: str
    prefix: str
    namespace: str
    max_children: int
    ttl_s: int
    created_at: str
    task_queues: dict[str, str] = Field(description="child id -> its task queue")
    report_queues: dict[str, str] = Field(description="child id -> the queue its reports go to")
    monitor_channel: str | None = Field(description="pub/sub channel mirroring state changes (summoner mode)")
    status_stream: str
    dead_letters: str

    @classmethod
    def of(cls, cfg: SessionConfig) -> SessionInfo:
        return cls.model_validate(cfg.to_dict())


class SessionList(BaseModel):
    """The live sessions of the namespace, oldest first."""

    namespace: str
    current: str | None = Field(description="the session the moogle and chocobos use unless set to another one")
    sessions: list[SessionInfo]


class Cleanup(BaseModel):
    """What cleanup_session removed."""

    session_id: str
    prefix: str
    removed_keys: list[str]
    removed_count: int


class SentTask(BaseModel):
    """A task queued by send_task."""

    task_id: str
    child_id: int
    session_id: str
    priority: int
    created_at: str


class Report(BaseModel):
    """A child's report on one task."""

    task_id: str
    child_id: int
    status: Literal["done", "failed"]
    result: str
    error: str | None = None
    created_at: str


class ReportWait(BaseModel):
    """What wait_for_report found: a report, nothing yet (timeout), or that none can come (idle)."""

    status: Literal["report", "timeout", "idle"] = Field(
        description='"report": one came; "timeout": none yet, call again; "idle": nothing is queued, working or '
        "waiting, so none can come until you send_task (all reports are in: shutdown)"
    )
    report: Report | None = None
    outstanding: Outstanding = Field(description="what is still to come after this answer")
    session_id: str
    waited_s: float
    offline: list[OfflineChild] = Field(
        default_factory=list, description="children gone a while with work in their queue or in flight: requeue_task"
    )


class Shutdown(BaseModel):
    """Which children were told to stop."""

    told: list[int]
    now: bool
    reason: str | None = Field(default=None, description="the reason the children are given")
    session_id: str


class TaskInfo(BaseModel):
    """A task as the child receives it."""

    task_id: str
    prompt: str
    context: dict[str, Any]
    priority: int
    created_at: str
    delivery_count: int = Field(description="how many times a child has taken this task, this time included")


class YourQueue(BaseModel):
    """What waits for a chocobo after this answer."""

    queued: int = Field(description="messages waiting in your queue (tasks, or a shutdown)")


class TaskWait(BaseModel):
    """What wait_for_task found: a task, a shutdown order, or nothing before the timeout."""

    status: Literal["task", "shutdown", "timeout"]
    task: TaskInfo | None = None
    reason: str | None = Field(default=None, description="why the parent asked to stop (shutdown only)")
    cancelled: list[str] = Field(
        default_factory=list, description="your tasks the parent cancelled since your last call: drop them"
    )
    outstanding: YourQueue
    child_id: int
    session_id: str
    waited_s: float


class TaskView(TaskRecord):
    """A task's record, with how long ago each of its times was (seconds, on the Redis clock)."""

    created_ago_s: float | None = Field(default=None, description="seconds since send_task")
    started_ago_s: float | None = Field(default=None, description="seconds since a child last took it")
    finished_ago_s: float | None = Field(default=None, description="seconds since it was reported or cancelled")

    @classmethod
    def of(cls, rec: TaskRecord, now_ms: int) -> TaskView:
        return cls(
            **rec.model_dump(),
            created_ago_s=age_s(now_ms, rec.created_at),
            started_ago_s=age_s(now_ms, rec.started_at),
            finished_ago_s=age_s(now_ms, rec.finished_at),
        )


# ---------------------------------------------------------------- argument types

SessionIdArg = Annotated[
    str,
    Field(description="A session id as init_session or list_sessions returned it, or 'current' for the latest."),
]
OptionalSessionIdArg = Annotated[
    str | None,
    Field(description="A session id, or omit it for this server's session (the namespace's current one)."),
]
TaskIdArg = Annotated[str, Field(description="The task_id that send_task (or wait_for_task) returned.")]
TimeoutArg = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_WAIT_S,
        description=f"Seconds to block at most (0-{MAX_WAIT_S:g}; 0 checks once without waiting). "
        'On "timeout", simply call again.',
    ),
]

#: The states a task can be in (TaskState's values), inline in the input schema (no $ref for clients to resolve).
TaskStateName = Literal["queued", "working", "done", "failed", "cancelled"]
TaskStateArg = Annotated[TaskStateName | None, Field(description="Only tasks in this state; omit for every state.")]
