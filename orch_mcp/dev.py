"""A module-level server for `mcp dev orch_mcp/dev.py` (the MCP Inspector) and `mcp run`.

The one module that reads the environment at import: `mcp dev` loads a file and looks for a
module-level `server`, so it cannot be handed flags. Set ORCH_ROLE (default moogle), ORCH_CHILD_ID
(a chocobo's id, default 1), ORCH_SESSION_ID, ORCH_NAMESPACE and REDIS_URL as for `orch-mcp serve`.
"""

from __future__ import annotations

import os

from orch_mcp.serve import UsageError, parse_settings
from orch_mcp.server import create_server

_env = dict(os.environ)
_env.setdefault("ORCH_ROLE", "moogle")
if _env["ORCH_ROLE"] == "chocobo":
    _env.setdefault("ORCH_CHILD_ID", "1")
try:
    settings = parse_settings([], _env)
except UsageError as exc:
    raise SystemExit(f"orch_mcp/dev.py: {exc}") from None

server = create_server(settings)
