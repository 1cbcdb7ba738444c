#!/usr/bin/env python3
"""The baseline for bench/bench_mcp.py: a bare MCP server over stdio with one async `echo` tool."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("echo")


@server.tool()
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


if __name__ == "__main__":
    server.run()
