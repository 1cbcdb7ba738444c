"""Small types shared by the delivery modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

#: Called before each blocking slice of a wait (the MCP server sends a progress notification).
OnSlice = Callable[[], Awaitable[None]]
