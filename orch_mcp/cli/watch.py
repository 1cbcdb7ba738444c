"""`orch-mcp watch [SESSION]`: a live view of a session, redrawn when its status stream gets an event.

It blocks on the session's status stream (XREAD BLOCK), so the view changes as soon as a task is
queued, taken or reported; once a second it also redraws to move the "working for N s" clocks and
notice children that went offline. Ctrl+C quits (exit code 0).
"""

from __future__ import annotations

import argparse
from datetime import datetime

import anyio
from rich.console import Console
from rich.live import Live

from ..snapshot import take_snapshot, wait_for_events
from . import common, view

TICK_MS = 1000


def build_parser() -> argparse.ArgumentParser:
    """The watch command line."""
    parser = common.make_parser(
        "orch-mcp watch",
        "Watch a session live: each child (idle, working on which task for how long, offline), queue depths, "
        "in-flight and finished counts, and the latest events, redrawn on every event. Ctrl+C quits. "
        "Without a terminal it prints one line per event instead.",
        "examples:\n  orch-mcp watch\n  orch-mcp watch 1f58d6a8361044958f3aca2a14a586a6 --events 15",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON snapshot (one per line) after each event")
    view.add_view_args(parser)
    return parser


async def watch(args: argparse.Namespace, console: Console) -> int:
    """Follow the session until Ctrl+C or until it is removed."""
    source = f"Redis {common.redis_config(args).display_url}"
    async with view.open_session(args) as (client, session):
        snap = await take_snapshot(client, session, events=args.events)
        last_id = snap.last_event_id
        if args.json:
            common.print_json(snap.model_dump(mode="json"))
        elif console.is_terminal:
            footer = "Ctrl+C to quit"
            with Live(view.render(snap, source=source, footer=footer), console=console, auto_refresh=False) as live:
                while snap.alive:
                    events = await wait_for_events(client, session, last_id, TICK_MS)
                    last_id = events[-1].id if events else last_id
                    snap = await take_snapshot(client, session, events=args.events)
                    stamp = datetime.now().strftime("%H:%M:%S")
                    footer = f"updated {stamp}{' on ' + events[-1].state if events else ''} · Ctrl+C to quit"
                    live.update(view.render(snap, source=source, footer=footer), refresh=True)
            common.note(f"session {session.session_id} ended (cleaned up or expired)")
            return common.EXIT_OK
        else:
            print(f"watching session {session.session_id} ({session.mode} mode); Ctrl+C to stop", flush=True)
            for line in view.event_lines(list(reversed(snap.events))):
                print(line, flush=True)
        while snap.alive:
            events = await wait_for_events(client, session, last_id, TICK_MS)
            if not events:
                snap.alive = bool(await client.exists(session.keys.config))
                continue
            last_id = events[-1].id
            if args.json:
                snap = await take_snapshot(client, session, events=args.events)
                common.print_json(snap.model_dump(mode="json"))
            else:
                for line in view.event_lines(events):
                    print(line, flush=True)
        common.note(f"session {session.session_id} ended (cleaned up or expired)")
        return common.EXIT_OK


def handle(args: argparse.Namespace) -> int:
    """Run the watch loop."""
    console = Console(highlight=False)
    code: int = anyio.run(watch, args, console)
    return code


def main(argv: list[str] | None = None) -> int:
    """`orch-mcp watch`."""
    return common.run(build_parser(), handle, argv, interrupted=common.EXIT_OK)


if __name__ == "__main__":
    raise SystemExit(main())
