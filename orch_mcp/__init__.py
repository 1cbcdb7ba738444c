"""orch-mcp: an MCP server backed by Redis that lets a team of LLM agents work together."""

__version__ = "0.1.0"
