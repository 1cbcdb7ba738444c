"""A chocobo in its own process, for test_crash_recovery: `python crash_child.py URL SESSION_ID CHILD_ID hang|report`.

It claims the child id (as an `orch-mcp serve --role chocobo` would), prints `CLAIMED`, takes one task and
prints `TOOK <task_id>`. With `hang` it then blocks on its stdin until it is killed; with `report` it reports
the task and prints `REPORTED <accepted>`. The namespace comes from ORCH_NAMESPACE.
"""

from __future__ import annotations

import os
import sys

from orch_mcp.agents import Child
from orch_mcp.messages import TaskMessage


def main() -> int:
    url, session_id, child_id, action = sys.argv[1:5]
    with Child(session_id, int(child_id), url=url) as child:
        print("CLAIMED", flush=True)
        task = child.take(20)
        if not isinstance(task, TaskMessage):
            print(f"NOTHING {task!r}", flush=True)
            return 1
        print(f"TOOK {task.task_id}", flush=True)
        if action == "hang":
            sys.stdin.read()  # the test keeps the pipe open and SIGKILLs us while we sit here
            return 1
        outcome = child.report(task.task_id, f"done by pid {os.getpid()}")
        print(f"REPORTED {outcome.accepted}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
