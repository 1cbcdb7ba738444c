"""The server itself: which tools each role lists, and `create_server` that puts one role's server together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult

from .. import __version__
from .arguments import argument_texts
from .catalog import tool_info
from .chocobo import _newest_is_the_child, heartbeat, report, wait_for_task
from .moogle import (
    _redeliver_cancelled_reports,
    cancel_task,
    get_task,
    list_tasks,
    requeue_task,
    send_task,
    shutdown,
    wait_for_report,
)
from .settings import Role, ServerSettings
from .state import ServerState, _lifespan
from .summoner import cleanup_session, get_session, init_session, list_sessions, session_status
from .texts import instructions

ROLE_TOOLS: dict[Role, tuple[Callable[..., Awaitable[CallToolResult]], ...]] = {
    "summoner": (init_session, get_session, list_sessions, cleanup_session, session_status),
    "moogle": (
        send_task,
        wait_for_report,
        get_task,
        list_tasks,
        cancel_task,
        requeue_task,
        shutdown,
        session_status,
    ),
    "chocobo": (wait_for_task, heartbeat, report),
}

#: What MCPServer registers whatever the server serves: its prompts and resources handlers (so `initialize`
#: advertises both capabilities with nothing behind them). This server serves tools only; see `_tools_only`.
UNSERVED_METHODS = ("prompts/list", "prompts/get", "resources/list", "resources/templates/list", "resources/read")


def create_server(settings: ServerSettings, *, on_close: Callable[[], None] | None = None) -> MCPServer[ServerState]:
    """An MCP server for `settings.role`, listing only that role's tools; `on_close()` runs when its lifespan ends."""
    suffix = f" {settings.child_id}" if settings.role == "chocobo" else ""
    tools = [_tool(fn) for fn in ROLE_TOOLS[settings.role]]
    role_tools: dict[str, list[str]] = {role: [fn.__name__ for fn in fns] for role, fns in ROLE_TOOLS.items()}
    server: MCPServer[ServerState] = MCPServer(
        f"orch-mcp {settings.role}{suffix}",
        instructions=instructions(settings),
        version=__version__,
        lifespan=_lifespan(settings, on_close),
        tools=tools,
        # our tool list never changes: no subscriptions/listen, so no listChanged promise (2026-07-28 clients)
        subscriptions=False,
        middleware=[argument_texts(settings.role, tools, role_tools)],
    )
    _tools_only(server)
    if settings.role == "moogle":
        server.middleware.append(_redeliver_cancelled_reports)
    if settings.role == "chocobo":
        server.middleware.append(_newest_is_the_child)
    return server


def _tool(fn: Callable[..., Awaitable[CallToolResult]]) -> Tool:
    """The tool for `fn`, with its title and annotations from the catalog."""
    info = tool_info(fn.__name__)
    return Tool.from_function(fn, title=info.title, annotations=info.annotations)


def _tools_only(server: MCPServer[ServerState]) -> None:
    """Withdraw the prompts and resources handlers MCPServer registers unasked, so `initialize` advertises tools only.

    The SDK has no public way: it derives capabilities from the registered handlers and MCPServer
    registers every one (upstream: https://github.com/modelcontextprotocol/python-sdk/issues/2473).
    This reaches into the low-level server's handler map; `del` fails loudly at start-up if the SDK
    moves it, and tests/test_tool_surface.py checks what `initialize` advertises.
    """
    handlers = server._lowlevel_server._request_handlers
    for method in UNSERVED_METHODS:
        del handlers[method]
