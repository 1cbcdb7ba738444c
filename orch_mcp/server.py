"""The MCP server: one role's tools (summoner, moogle or chocobo) as thin adapters over the core.

`create_server(ServerSettings(role=...))` builds an `MCPServer` that lists only that role's tools.
The Redis client lives in the lifespan (`ServerState`); every tool resolves the session it works on
through the state, calls one core operation and returns a pydantic model (the structured output)
with a short text for the model to read. The project's errors become `ToolError`s, so their
message - what was wrong and what to do - reaches the model.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, ParamSpec, get_args

import anyio
import anyio.abc
import redis.exceptions as rexc
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from . import __version__, delivery, sessions
from .agents import AsyncChild, AsyncParent, find_session
from .config import OrchConfig
from .delivery import ReportOutcome, SessionStatus, TaskRecord
from .errors import ConfigError, InvalidIdentifierError, NotFoundError, OrchError
from .keys import NamespaceKeys
from .messages import ShutdownMessage
from .redis_client import Redis, block_slice, create_client, redis_errors
from .sessions import MAX_CHILDREN_LIMIT, SessionConfig
from .utils import validate_identifier

log = logging.getLogger(__name__)

Role = Literal["summoner", "moogle", "chocobo"]
ROLES: tuple[Role, ...] = get_args(Role)
Transport = Literal["stdio", "http"]
TRANSPORTS: tuple[Transport, ...] = get_args(Transport)

DEFAULT_WAIT_S = 25.0
#: Clients cut tool calls at about 60 s (Codex, Claude Desktop): a wait never asks for more than this.
MAX_WAIT_S = 50.0
#: How often a blocked wait sends a progress notification (one blocking Redis command per interval).
PROGRESS_INTERVAL_S = 2.5
#: A session confirmed to exist less than this long ago is not checked again (see ServerState.current).
SESSION_CHECK_S = 0.25
#: Shortest blocking command: timeout_s=0 means "look once, do not wait".
POLL_S = 0.01


@dataclass(frozen=True)
class ServerSettings:
    """Everything one role's server needs; built by `orch-mcp serve` (or a test) and passed to create_server."""

    role: Role
    orch: OrchConfig = field(default_factory=OrchConfig)
    #: "current": the session the latest init_session of the namespace created (resolved at the first tool call).
    session_id: str = "current"
    #: The chocobo's child id (1..max_children of the session); required for the chocobo role only.
    child_id: int | None = None
    transport: Transport = "stdio"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    #: Length of one blocking slice of a wait, and so the interval between progress notifications.
    progress_interval_s: float = PROGRESS_INTERVAL_S
    #: Calls within this many seconds of the last check that the session exists reuse it unchecked.
    session_check_s: float = SESSION_CHECK_S

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"unknown role {self.role!r}: use one of {', '.join(ROLES)}")
        if self.session_id != "current":
            validate_identifier(self.session_id, "session id")
        if self.role == "chocobo":
            if self.child_id is None:
                raise ConfigError("a chocobo needs its child id: pass --child-id N (or set ORCH_CHILD_ID), N >= 1")
            if isinstance(self.child_id, bool) or not isinstance(self.child_id, int) or self.child_id < 1:
                raise ConfigError(f"invalid child id {self.child_id!r}: use a whole number from 1 up")
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"unknown transport {self.transport!r}: use stdio or http")
        if not 0 < self.http_port < 65536:
            raise ConfigError(f"HTTP port {self.http_port} is out of range: use 1-65535")
        if not self.progress_interval_s > 0:
            raise ConfigError("progress_interval_s must be positive")
        if self.session_check_s < 0:
            raise ConfigError("session_check_s must be 0 or more")

    @property
    def namespace(self) -> str:
        """The namespace the server works in."""
        return self.orch.namespace


# ---------------------------------------------------------------- state held by the lifespan


@dataclass
class ServerState:
    """What lives as long as the server: the Redis client, the resolved session and the role's agent."""

    settings: ServerSettings
    redis: Redis
    background: anyio.abc.TaskGroup
    session: SessionConfig | None = None
    parent: AsyncParent | None = None
    child: AsyncChild | None = None
    _presence: anyio.CancelScope | None = None
    #: Request id of the wait_for_report call that returned the report still unacknowledged.
    _report_request: str | None = None
    _confirmed: float = float("-inf")
    _resolve_lock: anyio.Lock = field(default_factory=anyio.Lock)
    _wait_lock: anyio.Lock = field(default_factory=anyio.Lock)

    @property
    def slice_s(self) -> float:
        """One blocking slice: the progress interval, kept well under the socket timeout."""
        return min(self.settings.progress_interval_s, block_slice(self.settings.orch.redis))

    @property
    def session_id(self) -> str:
        """The resolved session's id, or "" before the first resolution."""
        return self.session.session_id if self.session is not None else ""

    @asynccontextmanager
    async def waiting(self, timeout_s: float) -> AsyncIterator[bool]:
        """Hold the wait lock (one wait at a time per server) if it frees up within timeout_s; yield whether it did."""
        acquired = False
        try:
            self._wait_lock.acquire_nowait()
            acquired = True
        except anyio.WouldBlock:
            with anyio.move_on_after(timeout_s):
                await self._wait_lock.acquire()
                acquired = True
        try:
            yield acquired
        finally:
            if acquired:
                self._wait_lock.release()

    async def current(self) -> SessionConfig:
        """The server's session: resolved at the first call, kept, resolved again only once it no longer exists.

        Its existence is confirmed with one EXISTS per call, except within `session_check_s` of the last
        confirmation: a burst of calls (a script) pays for it once, an agent's calls seconds apart each time.
        """
        cfg = self.session
        if cfg is not None:
            now = time.monotonic()
            if now - self._confirmed < self.settings.session_check_s:
                return cfg
            if await self.redis.exists(cfg.keys.config):
                self._confirmed = now
                return cfg
        async with self._resolve_lock:
            if self.session is not None and self.session is not cfg:
                return self.session  # another call resolved it meanwhile
            try:
                found = await find_session(self.redis, self.settings.namespace, self.settings.session_id)
            except NotFoundError:
                if self.session is not None:  # gone, and nothing to move to: stop serving it (and its claim)
                    log.info("session %s is gone", self.session.session_id)
                    self.session = self.parent = None
                    await self._drop_child()
                raise
            self._confirmed = time.monotonic()
            if self.session is None or found.prefix != self.session.prefix:
                await self._switch(found)
            return found

    async def _switch(self, cfg: SessionConfig) -> None:
        if self.session is not None:
            log.info("session %s is gone; now serving session %s", self.session.session_id, cfg.session_id)
        self.session = cfg
        limit = self.settings.orch.max_message_bytes
        if self.settings.role == "chocobo":
            await self._drop_child()
            assert self.settings.child_id is not None
            self.child = AsyncChild(
                self.redis, cfg, self.settings.child_id, max_message_bytes=limit, slice_s=self.slice_s
            )
        else:
            self.parent = AsyncParent(self.redis, cfg, max_message_bytes=limit, slice_s=self.slice_s)
            self._report_request = None

    async def moogle(self) -> AsyncParent:
        """The parent of the server's session."""
        await self.current()
        assert self.parent is not None
        return self.parent

    async def chocobo(self) -> AsyncChild:
        """This server's child of the session, its presence claimed (and then kept fresh in the background)."""
        cfg = await self.current()
        child = self.child
        assert child is not None
        if not child.claimed:
            try:
                await child.claim()
            except InvalidIdentifierError:
                raise ConfigError(
                    f"this server is child {child.child_id} (--child-id) but session {cfg.session_id!r} has children "
                    f"1..{cfg.max_children}: restart it with a --child-id in that range, or have the summoner create "
                    f"a session with max_children >= {child.child_id}"
                ) from None
            self._presence = anyio.CancelScope()
            self.background.start_soon(self._keep_presence, child, self._presence)
        return child

    @staticmethod
    async def _keep_presence(child: AsyncChild, scope: anyio.CancelScope) -> None:
        with scope:
            await child.keep_presence()

    async def _drop_child(self) -> None:
        if self._presence is not None:
            self._presence.cancel()
            self._presence = None
        child, self.child = self.child, None
        if child is not None and child.claimed:
            with anyio.move_on_after(2):
                try:
                    await child.release()
                except Exception as exc:  # giving up a claim must not fail: it lapses by itself
                    log.debug("could not release the presence of child %s: %s", child.child_id, exc)

    def delivered(self, request_id: str | int | None) -> None:
        """Note which wait_for_report call returned the report that is still unacknowledged."""
        self._report_request = None if request_id is None else str(request_id)

    def delivery_cancelled(self, request_id: object) -> None:
        """The client gave up `request_id`: if it carried the unacknowledged report, deliver that report again."""
        if request_id is not None and self._report_request == str(request_id) and self.parent is not None:
            log.info("wait_for_report %s was cancelled after it took a report; it will be delivered again", request_id)
            self.parent.redeliver_last()
            self._report_request = None

    async def close(self) -> None:
        """Give up the chocobo's presence claim (bounded: Redis may be gone)."""
        await self._drop_child()


def _lifespan(
    settings: ServerSettings, on_close: Callable[[], None] | None
) -> Callable[[MCPServer[ServerState]], AbstractAsyncContextManager[ServerState]]:
    @asynccontextmanager
    async def lifespan(_: MCPServer[ServerState]) -> AsyncIterator[ServerState]:
        # No PING here: a server whose Redis is down still starts; each tool then says how to fix it.
        redis = create_client(settings.orch.redis)
        try:
            async with anyio.create_task_group() as background:
                state = ServerState(settings, redis, background)
                try:
                    yield state
                finally:
                    background.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await state.close()
        finally:
            with anyio.CancelScope(shield=True):
                await redis.aclose()
            if on_close is not None:
                on_close()

    return lifespan


# ---------------------------------------------------------------- the error adapter

P = ParamSpec("P")


def _state(ctx: Context[ServerState]) -> ServerState:
    state: ServerState = ctx.request_context.lifespan_context
    return state


def tool_adapter(fn: Callable[P, Awaitable[CallToolResult]]) -> Callable[P, Awaitable[CallToolResult]]:
    """Turn the project's errors (and redis-py's) into ToolError, whose message is what the model reads."""

    @functools.wraps(fn)
    async def adapter(*args: P.args, **kwargs: P.kwargs) -> CallToolResult:
        ctx = kwargs["ctx"]
        assert isinstance(ctx, Context)
        config = _state(ctx).settings.orch.redis
        try:
            with redis_errors(config):
                return await fn(*args, **kwargs)
        except OrchError as exc:
            raise ToolError(str(exc)) from exc
        except rexc.RedisError as exc:
            raise ToolError(f"Redis at {config.display_url} answered with an error: {exc}") from exc

    return adapter


def _result(model: BaseModel, text: str) -> CallToolResult:
    """A tool result: `model` as the structured content, `text` for the model to read."""
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=model.model_dump(mode="json")
    )


class _Progress:
    """The on_slice callback of a wait: a progress notification (elapsed of timeout_s) before each blocking slice."""

    def __init__(self, ctx: Context[ServerState], timeout_s: float, what: str) -> None:
        self.ctx = ctx
        self.timeout_s = timeout_s
        self.what = what
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return min(time.monotonic() - self.start, self.timeout_s)

    def remaining(self) -> float:
        """What is left of timeout_s for the blocking part (never 0, which the core reads as "for ever")."""
        return max(self.timeout_s - self.elapsed, POLL_S)

    def waited(self) -> float:
        return round(time.monotonic() - self.start, 3)

    async def __call__(self) -> None:
        elapsed = self.elapsed
        try:
            message = f"waiting for a {self.what}: {elapsed:.0f} s of {self.timeout_s:g} s"
            await self.ctx.report_progress(elapsed, total=self.timeout_s, message=message)
        except Exception as exc:  # progress is best effort; the wait goes on
            log.debug("progress notification failed: %s", exc)


# ---------------------------------------------------------------- output models


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
    current: str | None = Field(description="the session id that servers started with --session-id current use")
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
    """What wait_for_report found: a report, or nothing before the timeout."""

    status: Literal["report", "timeout"]
    report: Report | None = None
    session_id: str
    waited_s: float


class Shutdown(BaseModel):
    """Which children were told to stop."""

    told: list[int]
    now: bool
    session_id: str


class TaskInfo(BaseModel):
    """A task as the child receives it."""

    task_id: str
    prompt: str
    context: dict[str, Any]
    priority: int
    created_at: str


class TaskWait(BaseModel):
    """What wait_for_task found: a task, a shutdown order, or nothing before the timeout."""

    status: Literal["task", "shutdown", "timeout"]
    task: TaskInfo | None = None
    reason: str | None = Field(default=None, description="why the parent asked to stop (shutdown only)")
    child_id: int
    session_id: str
    waited_s: float


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


# ---------------------------------------------------------------- texts


def _describe(cfg: SessionConfig) -> str:
    shape = f"{cfg.mode} mode, children 1..{cfg.max_children}, idle TTL {cfg.ttl_s} s"
    return f"{cfg.session_id} ({shape}, prefix {cfg.prefix})"


def _status_text(st: SessionStatus) -> str:
    lines = [f"Session {st.session_id} ({st.mode} mode):"]
    for c in st.children:
        work = f", working on task {c.in_flight_task}" if c.in_flight_task else ""
        seen = f", last seen {c.last_seen}" if c.last_seen else ""
        lines.append(f"- child {c.child_id}: {c.state}{work}, {c.queue_depth} queued{seen}")
    lines.append("Tasks: " + ", ".join(f"{n} {state}" for state, n in st.tasks.items()) + ".")
    lines.append(f"Reports waiting for the moogle: {st.report_queue_depth}. Dead letters: {st.dead_letters}.")
    return "\n".join(lines)


def _record_text(rec: TaskRecord) -> str:
    text = f"Task {rec.task_id} for child {rec.child_id}: {rec.state} (delivered {rec.delivery_count} time(s))."
    if rec.result is not None and rec.state in ("done", "failed"):
        text += f"\nResult:\n{rec.result}"
    if rec.error:
        text += f"\nError: {rec.error}"
    return text


# ---------------------------------------------------------------- summoner tools


@tool_adapter
async def init_session(
    ctx: Context[ServerState],
    max_children: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_CHILDREN_LIMIT,
            description="How many chocobo children work in the session "
            "(child ids 1..max_children): one per chocobo agent.",
        ),
    ] = 3,
    mode: Annotated[
        Literal["summoner", "normal"],
        Field(
            description="'summoner' (recommended): one shared report queue and a live monitor channel; "
            "'normal': a report queue per child and a <namespace>-<host>-<seq> prefix."
        ),
    ] = "summoner",
    ttl_s: Annotated[
        int | None,
        Field(
            ge=1,
            description="Seconds an idle session's keys live (renewed while it is in use); "
            "omit for the server's default (REDIS_TTL, 3600).",
        ),
    ] = None,
) -> Annotated[CallToolResult, SessionInfo]:
    """Create a new session for the team and make it the namespace's current one."""
    state = _state(ctx)
    ttl = ttl_s if ttl_s is not None else state.settings.orch.redis.default_ttl
    cfg = await sessions.init_session(
        state.redis, namespace=state.settings.namespace, mode=mode, max_children=max_children, ttl_s=ttl
    )
    text = (
        f"Created session {_describe(cfg)}. It is now the current session of namespace "
        f"{cfg.namespace!r}: moogle and chocobo servers started with --session-id current (the default) use it "
        f"from their next tool call; give others --session-id {cfg.session_id}. Tell the agents to start: the "
        f"moogle sends tasks, chocobos 1..{cfg.max_children} call wait_for_task."
    )
    return _result(SessionInfo.of(cfg), text)


@tool_adapter
async def get_session(ctx: Context[ServerState], session_id: SessionIdArg) -> Annotated[CallToolResult, SessionInfo]:
    """Show one session: its mode, children, TTL and the names of its queues."""
    state = _state(ctx)
    cfg = await find_session(state.redis, state.settings.namespace, session_id)
    return _result(SessionInfo.of(cfg), f"Session {_describe(cfg)}.")


@tool_adapter
async def list_sessions(ctx: Context[ServerState]) -> Annotated[CallToolResult, SessionList]:
    """List the live sessions of this namespace, oldest first, and say which one is current."""
    state = _state(ctx)
    ns = state.settings.namespace
    found = await sessions.list_sessions(state.redis, namespace=ns)
    current: str | None = await state.redis.get(NamespaceKeys(ns).current)
    live = {cfg.session_id for cfg in found}
    current = current if current in live else None
    if not found:
        text = f"No live session in namespace {ns!r}: create one with init_session."
    else:
        text = f"{len(found)} live session(s) in namespace {ns!r}:\n" + "\n".join(
            f"- {_describe(cfg)}" + (" (current)" if cfg.session_id == current else "") for cfg in found
        )
    return _result(SessionList(namespace=ns, current=current, sessions=[SessionInfo.of(c) for c in found]), text)


@tool_adapter
async def cleanup_session(ctx: Context[ServerState], session_id: SessionIdArg) -> Annotated[CallToolResult, Cleanup]:
    """Remove every key of a finished session (queues, task records, status stream) and its index entry."""
    state = _state(ctx)
    cfg = await find_session(state.redis, state.settings.namespace, session_id)
    done = await sessions.cleanup_session(state.redis, cfg)
    text = f"Removed session {done.session_id}: {len(done.removed_keys)} key(s) under {done.prefix}."
    return _result(Cleanup(**done.model_dump(), removed_count=len(done.removed_keys)), text)


@tool_adapter
async def session_status(
    ctx: Context[ServerState], session_id: OptionalSessionIdArg = None
) -> Annotated[CallToolResult, SessionStatus]:
    """Show each child's state (idle, working, offline), queue depth and in-flight task, and task counts."""
    state = _state(ctx)
    if session_id is not None:
        cfg = await find_session(state.redis, state.settings.namespace, session_id)
    elif state.settings.role == "summoner":  # the summoner follows the namespace's latest session
        cfg = await find_session(state.redis, state.settings.namespace, state.settings.session_id)
    else:
        cfg = await state.current()
    st = await delivery.session_status(state.redis, cfg)
    return _result(st, _status_text(st))


# ---------------------------------------------------------------- moogle tools


@tool_adapter
async def send_task(
    ctx: Context[ServerState],
    child_id: Annotated[int, Field(ge=1, description="The chocobo that should do the task (1..max_children).")],
    prompt: Annotated[
        str,
        Field(
            min_length=1,
            description="What the child should do, as a self-contained "
            "instruction (it sees nothing else of your conversation).",
        ),
    ],
    context: Annotated[
        dict[str, Any] | None,
        Field(description="Optional JSON object of extra data for the task (file paths, parameters, ids)."),
    ] = None,
    priority: Annotated[
        int, Field(description="Above 0 puts the task ahead of the child's waiting tasks; 0 (default) at the back.")
    ] = 0,
) -> Annotated[CallToolResult, SentTask]:
    """Queue a task for one chocobo child; its report comes back through wait_for_report."""
    parent = await _state(ctx).moogle()
    task = await parent.send_task(child_id, prompt, context, priority)
    sent = SentTask(
        task_id=task.task_id,
        child_id=task.child_id,
        session_id=task.session_id,
        priority=task.priority,
        created_at=task.created_at.isoformat(),
    )
    where = "at the front of" if priority > 0 else "on"
    text = (
        f"Task {task.task_id} queued {where} child {child_id}'s queue. Call wait_for_report to collect its "
        "result (and the others')."
    )
    return _result(sent, text)


@tool_adapter
async def wait_for_report(
    ctx: Context[ServerState], timeout_s: TimeoutArg = DEFAULT_WAIT_S
) -> Annotated[CallToolResult, ReportWait]:
    """Wait for the next report from any child; on "timeout" call it again."""
    state = _state(ctx)
    progress = _Progress(ctx, timeout_s, "report")
    parent: AsyncParent | None = None
    report = None
    async with state.waiting(timeout_s) as acquired:  # one wait at a time: the unacknowledged report is ours
        if acquired:
            parent = await state.moogle()
            report = await parent.wait_for_report(progress.remaining(), on_slice=progress)
            state.delivered(ctx.request_id if report is not None else None)
    session_id = parent.session.session_id if parent is not None else state.session_id
    if report is None:
        out = ReportWait(status="timeout", session_id=session_id, waited_s=progress.waited())
        return _result(out, _timeout_text("report", timeout_s, "wait_for_report"))
    found = Report(
        task_id=report.task_id,
        child_id=report.child_id,
        status=report.status,
        result=report.result,
        error=report.error,
        created_at=report.created_at.isoformat(),
    )
    text = f"Report on task {report.task_id} from child {report.child_id}: {report.status}.\nResult:\n{report.result}"
    if report.error:
        text += f"\nError: {report.error}"
    text += "\nCall wait_for_report again for the next report (or shutdown once every task has reported)."
    return _result(ReportWait(status="report", report=found, session_id=session_id, waited_s=progress.waited()), text)


def _timeout_text(what: str, timeout_s: float, tool: str) -> str:
    return f"No {what} arrived within {timeout_s:g} s. This is normal: call {tool} again."


@tool_adapter
async def get_task(ctx: Context[ServerState], task_id: TaskIdArg) -> Annotated[CallToolResult, TaskRecord]:
    """Read a task's record: its state (queued, working, done, failed, cancelled) and, once reported, its result."""
    parent = await _state(ctx).moogle()
    rec = await parent.get_task(task_id)
    return _result(rec, _record_text(rec))


@tool_adapter
async def cancel_task(ctx: Context[ServerState], task_id: TaskIdArg) -> Annotated[CallToolResult, TaskRecord]:
    """Withdraw a task that no child has started yet."""
    parent = await _state(ctx).moogle()
    rec = await delivery.cancel_task(parent.r, parent.session, task_id)
    return _result(rec, f"Task {rec.task_id} for child {rec.child_id} is cancelled; no child will receive it.")


@tool_adapter
async def shutdown(
    ctx: Context[ServerState],
    child_id: Annotated[int | None, Field(ge=1, description="The child to stop; omit to stop every child.")] = None,
    now: Annotated[
        bool, Field(description="false (default): after the tasks already queued for it; true: before them.")
    ] = False,
) -> Annotated[CallToolResult, Shutdown]:
    """Tell one chocobo child, or all, to stop once its queued tasks are done (or at once with now=true)."""
    parent = await _state(ctx).moogle()
    told = await parent.shutdown(child_id, now=now)
    when = "before any task still queued" if now else "after the tasks already queued for them"
    text = f"Told child(ren) {', '.join(map(str, told))} to stop {when}."
    return _result(Shutdown(told=told, now=now, session_id=parent.session.session_id), text)


# ---------------------------------------------------------------- chocobo tools


@tool_adapter
async def wait_for_task(
    ctx: Context[ServerState], timeout_s: TimeoutArg = DEFAULT_WAIT_S
) -> Annotated[CallToolResult, TaskWait]:
    """Wait for your next task; on "timeout" call it again, on "shutdown" stop."""
    state = _state(ctx)
    progress = _Progress(ctx, timeout_s, "task")
    child: AsyncChild | None = None
    msg = None
    async with state.waiting(timeout_s) as acquired:
        if acquired:
            child = await state.chocobo()
            msg = await child.take(progress.remaining(), on_slice=progress)
    child_id = state.settings.child_id
    assert child_id is not None
    session_id = child.session.session_id if child is not None else state.session_id

    def wait(status: Literal["task", "shutdown", "timeout"], task: TaskInfo | None = None,
             reason: str | None = None) -> TaskWait:  # fmt: skip
        return TaskWait(status=status, task=task, reason=reason, child_id=child_id, session_id=session_id,
                        waited_s=progress.waited())  # fmt: skip

    if isinstance(msg, ShutdownMessage):
        text = "Shutdown: the moogle asked you to stop. Do not call wait_for_task again; end your work here."
        if msg.reason:
            text += f" Reason: {msg.reason}"
        return _result(wait("shutdown", reason=msg.reason), text)
    if msg is None:
        return _result(wait("timeout"), _timeout_text("task", timeout_s, "wait_for_task"))
    task = TaskInfo(
        task_id=msg.task_id,
        prompt=msg.prompt,
        context=msg.context,
        priority=msg.priority,
        created_at=msg.created_at.isoformat(),
    )
    text = f"Task {msg.task_id}:\n{msg.prompt}"
    if msg.context:
        text += f"\nContext: {json.dumps(msg.context, ensure_ascii=False)}"
    text += (
        f'\nDo the work, then call report(task_id="{msg.task_id}", result=...) with your result '
        '(status="failed" and the reason if you cannot do it); then call wait_for_task again.'
    )
    return _result(wait("task", task=task), text)


@tool_adapter
async def report(
    ctx: Context[ServerState],
    task_id: Annotated[str, Field(description="The task_id of the task you did, as wait_for_task gave it.")],
    result: Annotated[str, Field(description="Your result as text (encode structured results as JSON text).")],
    status: Annotated[
        Literal["done", "failed"],
        Field(description="'done' (default) if you did the task; 'failed' if you could not (explain why in result)."),
    ] = "done",
) -> Annotated[CallToolResult, ReportOutcome]:
    """Report the result of a task you received; then call wait_for_task for the next one."""
    child = await _state(ctx).chocobo()
    outcome = await child.report(task_id, result, status)
    if outcome.duplicate:
        text = (
            f"Task {task_id} was already reported ({outcome.state}); its recorded result stays as it was. "
            "Call wait_for_task for your next task."
        )
    else:
        text = f"Report on task {task_id} recorded ({outcome.state}). Call wait_for_task for your next task."
    return _result(outcome, text)


# ---------------------------------------------------------------- the server

ROLE_TOOLS: dict[Role, tuple[Callable[..., Awaitable[CallToolResult]], ...]] = {
    "summoner": (init_session, get_session, list_sessions, cleanup_session, session_status),
    "moogle": (send_task, wait_for_report, get_task, cancel_task, shutdown, session_status),
    "chocobo": (wait_for_task, report),
}


def instructions(settings: ServerSettings) -> str:
    """The role's `instructions`: its loop, in a few lines an LLM can follow."""
    where = (
        f"session {settings.session_id}"
        if settings.session_id != "current"
        else f"the latest session of namespace {settings.namespace!r}"
    )
    if settings.role == "summoner":
        return (
            "You are the summoner of an orch-mcp team: you create and manage the session in which a moogle (the "
            "parent agent) hands tasks to chocobos (child agents).\n"
            "1. init_session(max_children=N), N = the number of chocobo agents.\n"
            "2. Tell the moogle and the chocobos the session is ready (their servers pick up the namespace's current "
            "session by themselves; give the session_id to any started with a fixed --session-id).\n"
            "3. Follow the work with session_status (children idle/working/offline, task counts).\n"
            "4. When the moogle has all its reports, cleanup_session(session_id) removes the session's data.\n"
            "list_sessions and get_session show what exists."
        )
    if settings.role == "moogle":
        return (
            f"You are the moogle, the parent agent of an orch-mcp team working in {where}: you split the work into "
            "self-contained tasks for chocobo children (child ids 1..max_children of the session) and collect "
            "their results.\n"
            "1. send_task(child_id, prompt, context) for each piece of work; keep the task_ids.\n"
            '2. Call wait_for_report again and again until every task has reported: status "report" carries task_id, '
            'child_id, status (done/failed) and result; status "timeout" only means nothing arrived yet - call again.\n'
            "3. When every task is reported, call shutdown() to stop the children.\n"
            "session_status shows who is online and busy; get_task(task_id) reads a task's state and result at any "
            "time; cancel_task withdraws a task no child has started. If a tool says no session exists, ask the "
            "summoner to run init_session, then try again."
        )
    return (
        f"You are chocobo {settings.child_id}, a child agent of an orch-mcp team working in {where}. Your loop:\n"
        '1. Call wait_for_task. status "timeout": nothing yet - call it again at once.\n'
        '2. status "task": do what task.prompt asks (task.context holds extra data), then call report(task_id, '
        'result) with your result as text (JSON text for structured results; status="failed" with the reason if '
        "you cannot do it).\n"
        "3. Go back to 1.\n"
        'Stop only when wait_for_task returns status "shutdown". If a tool says no session exists, the summoner has '
        "not run init_session yet: wait a little and call wait_for_task again."
    )


def create_server(settings: ServerSettings, *, on_close: Callable[[], None] | None = None) -> MCPServer[ServerState]:
    """An MCP server for `settings.role`, listing only that role's tools; `on_close()` runs when its lifespan ends."""
    suffix = f" {settings.child_id}" if settings.role == "chocobo" else ""
    server: MCPServer[ServerState] = MCPServer(
        f"orch-mcp {settings.role}{suffix}",
        instructions=instructions(settings),
        version=__version__,
        lifespan=_lifespan(settings, on_close),
        tools=[_tool(fn) for fn in ROLE_TOOLS[settings.role]],
    )
    if settings.role == "moogle":
        server.middleware.append(_redeliver_cancelled_reports)
    return server


def _tool(fn: Callable[..., Awaitable[CallToolResult]]) -> Tool:
    """The tool for `fn`, its output schema flattened (see compact_schema)."""
    tool = Tool.from_function(fn)
    if tool.fn_metadata.output_schema is not None:
        tool.fn_metadata.output_schema = compact_schema(tool.fn_metadata.output_schema)
    return tool


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The same JSON schema with `$defs` references inlined and `anyOf: [X, null]` written as `type: [x, "null"]`.

    It accepts exactly the same documents; clients validate every structured result against it, and
    the flat form checks in about half the time of pydantic's (one `$ref` lookup per nested model).
    A schema whose references are recursive is returned unchanged.
    """
    defs: dict[str, Any] = schema.get("$defs", {})

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if not ref.startswith("#/$defs/") or name not in defs or name in seen:
                raise _Unflattenable(ref)
            inner = walk(defs[name], (*seen, name))
            return {**inner, **{k: walk(v, seen) for k, v in node.items() if k != "$ref"}}
        out = {k: walk(v, seen) for k, v in node.items() if k != "$defs"}
        options = out.get("anyOf")
        if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
            other = next(o for o in options if o != {"type": "null"})
            if isinstance(other.get("type"), str) and not {"enum", "const", "anyOf", "oneOf", "allOf"} & set(other):
                del out["anyOf"]
                out = {**other, **out, "type": [other["type"], "null"]}
        return out

    try:
        flat: dict[str, Any] = walk(schema, ())
    except _Unflattenable:
        return schema
    return flat


class _Unflattenable(Exception):
    pass


async def _redeliver_cancelled_reports(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """A wait_for_report whose caller gave up after it took a report: keep that report for the next wait.

    Two ways the report can fail to reach the model: the cancellation lands after the tool returned but
    before the response left (seen here as the request being cancelled), or the client cancels after
    the response left (seen as a late `notifications/cancelled` for a finished request). In both the
    report stays unacknowledged in the in-flight list, so the next wait_for_report returns it again.
    """
    state = ctx.lifespan_context
    if not isinstance(state, ServerState):
        return await call_next(ctx)
    if ctx.method == "notifications/cancelled":
        state.delivery_cancelled((ctx.params or {}).get("requestId"))
        return await call_next(ctx)
    try:
        return await call_next(ctx)
    except anyio.get_cancelled_exc_class():
        state.delivery_cancelled(ctx.request_id)
        raise
