"""`orch-mcp demo`: a whole team end to end, one command, no LLM and no setup.

It starts a private embedded Redis (unless REDIS_URL or --url points at one), creates a session, and
starts one moogle and N chocobo `orch-mcp serve` processes. Scripted agents then drive those
servers through MCP over stdio exactly as LLM agents would: each chocobo loops wait_for_task →
"work" → report until it is told to shut down; the moogle sends M tasks round-robin, waits for every
report, shuts the children down and reads every task's record. It shows progress while it works,
prints a result table (task, child, state, time), removes the session and exits 0 when every task is
done.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RedisConfig
from . import common

# The team's modules (mcp, rich, anyio) load only once the flags are known to be good: a usage error is quick.
if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

    from .demo_team import Demo, ServerLogs

STATE_STYLE = {"queued": "cyan", "working": "yellow", "done": "green", "failed": "red", "cancelled": "dim"}


def live_view(demo: Demo) -> RenderableType:
    """What a terminal shows while the demo runs."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    done = demo.count("done", "failed", "cancelled")
    width = 30
    filled = int(width * done / max(len(demo.rows), 1))
    bar = Text()
    bar.append("━" * filled, style="green")
    bar.append("━" * (width - filled), style="grey37")
    bar.append(f"  {done}/{len(demo.rows)} tasks reported · {len(demo.ready)}/{demo.children + 1} agents connected")
    bar.append(f" · {demo.elapsed():.1f} s", style="dim")
    table = Table(box=box.SIMPLE, pad_edge=False)
    for name in ("#", "child", "state", "prompt"):
        table.add_column(name)
    for row in demo.rows:
        table.add_row(str(row.n), str(row.child_id), Text(row.state, style=STATE_STYLE.get(row.state, "")), row.prompt)
    return Group(bar, table)


def result_table(demo: Demo) -> Table:
    """The final table: task, child, state, time."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="orch-mcp demo: results", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("child", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("prompt", min_width=10)
    for row in demo.rows:
        table.add_row(
            str(row.n),
            (row.task_id or "")[:8],
            str(row.child_id),
            Text(row.state, style=STATE_STYLE.get(row.state, "")),
            f"{row.seconds:.2f} s" if row.seconds is not None else "-",
            Text(row.prompt, no_wrap=True, overflow="ellipsis"),
        )
    return table


# ---------------------------------------------------------------- the command


def build_parser() -> argparse.ArgumentParser:
    """The demo command line."""
    parser = common.make_parser(
        "orch-mcp demo",
        "Run a whole team end to end: a private Redis (unless REDIS_URL or --url is set), one moogle and N "
        "chocobo `orch-mcp serve` processes driven over MCP by scripted agents, M tasks; prints a result table "
        "and cleans up.",
        "examples:\n  orch-mcp demo\n  orch-mcp demo --children 5 --tasks 20\n  orch-mcp demo --json",
    )
    parser.add_argument(
        "--children",
        type=common.int_range(1, 16),
        default=3,
        metavar="N",
        help="how many chocobo servers to start, 1..16 (default: 3)",
    )
    parser.add_argument(
        "--tasks",
        type=common.int_range(1, 500),
        default=9,
        metavar="M",
        help="how many tasks the moogle sends, 1..500 (default: 9)",
    )
    parser.add_argument(
        "--work-seconds",
        type=common.seconds,
        default=0.3,
        metavar="S",
        help="average simulated work per task (default: 0.3)",
    )
    parser.add_argument(
        "--timeout", type=common.seconds, default=120.0, metavar="S", help="give up after this long (default: 120)"
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as one JSON document")
    parser.add_argument(
        "--url",
        "--redis-url",
        dest="url",
        metavar="URL",
        help="use this Redis instead of a private one (default: REDIS_URL, else a private embedded redis-server)",
    )
    common.add_tls_args(parser)
    return parser


@contextmanager
def redis_for_demo(given: RedisConfig | None) -> Iterator[tuple[RedisConfig, str]]:
    """(config, description): the given Redis, or a private embedded one for the length of the demo."""
    from ..embedded import EmbeddedRedis, redis_version

    if given is not None:
        yield given, given.display_url
        return
    with EmbeddedRedis() as server:
        where = f"a private {Path(server.binary).name} {redis_version(server.binary)} at {server.url}"
        yield RedisConfig(url=server.url), where


async def play(args: argparse.Namespace, cfg: RedisConfig, demo: Demo, logs: ServerLogs) -> dict[str, Any]:
    """Create the session, run the team, clean up; returns the session facts."""
    import anyio

    from .. import sessions
    from ..keys import NamespaceKeys
    from ..redis_client import create_async_client
    from ..redis_failures import redis_errors
    from ..utils import new_id
    from .demo_team import run_team

    namespace = f"demo-{new_id()[:8]}"
    client = create_async_client(cfg)
    try:
        with redis_errors(cfg):
            session = await sessions.init_session(
                client, namespace=namespace, mode="summoner", max_children=args.children, ttl_s=600
            )
        kids = common.plural(args.children, "child", "children")
        demo.log(f"session {session.session_id} created ({kids}, namespace {namespace})")
        try:
            with anyio.move_on_after(args.timeout or None) as scope:
                await run_team(demo, cfg, namespace, session.session_id, logs)
        except Exception:
            if demo.failure is None:
                raise
        if scope.cancelled_caught and demo.failure is None:
            demo.failure = f"the team did not finish within {args.timeout:g} s"
        with redis_errors(cfg):
            removed = await sessions.cleanup_session(client, session)
            ns = NamespaceKeys(namespace)  # the demo's own namespace: nobody is left in it to be told anything
            await client.delete(ns.current, ns.cleaned(session.session_id))
        demo.log(f"session cleaned up ({len(removed.removed_keys)} keys removed)")
        return {"session_id": session.session_id, "namespace": namespace, "removed_keys": len(removed.removed_keys)}
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def handle(args: argparse.Namespace) -> int:
    """Run the demo and print its result."""
    import anyio
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    from .demo_team import SAMPLE_PROMPTS, Demo, ServerLogs, TaskRow
    from .view import show

    # A closed terminal (SIGHUP) or a kill (SIGTERM) unwinds like Ctrl+C: the servers and the private Redis stop.
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            signal.signal(signum, _interrupt)
    err = Console(stderr=True, highlight=False)
    live = err.is_terminal
    plain = not live and not args.json
    rows = [
        TaskRow(n=i + 1, prompt=SAMPLE_PROMPTS[i % len(SAMPLE_PROMPTS)], child_id=i % args.children + 1)
        for i in range(args.tasks)
    ]
    demo = Demo(children=args.children, rows=rows, work_seconds=args.work_seconds, say=common.printer(quiet=True))
    if plain:
        demo.say = common.note
    url_given = args.url or os.environ.get("REDIS_URL") or None
    given = common.redis_config(args) if url_given else None  # with the TLS settings of a rediss:// URL
    with ExitStack() as stack:
        logs = ServerLogs(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="orch-demo-"))))
        stack.callback(logs.close)
        if not url_given and not args.json:
            common.note("orch-mcp demo: starting a private Redis …")
        cfg, where = stack.enter_context(redis_for_demo(given))
        demo.started = time.monotonic()
        if plain:
            demo.log(f"Redis: {where}")
        if live:
            with Live(get_renderable=lambda: live_view(demo), console=err, refresh_per_second=12, transient=True):
                facts = anyio.run(play, args, cfg, demo, logs)
        else:
            facts = anyio.run(play, args, cfg, demo, logs)
    elapsed = demo.elapsed()
    all_done = demo.count("done") == len(rows) and demo.failure is None
    if args.json:
        common.print_json(
            {
                "ok": all_done,
                **facts,
                "redis": where,
                "children": args.children,
                "elapsed_s": round(elapsed, 3),
                "tasks": [row.to_dict() for row in rows],
                "error": demo.failure,
            }
        )
    else:
        plural = "" if args.children == 1 else "s"
        summary = [
            f"{demo.count('done')}/{len(rows)} tasks done by {args.children} chocobo{plural} in {elapsed:.1f} s",
            f"  agents: 1 moogle + {args.children} chocobo{plural}, each an `orch-mcp serve` process over MCP stdio",
            f"  Redis:  {where}",
            f"  session {facts['session_id']} cleaned up ({facts['removed_keys']} keys)",
        ]
        show(Console(highlight=False), Group(result_table(demo), *(Text(line) for line in summary)))
    if demo.failure is not None:
        return common.fail(f"demo failed: {demo.failure}")
    if not all_done:
        return common.fail(f"demo failed: only {demo.count('done')} of {len(rows)} tasks ended done")
    return common.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`orch-mcp demo`."""
    return common.run(build_parser(), handle, argv)


if __name__ == "__main__":
    raise SystemExit(main())
