"""The texts a model reads: each role's instructions and the text of every tool answer."""

from __future__ import annotations

import json

from ..delivery import (
    Heartbeat,
    OfflineChild,
    Outstanding,
    ReportOutcome,
    SessionStatus,
    TaskListing,
    TaskRecord,
)
from ..messages import ReportMessage, TaskMessage
from ..sessions import CleanupResult, SessionConfig
from .models import TaskView
from .settings import ServerSettings


def instructions(settings: ServerSettings) -> str:
    """The role's `instructions`: its loop, in a few lines an LLM can follow."""
    where = (
        f"session {settings.session_id}"
        if settings.session_id != "current"
        else f"the latest session of namespace {settings.namespace!r}"
    )
    if settings.role == "summoner":
        return (
            "You are the summoner of an orch-mcp team: you create and manage the session in which a moogle (the "
            "parent agent) hands tasks to chocobos (child agents).\n"
            "1. init_session(max_children=N), N = the number of chocobo agents.\n"
            "2. Tell the moogle and the chocobos the session is ready (their servers pick up the namespace's current "
            "session by themselves; one configured for a fixed session needs the new session_id in its "
            "configuration).\n"
            "3. Follow the work with session_status (children idle/working/stopped/offline, task counts).\n"
            "4. When the moogle has all its reports and has shut the chocobos down, cleanup_session(session_id) "
            "removes the session's data; agents still in it are told it was cleaned up, and stop.\n"
            "list_sessions and get_session show what exists."
        )
    if settings.role == "moogle":
        return (
            f"You are the moogle, the parent agent of an orch-mcp team working in {where}: you split the work into "
            "self-contained tasks for chocobo children (child ids 1..max_children of the session) and collect "
            "their results.\n"
            "1. send_task(child_id, prompt, context) for each piece of work.\n"
            '2. Call wait_for_report again and again: status "report" carries task_id, child_id, status (done/failed) '
            'and result; "timeout" only means nothing arrived yet - call again. Every answer counts what is still '
            "outstanding (queued, working, reports waiting).\n"
            '3. When wait_for_report answers "idle" (or a report\'s answer says it was the last one), every report is '
            "in: call shutdown() to stop the children.\n"
            "list_tasks shows your tasks, newest first (if you lose track); get_task(task_id) reads one task's state "
            "and result; session_status shows who is online and busy; cancel_task withdraws a queued task, or stops a "
            "working one (its child is told and its report refused). If a wait_for_report answer lists a child as "
            "offline with work, give its tasks to a live child with requeue_task(task_id, child_id) (unless it is "
            "restarting). If a tool says no session exists yet, ask the summoner to run init_session, then try "
            "again; if it says the session was cleaned up or no longer exists, the work is over: stop."
        )
    return (
        f"You are chocobo {settings.child_id}, a child agent of an orch-mcp team working in {where}. Your loop:\n"
        '1. Call wait_for_task. status "timeout": nothing yet - call it again at once.\n'
        '2. status "task": do what task.prompt asks (task.context holds extra data), then call report(task_id, '
        'result) with your result as text (JSON text for structured results; status="failed" with the reason if '
        "you cannot do it).\n"
        "3. Go back to 1.\n"
        "On long work (or a task sent with a deadline) call heartbeat(task_id, note) every few minutes: it keeps "
        "the task yours and tells the moogle how far you are.\n"
        "If an answer lists task ids under cancelled, the moogle withdrew them: stop working on them and do not "
        "report them.\n"
        'Stop when wait_for_task returns status "shutdown", or when a tool says your session was cleaned up or no '
        "longer exists (the work is over). Only if a tool says no session exists yet has the summoner not run "
        "init_session: then wait a little and call wait_for_task again."
    )


def ago(seconds: float | None) -> str:
    """A relative time a model can use: '2 s ago', '5 min ago', '3.5 h ago', '2 d ago'."""
    if seconds is None:
        return "never"
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


# ---------------------------------------------------------------- sessions (summoner, and the moogle's status)


def describe(cfg: SessionConfig) -> str:
    """A session in one line: id, mode, children, TTL, prefix."""
    shape = f"{cfg.mode} mode, children 1..{cfg.max_children}, idle TTL {cfg.ttl_s} s"
    return f"{cfg.session_id} ({shape}, prefix {cfg.prefix})"


def created_text(cfg: SessionConfig) -> str:
    """init_session's answer."""
    return (
        f"Created session {describe(cfg)}. It is now the current session of namespace "
        f"{cfg.namespace!r}: moogle and chocobo servers that follow the current session (the default) use it "
        f"from their next tool call; one configured for a fixed session needs session_id {cfg.session_id} in its "
        f"configuration. Tell the agents to start: the moogle sends tasks, chocobos 1..{cfg.max_children} call "
        "wait_for_task."
    )


def session_text(cfg: SessionConfig) -> str:
    """get_session's answer."""
    return f"Session {describe(cfg)}."


def sessions_text(ns: str, found: list[SessionConfig], current: str | None) -> str:
    """list_sessions' answer."""
    if not found:
        return f"No live session in namespace {ns!r}: create one with init_session."
    return f"{len(found)} live session(s) in namespace {ns!r}:\n" + "\n".join(
        f"- {describe(cfg)}" + (" (current)" if cfg.session_id == current else "") for cfg in found
    )


def cleanup_text(done: CleanupResult) -> str:
    """cleanup_session's answer."""
    return (
        f"Removed session {done.session_id}: {len(done.removed_keys)} key(s) under {done.prefix}. Agents still in "
        "it are told it was cleaned up at their next call. For more work, create a new session with init_session."
    )


_CHILD_STATES = {"stopped": "stopped (it took its shutdown)", "offline": "offline (no live server serves it)"}


def status_text(st: SessionStatus) -> str:
    """session_status' answer: one line per child, then the task counts."""
    lines = [f"Session {st.session_id} ({st.mode} mode):"]
    for c in st.children:
        work = f", working on task {c.in_flight_task}" if c.in_flight_task else ""
        seen = f", last seen {ago(c.last_seen_ago_s)}" if c.last_seen else ""
        state = _CHILD_STATES.get(c.state, c.state)
        lines.append(f"- child {c.child_id}: {state}{work}, {c.queue_depth} queued{seen}")
    lines.append("Tasks: " + ", ".join(f"{n} {state}" for state, n in st.tasks.items()) + ".")
    lines.append(f"Reports waiting for the moogle: {st.report_queue_depth}. Dead letters: {st.dead_letters}.")
    return "\n".join(lines)


# ---------------------------------------------------------------- moogle answers


def sent_text(task_id: str, child_id: int, priority: int) -> str:
    """send_task's answer."""
    where = "at the front of" if priority > 0 else "on"
    return (
        f"Task {task_id} queued {where} child {child_id}'s queue. Call wait_for_report to collect its "
        "result (and the others')."
    )


def outstanding_line(o: Outstanding) -> str:
    """The outstanding counts in a few words."""
    return f"{o.queued} queued, {o.working} working, {_n(o.reports_waiting, 'report')} waiting"


def _all_in(o: Outstanding) -> str:
    """Nothing left to come, said with the real counts; what to call next."""
    reported = o.done + o.failed
    cancelled = f"; {_n(o.cancelled, 'task')} cancelled" if o.cancelled else ""
    if reported:
        verb = "is" if reported == 1 else "are"
        head = f"all {_n(reported, 'report')} {verb} in ({o.done} done, {o.failed} failed{cancelled})"
    else:
        head = f"no report is due: {_n(o.cancelled, 'task was', 'tasks were')} cancelled and none is left"
    return (
        f"{head}, and nothing is queued or working, so no more can come. Call shutdown() to stop the children, "
        "or send_task for more work."
    )


def report_text(report: ReportMessage, o: Outstanding) -> str:
    """wait_for_report's answer when a report came: the report, then what is still to come."""
    text = f"Report on task {report.task_id} from child {report.child_id}: {report.status}.\nResult:\n{report.result}"
    if report.error:
        text += f"\nError: {report.error}"
    if o.nothing_left:
        return text + f"\nThat was the last one: {_all_in(o)}"
    return text + f"\nStill outstanding: {outstanding_line(o)}. Call wait_for_report for the next report."


def wait_timeout_text(timeout_s: float, o: Outstanding) -> str:
    """wait_for_report's answer when nothing came in time but something still can."""
    return (
        f"No report arrived within {timeout_s:g} s; still outstanding: {outstanding_line(o)}. This is normal while "
        "the children work: call wait_for_report again."
    )


def idle_text(o: Outstanding) -> str:
    """wait_for_report's answer when no report can come: nothing sent yet, or every report in."""
    if o.sent == 0:
        return (
            "Idle: nothing sent yet, so no report can come. Call send_task(child_id, prompt) to give a chocobo "
            "work, then wait_for_report."
        )
    return f"Idle: {_all_in(o)}"


def record_text(rec: TaskView) -> str:
    """get_task's answer: the task's state, when things happened and, once reported, its result."""
    times = [f"sent {ago(rec.created_ago_s)}"] if rec.created_at else []
    if rec.started_at:
        times.append(f"taken {ago(rec.started_ago_s)}")
    if rec.finished_at:
        times.append(f"finished {ago(rec.finished_ago_s)}")
    when = f"; {', '.join(times)}" if times else ""
    text = f"Task {rec.task_id} for child {rec.child_id}: {rec.state} (delivered {rec.delivery_count} time(s){when})."
    if rec.result is not None and rec.state in ("done", "failed"):
        text += f"\nResult:\n{rec.result}"
    if rec.error:
        text += f"\nError: {rec.error}"
    if rec.state in ("queued", "working"):
        text += "\nIts report comes through wait_for_report."
    return text


def tasks_text(listing: TaskListing) -> str:
    """list_tasks' answer: one line per task, newest first, then the counts by state."""
    which = f" {listing.state}" if listing.state is not None else ""
    counts = ", ".join(f"{n} {state}" for state, n in listing.counts.items())
    if not listing.tasks:
        if sum(listing.counts.values()) == 0:
            return "No task in this session: nothing sent yet. Call send_task(child_id, prompt) to give a chocobo work."
        return f"No{which} task in this session (tasks by state: {counts})."
    shown = len(listing.tasks)
    head = f"{shown} of {listing.total}{which} task(s), newest first" if shown < listing.total else None
    lines = [f"{head or f'All {listing.total}{which} task(s), newest first'}:"]
    for t in listing.tasks:
        when = f"sent {ago(t.created_ago_s)}"
        if t.finished_ago_s is not None:
            when += f", finished {ago(t.finished_ago_s)}"
        elif t.started_ago_s is not None:
            when += f", taken {ago(t.started_ago_s)}"
        lines.append(f"- {t.task_id} child {t.child_id}: {t.state}, {when}: {t.prompt}")
    if listing.damaged:
        lines.append(f"Damaged records (unreadable): {', '.join(listing.damaged)}.")
    lines.append(f"Tasks by state: {counts}. get_task(task_id) reads a task's result.")
    return "\n".join(lines)


def cancelled_text(rec: TaskRecord) -> str:
    """cancel_task's answer."""
    if rec.started_at is None:
        return f"Task {rec.task_id} for child {rec.child_id} is cancelled; no child will receive it."
    return (
        f"Task {rec.task_id} for child {rec.child_id} is cancelled. The child was already working on it: it is told "
        "at its next call, and its report will be refused. Send the work again with send_task if it is still needed."
    )


def told_text(told: list[int], now: bool, reason: str | None = None) -> str:
    """shutdown's answer."""
    when = "before any task still queued" if now else "after the tasks already queued for them"
    why = f" (reason: {reason})" if reason else ""
    return (
        f"Told child(ren) {', '.join(map(str, told))} to stop {when}{why}. A child that asks again, or starts later, "
        "hears the same until you send it new work. Nothing more to call unless you have more work."
    )


# ---------------------------------------------------------------- chocobo answers


def shutdown_text(reason: str | None) -> str:
    """wait_for_task's answer when the moogle asked the child to stop."""
    text = "Shutdown: the moogle asked you to stop. Do not call wait_for_task again; end your work here."
    if reason:
        text += f" Reason: {reason}"
    return text


def taking_over_text(child_id: int, tool: str = "wait_for_task") -> str:
    """A restarted server still waiting for its previous run's claim on the child to lapse."""
    return (
        f"Still taking over child {child_id} from the server that ran it before (its claim lapses within a few "
        f"seconds; the task it held comes back to you first). Call {tool} again."
    )


def not_newest_text(child_id: int) -> str:
    """An older MCP connection of a chocobo server that has a newer one."""
    return (
        f"This connection no longer acts as child {child_id}: a newer client connected to this chocobo server, and "
        "only the newest one takes and reports tasks. Stop here."
    )


def heartbeat_text(beat: Heartbeat) -> str:
    """heartbeat's answer."""
    until = f" Its deadline is now {beat.lease_until}." if beat.lease_until else ""
    return f"Noted: you are still on task {beat.task_id}.{until} Call report when it is done."


def offline_note(offline: list[OfflineChild]) -> str:
    """Lines before a wait answer about children gone a while with work waiting for them ('' if none)."""
    lines = []
    for c in offline:
        gone = f"for {c.offline_s:.0f} s"
        lines.append(
            f"Child {c.child_id} has been offline {gone} with {c.queued} task(s) queued and {c.in_flight} in flight: "
            f"give them to a live child with requeue_task(task_id, child_id) (find them with get_task or "
            "session_status), or wait if it is restarting.\n"
        )
    return "".join(lines)


def requeued_text(rec: TaskRecord) -> str:
    """requeue_task's answer."""
    return (
        f"Task {rec.task_id} is queued again, at the front of child {rec.child_id}'s queue (delivery "
        f"{rec.delivery_count + 1} is next); a late report from its earlier delivery will be refused. Call "
        "wait_for_report for its result."
    )


def cancelled_note(cancelled: list[str]) -> str:
    """A line before wait_for_task's answer naming the child's tasks the parent cancelled ('' if none)."""
    if not cancelled:
        return ""
    return f"The moogle cancelled your task(s) {', '.join(cancelled)}: stop working on them and do not report them.\n"


def queue_note(queued: int) -> str:
    """What waits in a chocobo's queue after this answer."""
    if queued == 0:
        return "Your queue is empty."
    return f"Your queue holds {queued} more."


def task_text(msg: TaskMessage, queued: int) -> str:
    """wait_for_task's answer when a task came: the task, and how to report it."""
    text = f"Task {msg.task_id}:\n{msg.prompt}"
    if msg.context:
        text += f"\nContext: {json.dumps(msg.context, ensure_ascii=False)}"
    text += (
        f'\nDo the work, then call report(task_id="{msg.task_id}", result=...) with your result '
        f'(status="failed" and the reason if you cannot do it); then call wait_for_task again. {queue_note(queued)}'
    )
    return text


def task_timeout_text(timeout_s: float, queued: int) -> str:
    """wait_for_task's answer when nothing came in time: normal, call again."""
    return f"No task arrived within {timeout_s:g} s. {queue_note(queued)} This is normal: call wait_for_task again."


def reported_text(task_id: str, outcome: ReportOutcome) -> str:
    """report's answer: recorded, or a repeat that changed nothing."""
    if outcome.duplicate:
        return (
            f"Task {task_id} was already reported ({outcome.state}); its recorded result stays as it was. "
            "Call wait_for_task for your next task."
        )
    return f"Report on task {task_id} recorded ({outcome.state}). Call wait_for_task for your next task."
