"""`orch-mcp status [SESSION] [--json]`: a session's children, queues, task counts and latest events, once."""

from __future__ import annotations

import argparse

import anyio
from rich.console import Console

from ..snapshot import SessionSnapshot, take_snapshot
from . import common, view


def build_parser() -> argparse.ArgumentParser:
    """The status command line."""
    parser = common.make_parser(
        "orch-mcp status",
        "Print a session's state once: each child (idle, working on which task for how long, offline), "
        "queue depths, task counts and the latest events. `orch-mcp watch` shows the same, live.",
        "examples:\n  orch-mcp status\n  orch-mcp status 1f58d6a8361044958f3aca2a14a586a6 --json",
    )
    parser.add_argument("--json", action="store_true", help="print the snapshot as one JSON document")
    view.add_view_args(parser)
    return parser


async def snapshot_once(args: argparse.Namespace) -> SessionSnapshot:
    """Read the snapshot of the session named by the arguments."""
    async with view.open_session(args) as (client, session):
        return await take_snapshot(client, session, events=args.events)


def handle(args: argparse.Namespace) -> int:
    """Print the snapshot."""
    snap = anyio.run(snapshot_once, args)
    if args.json:
        common.print_json(snap.model_dump(mode="json"))
    else:
        view.show(Console(highlight=False), view.render(snap, source=f"Redis {common.redis_config(args).display_url}"))
    return common.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`orch-mcp status`."""
    return common.run(build_parser(), handle, argv)


if __name__ == "__main__":
    raise SystemExit(main())
