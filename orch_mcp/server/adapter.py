"""How a plain async function becomes a tool: unknown arguments refused, errors to ToolError, results, progress."""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import ParamSpec, TypeVar

import anyio
import redis.exceptions as rexc
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

from ..errors import OrchError
from ..redis_failures import redis_errors, through_failover, transient
from .arguments import unknown_arguments_text
from .settings import POLL_S
from .state import ServerState

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: While Redis is unreachable, a wait tries again this often (decision 9).
REDIS_RETRY_S = 0.5


def _state(ctx: Context[ServerState]) -> ServerState:
    state: ServerState = ctx.request_context.lifespan_context
    return state


def tool_adapter(fn: Callable[P, Awaitable[CallToolResult]]) -> Callable[P, Awaitable[CallToolResult]]:
    """Refuse arguments `fn` does not take; turn the project's errors (and redis-py's) into ToolError, whose message
    is what the model reads. On a cluster or Sentinel the call is made again through a failover (through_failover)."""
    return _adapter(fn, retry=True)


def wait_adapter(fn: Callable[P, Awaitable[CallToolResult]]) -> Callable[P, Awaitable[CallToolResult]]:
    """tool_adapter for a wait: never made again whole (what it took may be in hand), it retries inside instead."""
    return _adapter(fn, retry=False)


def _adapter(fn: Callable[P, Awaitable[CallToolResult]], *, retry: bool) -> Callable[P, Awaitable[CallToolResult]]:
    known = [name for name in inspect.signature(fn).parameters if name != "ctx"]

    @functools.wraps(fn)
    async def adapter(*args: P.args, **kwargs: P.kwargs) -> CallToolResult:
        ctx = kwargs["ctx"]
        if not isinstance(ctx, Context):  # every tool takes ctx by keyword: a wiring mistake, not a user's
            raise TypeError(f"{fn.__name__} must be called with ctx=Context")
        sent = (ctx.request_context.params or {}).get("arguments")
        unknown = [name for name in sent if name not in known] if isinstance(sent, Mapping) else []
        if unknown:  # the SDK drops them silently: the call would run without what the model meant to say
            raise ToolError(unknown_arguments_text(fn.__name__, unknown, known))
        settings = _state(ctx).settings
        config = settings.orch.redis
        try:
            with redis_errors(config, f"the {settings.role}'s {fn.__name__}"):
                if retry:
                    return await through_failover(config, lambda: fn(*args, **kwargs))
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

    async def while_redis_is_down(self, wait: Callable[[], Awaitable[T]]) -> T:
        """Run `wait`; while Redis cannot be reached (or fails over), try again until timeout_s is over, then raise
        that error once."""
        while True:
            try:
                return await wait()
            except Exception as exc:
                left = self.timeout_s - (time.monotonic() - self.start)
                if not transient(exc) or left <= REDIS_RETRY_S:
                    raise
                log.info("Redis is unreachable (%s); the %s wait tries again", exc, self.what)
                await self()  # a progress notification, so the client sees the wait is alive
                await anyio.sleep(REDIS_RETRY_S)

    async def __call__(self) -> None:
        elapsed = self.elapsed
        try:
            message = f"waiting for a {self.what}: {elapsed:.0f} s of {self.timeout_s:g} s"
            await self.ctx.report_progress(elapsed, total=self.timeout_s, message=message)
        except Exception as exc:  # progress is best effort; the wait goes on
            log.debug("progress notification failed: %s", exc)
