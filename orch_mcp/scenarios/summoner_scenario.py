"""Summoner scenario: create a summoner-mode session and print it (what the summoner agent does first).

python -m orch_mcp.scenarios.summoner_scenario --max-children 5
python -m orch_mcp.scenarios.summoner_scenario --json
"""

from __future__ import annotations

import argparse

from ..cli import common
from ..orchestration import initialize_summoner_orchestration
from ..sessions import MAX_CHILDREN_LIMIT

MODULE = "orch_mcp.scenarios.summoner_scenario"


def build_parser() -> argparse.ArgumentParser:
    """The summoner scenario's command line."""
    prog = common.prog_name("scenario summoner", MODULE)
    parser = common.make_parser(
        prog,
        "Play the summoner: create a summoner-mode session (uuid id, shared report queue, monitor channel) "
        "and print its queues, then start the moogle and chocobo scenarios on it.",
        f"examples:\n  {prog} --max-children 5\n  {prog} --json",
    )
    parser.add_argument(
        "--max-children",
        type=common.int_range(1, MAX_CHILDREN_LIMIT),
        default=3,
        metavar="N",
        help=f"number of chocobos, 1..{MAX_CHILDREN_LIMIT} (default: 3)",
    )
    parser.add_argument("--session-id", metavar="ID", help="use this session id instead of a new uuid")
    parser.add_argument(
        "--ttl",
        type=common.int_range(1),
        metavar="SECONDS",
        help="lifetime of an idle session (default: REDIS_TTL or 3600)",
    )
    parser.add_argument("--json", action="store_true", help="print the session as one JSON document")
    common.add_connection_args(parser, namespace=True)
    return parser


def handle(args: argparse.Namespace) -> int:
    """Create the session and show it."""
    session = initialize_summoner_orchestration(
        max_children=args.max_children,
        session_id=args.session_id,
        ttl=args.ttl,
        namespace=common.namespace(args),
        redis_config=common.redis_config(args),
    )
    if args.json:
        common.print_json(session.to_dict())
        return common.EXIT_OK
    print(common.session_text(session, f"summoner: created session {session.session_id}"))
    print()
    print(common.next_steps(session))
    return common.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m orch_mcp.scenarios.summoner_scenario` / `orch-mcp scenario summoner`."""
    return common.run(build_parser(), handle, argv)


if __name__ == "__main__":
    raise SystemExit(main())
