"""What a client's tool list shows beside each tool's name and schemas: its title and its annotations.

One table for every tool of every role, applied where the tools are built (`app._tool`). The hints
tell a client what a call does to the world, so it can decide what to confirm with its user and
what to retry; every tool acts only on this server's Redis, so none is open-world.

R = readOnlyHint, D = destructiveHint, I = idempotentHint (openWorldHint is false for all):

    tool             R D I  why
    init_session     - D -  makes a new session the namespace's current one: the moogle and chocobos move to it
                            at their next call and leave the old session's queued work behind; each call makes
                            another session
    get_session      R - I  reads a session's configuration
    list_sessions    R - I  reads the namespace's session index
    cleanup_session  - D I  deletes every key of a session; a repeat finds no such session and changes nothing
    session_status   R - I  reads counts and each child's state (no reaper, no TTL refresh)
    send_task        - - -  adds a task; each call queues another one
    wait_for_report  - - -  takes the next report off the queue (acknowledging the one before); the report stays
                            in the task's record (get_task), so nothing is lost; each call takes another report
    get_task         R - I  reads one task's record
    list_tasks       R - I  reads the session's task records
    cancel_task      - D I  abandons a task (a working child's result is refused from then on); a repeat is
                            refused as already cancelled and changes nothing
    requeue_task     - D -  ends the current delivery (the child's late report is refused as stale) and delivers
                            the task anew; each call starts another delivery
    shutdown         - D -  stops children's work loops; each call queues one more shutdown message
    wait_for_task    - - -  takes the next task (queued -> working, one more delivery); each call may take another
    heartbeat        - - -  pushes the task's deadline from now and records the note: a repeat pushes it again,
                            so its effect depends on when it is called
    report           - - I  records the result (the first report of a delivery wins); the same report again is
                            answered as a duplicate (or refused as stale) and changes nothing, so a retry after a
                            lost answer is safe

Destructive and idempotent are given for read-only tools too (false and true, what read-only implies) for
clients that read each hint on its own. The title is also set in the annotations, where clients of the
2025-03-26 protocol look for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcp_types import ToolAnnotations


@dataclass(frozen=True)
class ToolInfo:
    """A tool's title and annotations."""

    title: str
    annotations: ToolAnnotations


def _info(title: str, *, read_only: bool = False, destructive: bool = False, idempotent: bool = False) -> ToolInfo:
    return ToolInfo(
        title,
        ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=destructive and not read_only,
            idempotent_hint=idempotent or read_only,
            open_world_hint=False,
        ),
    )


TOOL_INFO: dict[str, ToolInfo] = {
    # summoner
    "init_session": _info("Create a session", destructive=True),
    "get_session": _info("Show a session", read_only=True),
    "list_sessions": _info("List sessions", read_only=True),
    "cleanup_session": _info("Remove a session", destructive=True, idempotent=True),
    "session_status": _info("Session status", read_only=True),
    # moogle
    "send_task": _info("Send a task to a child"),
    "wait_for_report": _info("Wait for the next report"),
    "get_task": _info("Read a task", read_only=True),
    "list_tasks": _info("List tasks", read_only=True),
    "cancel_task": _info("Cancel a task", destructive=True, idempotent=True),
    "requeue_task": _info("Requeue a task", destructive=True),
    "shutdown": _info("Stop children", destructive=True),
    # chocobo
    "wait_for_task": _info("Wait for the next task"),
    "heartbeat": _info("Still working on a task"),
    "report": _info("Report a task's result", idempotent=True),
}


def tool_info(name: str) -> ToolInfo:
    """The title and annotations of tool `name` (every tool a server lists must have a row in TOOL_INFO)."""
    try:
        return TOOL_INFO[name]
    except KeyError:
        raise KeyError(f"tool {name!r} has no row in orch_mcp/server/catalog.py TOOL_INFO: give it a title") from None
