"""The MCP server: one role's tools (summoner, moogle or chocobo) as thin adapters over the core.

`create_server(ServerSettings(role=...))` builds an `MCPServer` that lists only that role's tools.
The Redis client lives in the lifespan (`ServerState`); every tool resolves the session it works on
through the state, calls one core operation and returns a pydantic model (the structured output)
with a short text for the model to read. The project's errors become `ToolError`s, so their
message - what was wrong and what to do - reaches the model.

Modules, by what changes together: `settings` (what a server is), `state` (what it holds while it
runs), `adapter` (function -> tool), `models` (output models, shared argument types), `texts` (what
the model reads), `catalog` (each tool's title and annotations), `arguments` (the texts for bad
arguments and unknown tools), one module per role's tools (`summoner`, `moogle`, `chocobo`), and
`app` (`ROLE_TOOLS`, `create_server`).
"""

from .adapter import tool_adapter
from .app import ROLE_TOOLS, create_server
from .catalog import TOOL_INFO, ToolInfo
from .settings import (
    DEFAULT_WAIT_S,
    MAX_WAIT_S,
    POLL_S,
    PROGRESS_INTERVAL_S,
    ROLES,
    SESSION_CHECK_S,
    TRANSPORTS,
    Role,
    ServerSettings,
    Transport,
)
from .state import ServerState
from .texts import instructions

__all__ = [
    "DEFAULT_WAIT_S",
    "MAX_WAIT_S",
    "POLL_S",
    "PROGRESS_INTERVAL_S",
    "ROLES",
    "ROLE_TOOLS",
    "SESSION_CHECK_S",
    "TOOL_INFO",
    "TRANSPORTS",
    "Role",
    "ServerSettings",
    "ServerState",
    "ToolInfo",
    "Transport",
    "create_server",
    "instructions",
    "tool_adapter",
]
