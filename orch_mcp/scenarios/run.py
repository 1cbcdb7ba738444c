"""`orch-mcp scenario {summoner|moogle|chocobo} …`: play one agent with the library, without any LLM."""

from __future__ import annotations

import importlib
import sys

from ..cli import common

SCENARIOS = {
    "summoner": ("orch_mcp.scenarios.summoner_scenario", "create a summoner-mode session and print it"),
    "moogle": ("orch_mcp.scenarios.moogle_scenario", "send tasks round-robin, collect the reports, shut down"),
    "chocobo": ("orch_mcp.scenarios.chocobo_scenario", "take tasks, simulate the work, report, until shutdown"),
}
PROG = "orch-mcp scenario"


def usage() -> str:
    """The help text."""
    lines = [f"usage: {PROG} {{{'|'.join(SCENARIOS)}}} [options]", "", "scenarios:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in SCENARIOS.items()]
    lines += [
        "",
        "A typical run, in three terminals:",
        "  orch-mcp scenario summoner --max-children 2",
        "  orch-mcp scenario chocobo --child-id 1 &  orch-mcp scenario chocobo --child-id 2",
        '  orch-mcp scenario moogle --tasks "Task 1" "Task 2" "Task 3"',
        "",
        f"Run `{PROG} <scenario> --help` for its options.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the scenario's own main()."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        return common.usage_error(PROG, f"no scenario given; choose one of: {', '.join(SCENARIOS)}")
    if args[0] in ("-h", "--help"):
        print(usage())
        return common.EXIT_OK
    entry = SCENARIOS.get(args[0])
    if entry is None:
        return common.usage_error(PROG, f"unknown scenario {args[0]!r}; choose one of: {', '.join(SCENARIOS)}")
    code: int = importlib.import_module(entry[0]).main(args[1:])
    return code


if __name__ == "__main__":
    raise SystemExit(main())
