"""Command-line tools: the seed's rpush / blpop / init_orch, and the `orch-mcp` entry point."""
