"""How `orch-mcp status` and `orch-mcp watch` draw a session snapshot (rich renderables, no escape codes by hand)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone

import anyio
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..redis_client import Redis, create_async_client
from ..redis_failures import redis_errors
from ..sessions import SessionConfig, resolve_session
from ..snapshot import ChildView, EventView, SessionSnapshot
from . import common

STATE_STYLE = {"idle": "green", "working": "bold yellow", "offline": "red"}
EVENT_STYLE = {"done": "green", "failed": "red", "working": "yellow", "queued": "cyan", "dead_letter": "bold red"}


def add_view_args(parser: argparse.ArgumentParser) -> None:
    """SESSION (or --session-id / --prefix, as in the other commands), --events and the connection flags."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "session",
        nargs="?",
        metavar="SESSION",
        help="a session id or prefix (default: the namespace's current session)",
    )
    which.add_argument("--session-id", metavar="ID", help="the session's id (the same as SESSION)")
    which.add_argument("--prefix", metavar="PREFIX", help="the session's prefix, e.g. myproject-host-001")
    parser.add_argument(
        "--events",
        type=common.int_range(0, 100),
        default=8,
        metavar="N",
        help="how many of the latest events to show (default: 8)",
    )
    common.add_connection_args(parser, namespace=True)


def _ago(iso: str | None, now: datetime) -> str:
    if not iso:
        return "never"
    try:
        seconds = (now - datetime.fromisoformat(iso)).total_seconds()
    except ValueError:
        return "?"
    if seconds < 60:
        return f"{max(seconds, 0):.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _clock(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return iso


def _short(text: str | None, width: int) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _child_row(child: ChildView, now: datetime) -> list[RenderableType]:
    return [
        str(child.child_id),
        Text(child.description, style=STATE_STYLE.get(child.state, "")),
        Text(_short(child.in_flight_prompt, 40), no_wrap=True, overflow="ellipsis"),
        str(child.queue_depth),
        str(child.finished),
        _ago(child.last_seen, now),
    ]


def render(snap: SessionSnapshot, *, source: str = "", footer: str = "") -> RenderableType:
    """The whole view: header, children, counts, latest events."""
    now = datetime.fromisoformat(snap.taken_at) if snap.taken_at else datetime.now(timezone.utc)
    header = Text()
    header.append("session ", style="bold")
    header.append(snap.session_id, style="bold cyan")
    header.append(f" · {snap.mode} mode · {common.plural(snap.max_children, 'child', 'children')}")
    header.append(f"\nprefix {snap.prefix} · namespace {snap.namespace}", style="dim")
    if not snap.alive:
        header.append("\nthis session no longer exists (cleaned up or expired)", style="bold red")
    details = [source] if source else []
    if snap.alive and snap.ttl_left_s is not None:
        details.append(f"expires in {snap.ttl_left_s} s if idle")
    if details:
        header.append("\n" + " · ".join(details), style="dim")

    children = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=False)
    children.add_column("child", justify="right", no_wrap=True)
    children.add_column("state", no_wrap=True)
    children.add_column("task", min_width=8)
    children.add_column("queue", justify="right", no_wrap=True)
    children.add_column("done", justify="right", no_wrap=True)
    children.add_column("last seen", no_wrap=True)
    for child in snap.children:
        children.add_row(*_child_row(child, now))

    counts = Text()
    for state in ("queued", "working", "done", "failed", "cancelled"):
        counts.append(f"{state} ", style="dim")
        counts.append(f"{snap.tasks.get(state, 0)}", style=EVENT_STYLE.get(state, "bold"))
        counts.append("   ")
    counts.append("\n")
    counts.append(f"in flight {snap.in_flight} · finished {snap.finished} · reports waiting {snap.report_queue_depth}")
    counts.append(f" · dead letters {snap.dead_letters}", style="bold red" if snap.dead_letters else "")

    parts: list[RenderableType] = [header, children, counts]
    if snap.events:
        events = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="latest events", title_justify="left")
        for name in ("time", "event", "child", "task", "detail"):
            events.add_column(name)
        for event in snap.events:
            events.add_row(
                _clock(event.at),
                Text(event.state, style=EVENT_STYLE.get(event.state, "")),
                "" if event.child_id is None else str(event.child_id),
                (event.task_id or "")[:8],
                _short(event.detail, 40),
            )
        parts.append(events)
    elif snap.last_event_id is None:
        parts.append(Text("no events yet", style="dim"))
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)


def show(console: Console, renderable: RenderableType) -> None:
    """Print `renderable`; without a terminal (piped, redirected) as plain lines with no trailing spaces."""
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    for line in captured.get().splitlines():
        print(line.rstrip(), flush=True)


def event_lines(events: list[EventView]) -> list[str]:
    """Events as plain lines, in the order given (watch without a terminal)."""
    lines = []
    for event in events:
        child = f" child {event.child_id}" if event.child_id is not None else ""
        task = f" task {event.task_id[:8]}" if event.task_id else ""
        detail = f" ({event.detail})" if event.detail else ""
        lines.append(f"{_clock(event.at)} {event.state}{child}{task}{detail}")
    return lines


@asynccontextmanager
async def open_session(args: argparse.Namespace) -> AsyncIterator[tuple[Redis, SessionConfig]]:
    """An async client and the session named on the command line; Redis failures become the project's errors."""
    cfg = common.redis_config(args)
    client = create_async_client(cfg)
    try:
        with redis_errors(cfg):
            ref = args.session or args.session_id
            session = await resolve_session(client, common.namespace(args), ref, prefix=args.prefix)
            yield client, session
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
