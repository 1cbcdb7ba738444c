"""`orch-mcp <command>`: dispatches to each command's own module, imported only when used (fast start-up)."""

from __future__ import annotations

import importlib
import sys

# command -> module with a `main(argv: list[str] | None) -> int`
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("orch_mcp.serve", "run an MCP server for one role (summoner, moogle or chocobo)"),
    "init": ("orch_mcp.cli.init_orch", "create, show or clean up a session (= python -m orch_mcp.cli.init_orch)"),
    "rpush": ("orch_mcp.cli.rpush", "push messages onto a queue (= python -m orch_mcp.cli.rpush)"),
    "blpop": ("orch_mcp.cli.blpop", "pop messages from a queue (= python -m orch_mcp.cli.blpop)"),
    "scenario": ("orch_mcp.scenarios.run", "play summoner, moogle or chocobo without an LLM"),
    "demo": ("orch_mcp.cli.demo", "run a whole session end to end: one moogle, N chocobos, M tasks"),
    "watch": ("orch_mcp.cli.watch", "live view of a session"),
    "status": ("orch_mcp.cli.status", "print a session's state once"),
    "redis": ("orch_mcp.cli.redis_cmd", "start, stop or inspect the embedded Redis for this machine"),
    "setup": ("orch_mcp.cli.setup_cmd", "print or write the MCP client configuration of a whole team"),
    "acl": ("orch_mcp.cli.acl", "print (or create) the Redis ACL users of a session, one per role"),
}


def usage() -> str:
    """The top-level help text."""
    lines = ["usage: orch-mcp <command> [options]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `orch-mcp <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `orch-mcp` console script."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(
            f"orch-mcp: no command given; choose one of: {', '.join(COMMANDS)} (see `orch-mcp --help`)", file=sys.stderr
        )
        return 2
    if args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] in ("-V", "--version"):
        from orch_mcp import __version__

        print(f"orch-mcp {__version__}")
        return 0
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(
            f"orch-mcp: unknown command {args[0]!r}; choose one of: {', '.join(COMMANDS)} (see `orch-mcp --help`)",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(entry[0])
    code: int = module.main(args[1:])
    return code


if __name__ == "__main__":
    raise SystemExit(main())
