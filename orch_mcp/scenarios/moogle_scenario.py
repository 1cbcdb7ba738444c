"""Moogle scenario: send tasks round-robin to the chocobos, collect every report, then shut the chocobos down.

python -m orch_mcp.scenarios.moogle_scenario --session-id SESSION_ID
python -m orch_mcp.scenarios.moogle_scenario --session-id SESSION_ID --tasks "Task 1" "Task 2" "Task 3"
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..agents import Parent
from ..cli import common

MODULE = "orch_mcp.scenarios.moogle_scenario"
DEFAULT_TASKS = ["Summarise the design notes", "List the open questions", "Draft the release checklist"]


def build_parser() -> argparse.ArgumentParser:
    """The moogle scenario's command line."""
    prog = common.prog_name("scenario moogle", MODULE)
    parser = common.make_parser(
        prog,
        "Play the moogle (parent): send tasks round-robin to the session's chocobos, wait for every "
        "report, print them, then tell the chocobos to shut down.",
        f'examples:\n  {prog} --session-id SESSION_ID\n  {prog} --session-id SESSION_ID --tasks "Task 1" "Task 2"',
    )
    parser.add_argument(
        "--session-id",
        default="current",
        metavar="ID",
        help="the session (default: the namespace's current one, from the latest init)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        metavar="PROMPT",
        default=DEFAULT_TASKS,
        help="the task prompts, sent to children 1, 2, … in turn (default: three sample tasks)",
    )
    parser.add_argument(
        "--timeout",
        type=common.seconds,
        default=120.0,
        metavar="SECONDS",
        help="give up when the reports are not all in after this long; 0 waits for ever (default: 120)",
    )
    parser.add_argument("--no-shutdown", action="store_true", help="leave the chocobos running at the end")
    parser.add_argument("--json", action="store_true", help="print the outcome as one JSON document at the end")
    common.add_connection_args(parser, namespace=True)
    return parser


def handle(args: argparse.Namespace) -> int:
    """Send, collect, shut down; exit code 1 if some reports did not arrive in time."""
    say = common.printer(quiet=args.json)
    started = time.monotonic()
    with Parent(args.session_id, namespace=common.namespace(args), redis_config=common.redis_config(args)) as parent:
        session = parent.session
        kids = common.plural(session.max_children, "child", "children")
        say(f"moogle: session {session.session_id} ({session.mode} mode, {kids})")
        offline = [c.child_id for c in parent.status().children if not c.online]
        if offline and not args.json:
            which = ", ".join(map(str, offline))
            common.note(
                f"moogle: chocobo {which} is not running yet; its tasks wait in its queue until it starts"
                if len(offline) == 1
                else f"moogle: chocobo {which} are not running yet; their tasks wait in their queues until they start"
            )
        tasks: dict[str, dict[str, Any]] = {}
        for i, prompt in enumerate(args.tasks):
            child_id = i % session.max_children + 1
            task = parent.send_task(child_id, prompt, context={"n": i + 1})
            tasks[task.task_id] = {
                "n": i + 1,
                "task_id": task.task_id,
                "child_id": child_id,
                "prompt": prompt,
                "status": None,
                "result": None,
                "seconds": None,
            }
            say(f"sent task {i + 1}/{len(args.tasks)} to chocobo {child_id}: {prompt}  [{task.task_id[:8]}]")
        received = 0
        deadline = None if not args.timeout else started + args.timeout
        while received < len(tasks):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            report = parent.wait_for_report(min(left, 25.0) if left is not None else 25.0)
            if report is None or report.task_id not in tasks or tasks[report.task_id]["status"] is not None:
                continue
            received += 1
            entry = tasks[report.task_id]
            entry.update(status=report.status, result=report.result, seconds=round(time.monotonic() - started, 3))
            say(
                f"report {received}/{len(tasks)} from chocobo {report.child_id} on task {entry['n']}: "
                f"{report.status}: {report.result}"
            )
        told: list[int] = [] if args.no_shutdown else parent.shutdown(reason="moogle scenario finished")
        parent.wait_for_report(0.05)  # acknowledges the last report taken (a wait is what acknowledges)
    elapsed = time.monotonic() - started
    complete = received == len(tasks)
    if args.json:
        common.print_json(
            {
                "session_id": session.session_id,
                "complete": complete,
                "elapsed_s": round(elapsed, 3),
                "tasks": list(tasks.values()),
                "shutdown_sent_to": told,
            }
        )
    else:
        summary = (
            f"all {len(tasks)} reports in after {elapsed:.1f} s"
            if complete
            else (f"only {received} of {len(tasks)} reports arrived within {args.timeout:g} s")
        )
        if told:
            summary += f"; told chocobo {', '.join(map(str, told))} to shut down"
        print(summary)
    if not complete:
        return common.fail(
            f"{len(tasks) - received} task(s) unreported; are their chocobos running? "
            f"(orch-mcp status {session.session_id})"
        )
    return common.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m orch_mcp.scenarios.moogle_scenario` / `orch-mcp scenario moogle`."""
    return common.run(build_parser(), handle, argv)


if __name__ == "__main__":
    raise SystemExit(main())
