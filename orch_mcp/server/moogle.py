"""The moogle's tools: send tasks, wait for reports, list, read, cancel and stop; and its redelivery middleware."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field

from .. import delivery
from ..agents import AsyncParent
from ..delivery import TaskListing, TaskRecord, TaskState
from ..delivery.listing import DEFAULT_LIMIT, MAX_LIMIT
from ..messages import ReportMessage
from ..redis_failures import through_failover
from . import texts
from .adapter import _Progress, _result, _state, tool_adapter, wait_adapter
from .models import Report, ReportWait, SentTask, Shutdown, TaskIdArg, TaskStateArg, TaskView, TimeoutArg
from .settings import DEFAULT_WAIT_S
from .state import ServerState


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
    deadline_s: Annotated[
        float | None,
        Field(
            gt=0,
            description="Optional: seconds one delivery may take; past it (unless the child calls heartbeat) the "
            "task is taken back and given again.",
        ),
    ] = None,
    max_deliveries: Annotated[
        int, Field(ge=1, le=100, description="Deliveries without a report before the task fails (default 5).")
    ] = delivery.DEFAULT_MAX_DELIVERIES,
) -> Annotated[CallToolResult, SentTask]:
    """Queue a task for one chocobo child; its report comes back through wait_for_report."""
    parent = await _state(ctx).moogle()
    task = await parent.send_task(
        child_id, prompt, context, priority, deadline_s=deadline_s, max_deliveries=max_deliveries
    )
    sent = SentTask(
        task_id=task.task_id,
        child_id=task.child_id,
        session_id=task.session_id,
        priority=task.priority,
        created_at=task.created_at.isoformat(),
    )
    return _result(sent, texts.sent_text(task.task_id, child_id, priority))


@wait_adapter
async def wait_for_report(
    ctx: Context[ServerState], timeout_s: TimeoutArg = DEFAULT_WAIT_S
) -> Annotated[CallToolResult, ReportWait]:
    """Wait for the next report from any child; "timeout": call again; "idle": none can come (all in, or none sent)."""
    state = _state(ctx)
    config = state.settings.orch.redis
    progress = _Progress(ctx, timeout_s, "report")
    report = None
    async with state.waiting(timeout_s) as acquired:  # one wait at a time: the unacknowledged report is ours
        if acquired:

            async def wait() -> tuple[AsyncParent, ReportMessage | None]:
                parent = await state.moogle()
                found = await parent.wait_for_report(progress.remaining(), on_slice=progress, stop_when_idle=True)
                return parent, found

            parent, report = await progress.while_redis_is_down(wait)
            # Counted while this server's waits are held off: the report just returned is the only one taken.
            counted = parent
            try:
                left, offline = await through_failover(
                    config, lambda: _counts(counted, returned=int(report is not None))
                )
            except BaseException:
                if report is not None:  # this answer is lost (Redis went away, or a cancel): the next wait returns it
                    parent.keep_unacknowledged()
                raise
            state.delivered(ctx.request_id, parent.unacknowledged if report is not None else None)
        else:  # another wait of this server held the turn for the whole timeout
            parent = await state.moogle()
            counted = parent
            left, offline = await through_failover(config, lambda: _counts(counted))
    waited = progress.waited()
    note = texts.offline_note(offline)
    if report is None:
        status: Literal["timeout", "idle"] = "idle" if left.nothing_left else "timeout"
        text = texts.idle_text(left) if status == "idle" else texts.wait_timeout_text(timeout_s, left)
        out = ReportWait(
            status=status, outstanding=left, session_id=parent.session.session_id, waited_s=waited, offline=offline
        )
        return _result(out, note + text)
    found = Report(
        task_id=report.task_id,
        child_id=report.child_id,
        status=report.status,
        result=report.result,
        error=report.error,
        created_at=report.created_at.isoformat(),
    )
    out = ReportWait(
        status="report",
        report=found,
        outstanding=left,
        session_id=parent.session.session_id,
        waited_s=waited,
        offline=offline,
    )
    return _result(out, note + texts.report_text(report, left))


async def _counts(parent: AsyncParent, returned: int = 0) -> tuple[delivery.Outstanding, list[delivery.OfflineChild]]:
    """The session's outstanding counts and its offline children, read at once (the two round trips overlap).

    Each read keeps its own error, raised here as it is: a task group would wrap it in an exception group, which
    the tool adapter would not recognise.
    """
    left: list[delivery.Outstanding] = []
    offline: list[list[delivery.OfflineChild]] = []
    errors: list[Exception] = []

    async def read_left() -> None:
        try:
            left.append(await delivery.outstanding(parent.r, parent.session, returned=returned))
        except Exception as exc:
            errors.append(exc)

    async def read_offline() -> None:
        try:
            offline.append(await parent.offline())
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_left)
        tg.start_soon(read_offline)
    if errors:
        raise errors[0]
    return left[0], offline[0]


@tool_adapter
async def get_task(ctx: Context[ServerState], task_id: TaskIdArg) -> Annotated[CallToolResult, TaskView]:
    """Read a task's record: its state (queued, working, done, failed, cancelled) and, once reported, its result."""
    state = _state(ctx)
    rec = await delivery.get_task(state.redis, await state.current(), task_id)
    view = TaskView.of(rec, await delivery.server_ms(state.redis))
    return _result(view, texts.record_text(view))


@tool_adapter
async def list_tasks(
    ctx: Context[ServerState],
    state: TaskStateArg = None,
    limit: Annotated[
        int, Field(ge=1, le=MAX_LIMIT, description=f"At most this many tasks (1-{MAX_LIMIT}, default {DEFAULT_LIMIT}).")
    ] = DEFAULT_LIMIT,
) -> Annotated[CallToolResult, TaskListing]:
    """List this session's tasks, newest first, with their ids, children, states and ages (read-only)."""
    server = _state(ctx)
    wanted = TaskState(state) if state is not None else None
    listing = await delivery.list_tasks(server.redis, await server.current(), wanted, limit)
    return _result(listing, texts.tasks_text(listing))


@tool_adapter
async def requeue_task(
    ctx: Context[ServerState],
    task_id: TaskIdArg,
    child_id: Annotated[
        int | None, Field(ge=1, description="The child to give it to; omit to give it again to its own child.")
    ] = None,
) -> Annotated[CallToolResult, TaskRecord]:
    """Give a queued, working or failed task anew to a child (e.g. one whose child went offline)."""
    parent = await _state(ctx).moogle()
    rec = await parent.requeue(task_id, child_id)
    return _result(rec, texts.requeued_text(rec))


@tool_adapter
async def cancel_task(ctx: Context[ServerState], task_id: TaskIdArg) -> Annotated[CallToolResult, TaskRecord]:
    """Cancel a task: a queued one leaves its queue; a working one's child is told at its next call."""
    parent = await _state(ctx).moogle()
    rec = await delivery.cancel_task(parent.r, parent.session, task_id)
    return _result(rec, texts.cancelled_text(rec))


@tool_adapter
async def shutdown(
    ctx: Context[ServerState],
    child_id: Annotated[int | None, Field(ge=1, description="The child to stop; omit to stop every child.")] = None,
    now: Annotated[
        bool, Field(description="false (default): after the tasks already queued for it; true: before them.")
    ] = False,
    reason: Annotated[
        str | None, Field(max_length=2000, description="Optional: why they stop, shown to each child with the order.")
    ] = None,
) -> Annotated[CallToolResult, Shutdown]:
    """Tell one chocobo child, or all, to stop once its queued tasks are done (or at once with now=true)."""
    parent = await _state(ctx).moogle()
    told = await parent.shutdown(child_id, now=now, reason=reason or None)
    out = Shutdown(told=told, now=now, reason=reason or None, session_id=parent.session.session_id)
    return _result(out, texts.told_text(told, now, reason or None))


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
        await state.delivery_cancelled((ctx.params or {}).get("requestId"))
        return await call_next(ctx)
    try:
        return await call_next(ctx)
    except anyio.get_cancelled_exc_class():
        await state.delivery_cancelled(ctx.request_id)
        raise
