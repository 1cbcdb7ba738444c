"""At-least-once task delivery within a session: one state machine, every transition one Lua script.

A task's record lives in its child's hash `records:<n>`; `task_child` maps task ids to children and
`counts` holds the number of tasks per state, so no operation ever touches one key per task. A
message moves between lists only by atomic commands (LMOVE/BLMOVE, or inside a script), so a crash
or a cancelled wait at any moment leaves it on exactly one list. Queues are read as bytes; whatever
is not a valid message for its place goes to `dead` by its exact bytes, and the reader goes on.

    state     event (script)                        next        keys changed
    --------  ------------------------------------  ----------  ------------------------------------------
    -         send_task (SEND)                      queued      records:n, task_child, counts, tasks:n,
                                                                inflight:n (a held shutdown is withdrawn),
                                                                stopped, status
    queued    take (TRY_TAKE / CLAIM)               working     tasks:n -> inflight:n, records:n, counts,
                                                                last_seen, status
    -         take of a raw-pushed task (CLAIM)     working     the same, record adopted from the message
    working   take again after a crash or cancel    working     records:n (delivery_count + 1), status
    working   report (REPORT)                       done|failed inflight:n -> reports (summoner) or
                                                                reports:n + doorbell (normal), records:n,
                                                                counts, last_seen, status
    queued    cancel_task (CANCEL)                  cancelled   tasks:n, records:n, counts, status
    working   cancel_task (CANCEL)                  cancelled   records:n, counts, status; the child's
                                                                next take drops it (and says so), its
                                                                report is refused
    -         shutdown (SHUTDOWN)                   -           tasks:n, status
    -         take of a shutdown (STOPPED)          -           the shutdown stays in inflight:n (sticky),
                                                                stopped, last_seen, status
    -         a message not valid there (DEAD)      -           the list it was on -> dead (capped), status

The parent takes reports with LMOVE/BLMOVE (summoner mode) or MOVE_REPORT following the doorbell
(normal mode) into `reports:inflight`, where each stays until the next wait acknowledges it.
"""

from __future__ import annotations

from ..redis_client import Redis
from ..sessions import SessionConfig
from .child import (
    FencedError,
    Heartbeat,
    ReportOutcome,
    StaleError,
    Taken,
    heartbeat_task,
    queue_depth,
    report_task,
    take,
    take_task,
)
from .common import check_size, dead_letters, recent_events
from .listing import TaskListing, TaskSummary, list_tasks
from .lua import DEAD_LETTER_CAP, STATUS_STREAM_MAXLEN
from .parent import (
    DEFAULT_MAX_DELIVERIES,
    cancel_task,
    find_child,
    get_task,
    requeue_task,
    restore_report,
    send_shutdown,
    send_task,
    take_report,
)
from .presence import PRESENCE_TTL_S, HeldError, claim_child, claim_parent, presence_token, release
from .reaper import OfflineChild, offline_children, reap
from .records import FINISHED, TASK_STATES, Attempt, DeadLetter, TaskRecord, TaskState
from .status import (
    ChildStatus,
    Outstanding,
    SessionStatus,
    age_s,
    iso_from_ms,
    outstanding,
    server_ms,
    session_status,
)
from .types import OnSlice


async def claim_presence(
    r: Redis, cfg: SessionConfig, child_id: int, token: str, ttl_s: float = PRESENCE_TTL_S
) -> None:
    """Claim (or renew) child `child_id` for `token` now; HeldError if another holder has it."""
    if not await claim_child(r, cfg, child_id, token, ttl_s=ttl_s):
        raise HeldError(
            f"child {child_id} of session {cfg.session_id!r} is already served by another live orch-mcp process"
        )


async def release_presence(r: Redis, cfg: SessionConfig, child_id: int, token: str) -> None:
    """Give up the claim on child `child_id`, if it is still ours."""
    await release(r, cfg, cfg.keys.presence(child_id), token)


__all__ = [
    "DEAD_LETTER_CAP",
    "DEFAULT_MAX_DELIVERIES",
    "FINISHED",
    "PRESENCE_TTL_S",
    "STATUS_STREAM_MAXLEN",
    "TASK_STATES",
    "Attempt",
    "ChildStatus",
    "DeadLetter",
    "FencedError",
    "Heartbeat",
    "HeldError",
    "OfflineChild",
    "OnSlice",
    "Outstanding",
    "ReportOutcome",
    "SessionStatus",
    "StaleError",
    "Taken",
    "TaskListing",
    "TaskRecord",
    "TaskState",
    "TaskSummary",
    "age_s",
    "cancel_task",
    "check_size",
    "claim_child",
    "claim_parent",
    "claim_presence",
    "dead_letters",
    "find_child",
    "get_task",
    "heartbeat_task",
    "iso_from_ms",
    "list_tasks",
    "offline_children",
    "outstanding",
    "presence_token",
    "queue_depth",
    "reap",
    "recent_events",
    "release",
    "release_presence",
    "report_task",
    "requeue_task",
    "restore_report",
    "send_shutdown",
    "send_task",
    "server_ms",
    "session_status",
    "take",
    "take_report",
    "take_task",
]
