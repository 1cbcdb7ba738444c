"""Helpers shared by the MCP server tests: settings per role, result text, stdio server parameters."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, cast

from mcp import StdioServerParameters
from mcp_types import CallToolResult

from orch_mcp.config import OrchConfig
from orch_mcp.server import Role, ServerSettings


def settings(orch: OrchConfig, role: str, child_id: int | None = None, **kw: Any) -> ServerSettings:
    """ServerSettings for `role` against the test Redis."""
    return ServerSettings(role=cast(Role, role), orch=orch, child_id=child_id, **kw)


def text(result: CallToolResult) -> str:
    """The text the model reads."""
    return "\n".join(getattr(block, "text", "") for block in result.content)


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful call (fails the test with the error text otherwise)."""
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    data: dict[str, Any] = result.structured_content
    return data


def error(result: CallToolResult) -> str:
    """The text of a failed call (fails the test if the call succeeded)."""
    assert result.is_error, f"expected an error, got {result.structured_content}"
    return text(result)


def serve_params(role: str, env: Mapping[str, str], *extra: str) -> StdioServerParameters:
    """How to start `orch-mcp serve --role <role> [extra]` as a stdio subprocess of this Python."""
    return StdioServerParameters(
        command=sys.executable, args=["-m", "orch_mcp", "serve", "--role", role, *extra], env=dict(env)
    )
