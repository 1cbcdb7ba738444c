"""Chocobo scenario: take tasks, "work" on them, report, until a shutdown arrives or after --max-tasks.

python -m orch_mcp.scenarios.chocobo_scenario --session-id SESSION_ID --child-id 1 --max-tasks 10
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..agents import Child
from ..cli import common
from ..messages import ShutdownMessage, TaskMessage

MODULE = "orch_mcp.scenarios.chocobo_scenario"


def build_parser() -> argparse.ArgumentParser:
    """The chocobo scenario's command line."""
    prog = common.prog_name("scenario chocobo", MODULE)
    parser = common.make_parser(
        prog,
        "Play a chocobo (child): wait for a task, simulate the work, report the result, and repeat until "
        "the moogle sends a shutdown or --max-tasks are done. Ctrl+C stops it; an unfinished task comes "
        "back when a chocobo with the same --child-id starts again.",
        f"example:\n  {prog} --session-id SESSION_ID --child-id 1 --max-tasks 10",
    )
    parser.add_argument(
        "--session-id",
        default="current",
        metavar="ID",
        help="the session (default: the namespace's current one, from the latest init)",
    )
    parser.add_argument(
        "--child-id",
        type=common.int_range(1),
        default=1,
        metavar="N",
        help="which child this is, 1..max_children of the session (default: 1)",
    )
    parser.add_argument(
        "--max-tasks",
        type=common.int_range(0),
        default=0,
        metavar="N",
        help="stop after N tasks; 0 = until shutdown (default: 0)",
    )
    parser.add_argument(
        "--work-seconds",
        type=common.seconds,
        default=0.2,
        metavar="SECONDS",
        help="how long the simulated work on each task takes (default: 0.2)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=common.seconds,
        default=0.0,
        metavar="SECONDS",
        help="stop when no task arrives for this long; 0 waits for ever (default: 0)",
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as one JSON document at the end")
    common.add_connection_args(parser, namespace=True)
    return parser


def simulate_work(task: TaskMessage, child_id: int, seconds: float) -> str:
    """Stand-in for an LLM doing the task: take `seconds`, return a result text."""
    time.sleep(seconds)  # the simulated work itself, not a wait for anything
    return f"chocobo {child_id} did {task.prompt!r}"


def handle(args: argparse.Namespace) -> int:
    """The chocobo loop."""
    say = common.printer(quiet=args.json)
    done: list[dict[str, Any]] = []
    stopped_by = "max_tasks"
    with Child(
        args.session_id, args.child_id, namespace=common.namespace(args), redis_config=common.redis_config(args)
    ) as child:
        sid = child.session.session_id
        try:
            say(f"chocobo {args.child_id}: serving session {sid}; waiting for tasks")
            while not args.max_tasks or len(done) < args.max_tasks:
                message = child.take(args.idle_timeout or None)
                if message is None:
                    stopped_by = "idle_timeout"
                    say(f"chocobo {args.child_id}: no task for {args.idle_timeout:g} s; stopping")
                    break
                if isinstance(message, ShutdownMessage):
                    stopped_by = "shutdown"
                    say(f"chocobo {args.child_id}: shutdown received ({message.reason or 'no reason given'})")
                    break
                started = time.monotonic()
                say(f"chocobo {args.child_id}: working on {message.prompt!r}  [{message.task_id[:8]}]")
                result = simulate_work(message, args.child_id, args.work_seconds)
                outcome = child.report(message.task_id, result)
                seconds = round(time.monotonic() - started, 3)
                done.append(
                    {
                        "task_id": message.task_id,
                        "prompt": message.prompt,
                        "result": result,
                        "accepted": outcome.accepted,
                        "seconds": seconds,
                    }
                )
                say(f"chocobo {args.child_id}: reported {message.task_id[:8]} after {seconds:.2f} s")
        except KeyboardInterrupt:
            stopped_by = "interrupted"
            common.note(f"chocobo {args.child_id}: stopped by Ctrl+C; an unreported task is kept for the next start")
    if args.json:
        common.print_json({"session_id": sid, "child_id": args.child_id, "stopped_by": stopped_by, "tasks": done})
    else:
        print(f"chocobo {args.child_id}: {len(done)} task{'' if len(done) == 1 else 's'} done ({stopped_by})")
    return common.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m orch_mcp.scenarios.chocobo_scenario` / `orch-mcp scenario chocobo`."""
    return common.run(build_parser(), handle, argv)


if __name__ == "__main__":
    raise SystemExit(main())
