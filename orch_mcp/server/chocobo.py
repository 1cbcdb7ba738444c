"""The chocobo's tools: wait for a task, report its result."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult
from pydantic import Field

from .. import delivery
from ..agents import AsyncChild
from ..delivery import Heartbeat, ReportOutcome, Taken
from ..messages import ShutdownMessage
from ..redis_failures import through_failover
from . import texts
from .adapter import _Progress, _result, _state, tool_adapter, wait_adapter
from .models import TaskInfo, TaskWait, TimeoutArg, YourQueue
from .settings import DEFAULT_WAIT_S
from .state import PRESENCE_WAIT_S, ServerState


@wait_adapter
async def wait_for_task(
    ctx: Context[ServerState], timeout_s: TimeoutArg = DEFAULT_WAIT_S
) -> Annotated[CallToolResult, TaskWait]:
    """Wait for your next task; on "timeout" call it again, on "shutdown" stop."""
    state = _state(ctx)
    progress = _Progress(ctx, timeout_s, "task")
    child: AsyncChild | None = None
    taken = Taken(None)
    taking_over = False
    async with state.waiting(timeout_s) as acquired:
        if acquired:

            async def wait() -> tuple[AsyncChild | None, Taken]:
                child = await _child(ctx, min(progress.remaining(), PRESENCE_WAIT_S))
                if child is None:
                    return None, Taken(None)
                return child, await child.take_next(progress.remaining(), on_slice=progress)

            child, taken = await progress.while_redis_is_down(wait)
            taking_over = child is None
    msg = taken.message
    child_id = state.settings.child_id or 0
    session = child.session if child is not None else state.session
    queued = 0
    if taken.queued is not None:  # the take read it
        queued = taken.queued
    elif session is not None:
        queued = await through_failover(
            state.settings.orch.redis, lambda: delivery.queue_depth(state.redis, session, child_id)
        )
    out = TaskWait(
        status="timeout",
        cancelled=taken.cancelled,
        outstanding=YourQueue(queued=queued),
        child_id=child_id,
        session_id=session.session_id if session is not None else "",
        waited_s=progress.waited(),
    )
    if isinstance(msg, ShutdownMessage):
        out.status, out.reason = "shutdown", msg.reason
        text = texts.shutdown_text(msg.reason)
    elif taking_over:
        text = texts.taking_over_text(child_id)
    elif msg is None:
        text = texts.task_timeout_text(timeout_s, queued)
    else:
        out.status = "task"
        out.task = TaskInfo(
            task_id=msg.task_id,
            prompt=msg.prompt,
            context=msg.context,
            priority=msg.priority,
            created_at=msg.created_at.isoformat(),
            delivery_count=taken.attempt,
        )
        text = texts.task_text(msg, queued)
    return _result(out, texts.cancelled_note(taken.cancelled) + text)


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
    child = await _child(ctx, PRESENCE_WAIT_S)
    if child is None:
        raise ToolError(texts.taking_over_text(_state(ctx).settings.child_id or 0, "report"))
    outcome = await child.report(task_id, result, status)
    return _result(outcome, texts.reported_text(task_id, outcome))


@tool_adapter
async def heartbeat(
    ctx: Context[ServerState],
    task_id: Annotated[str, Field(description="The task_id of the task you are working on.")],
    note: Annotated[
        str | None, Field(description="Optional short progress note for the moogle (what is done, what is left).")
    ] = None,
) -> Annotated[CallToolResult, Heartbeat]:
    """Say you are still working on a task (on long work): renews its deadline and records your note."""
    child = await _child(ctx, PRESENCE_WAIT_S)
    if child is None:
        raise ToolError(texts.taking_over_text(_state(ctx).settings.child_id or 0, "heartbeat"))
    beat = await child.heartbeat(task_id, note)
    return _result(beat, texts.heartbeat_text(beat))


async def _newest_is_the_child(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Over streamable HTTP one server may have several MCP connections: the newest to connect is the child."""
    state = ctx.lifespan_context
    if ctx.method == "notifications/initialized" and isinstance(state, ServerState):
        state.connected(ctx.session.client_params)
    return await call_next(ctx)


async def _child(ctx: Context[ServerState], wait_s: float) -> AsyncChild | None:
    """The server's child for this call: only the newest MCP connection acts as the child."""
    state = _state(ctx)
    if not state.is_newest(ctx.session.client_params):
        raise ToolError(texts.not_newest_text(state.settings.child_id or 0))
    return await state.chocobo(wait_s)
