"""Issue 10, item 1 (DESIGN decision 8): wait answers say what is still to come, and end the loop when nothing can.

A scripted moogle and scripted chocobos that follow only the answers (status and counts, checked against the texts)
finish a session and stop, with a bound on their calls; then one test per answer: idle before any send and after
every report, the outstanding counts, sticky shutdown (also for a chocobo started late), shutdown's reason, stopped
children in session_status, "this session was cleaned up" for both roles, list_tasks, ages, and no flag in a text.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import anyio
import pytest
from mcp import Client
from mcp_helpers import error, ok, serve_params, settings, text

import orch_mcp
from orch_mcp.config import OrchConfig
from orch_mcp.delivery.records import TASK_STATES, new_record
from orch_mcp.keys import NamespaceKeys
from orch_mcp.messages import TaskMessage
from orch_mcp.redis_client import Redis
from orch_mcp.server import create_server, instructions
from orch_mcp.server.models import TaskStateName
from orch_mcp.sessions import Mode, SessionConfig, current_session, init_session

MODES: list[Mode] = ["summoner", "normal"]
NOTHING = {"queued": 0, "working": 0, "reports_waiting": 0}


def nothing_left(outstanding: dict[str, int]) -> bool:
    return all(outstanding[k] == 0 for k in NOTHING)


@asynccontextmanager
async def server(orch: OrchConfig, role: str, child: int | None = None, **kw: Any) -> AsyncIterator[Client]:
    """One in-process server of `role` that checks its session at every call."""
    failure: Exception | None = None
    async with Client(create_server(settings(orch, role, child, session_check_s=0, **kw))) as client:
        try:
            yield client
        except Exception as exc:  # raised below, outside the server's task groups
            failure = exc
    if failure is not None:
        raise failure


@dataclass
class Team:
    r: Redis
    cfg: SessionConfig
    moogle: Client
    chocobos: dict[int, Client]
    summoner: Client

    async def send(self, child: int, prompt: str) -> str:
        task_id: str = ok(await self.moogle.call_tool("send_task", {"child_id": child, "prompt": prompt}))["task_id"]
        return task_id

    async def take(self, child: int) -> dict[str, Any]:
        got = ok(await self.chocobos[child].call_tool("wait_for_task", {"timeout_s": 5}))
        assert got["status"] == "task", got
        task: dict[str, Any] = got["task"]
        return task

    async def do(self, child: int, status: str = "done") -> str:
        task = await self.take(child)
        args = {"task_id": task["task_id"], "result": f"did {task['prompt']}", "status": status}
        ok(await self.chocobos[child].call_tool("report", args))
        return str(task["task_id"])

    async def wait(self, timeout_s: float = 0) -> tuple[dict[str, Any], str]:
        answer = await self.moogle.call_tool("wait_for_report", {"timeout_s": timeout_s})
        return ok(answer), text(answer)


@asynccontextmanager
async def team_of(r: Redis, orch: OrchConfig, mode: Mode, children: int = 2) -> AsyncIterator[Team]:
    """A fresh session of `mode`, its summoner, moogle and chocobos as in-process servers; 30 s at most."""
    cfg = await init_session(r, namespace="test", mode=mode, max_children=children)
    async with AsyncExitStack() as stack:
        summoner = await stack.enter_async_context(server(orch, "summoner"))
        moogle = await stack.enter_async_context(server(orch, "moogle"))
        chocobos = {n: await stack.enter_async_context(server(orch, "chocobo", n)) for n in range(1, children + 1)}
        with anyio.fail_after(30):
            yield Team(r, cfg, moogle, chocobos, summoner)


# ---------------------------------------------------------------- agents that follow only the answers


@dataclass
class MoogleLog:
    reports: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    told: dict[str, Any] = field(default_factory=dict)


async def scripted_moogle(moogle: Client, work: list[str], children: int, budget: int) -> MoogleLog:
    """A moogle that decides every next call from the last answer's status and counts alone.

    It holds a list of work; once sent, it keeps no count of it. The texts must name the call it makes.
    """
    log = MoogleLog()
    to_send = list(work)
    while True:
        assert len(log.calls) < budget, f"the moogle is looping: {log.calls[-5:]}"
        answer = await moogle.call_tool("wait_for_report", {"timeout_s": 5})
        got, body = ok(answer), text(answer)
        log.calls.append(got["status"])
        left = got["outstanding"]
        if got["status"] == "report":
            log.reports.append(got["report"])
            if nothing_left(left):
                assert "That was the last one" in body and "Call shutdown()" in body, body
                break
            assert "Call wait_for_report for the next report" in body, body
        elif got["status"] == "timeout":
            assert not nothing_left(left) and "call wait_for_report again" in body, (got, body)
        elif left["done"] + left["failed"] + left["cancelled"] == 0 and to_send:  # idle, and nothing was ever sent
            assert "nothing sent yet" in body and "send_task" in body, body
            for i, prompt in enumerate(to_send):
                ok(await moogle.call_tool("send_task", {"child_id": i % children + 1, "prompt": prompt}))
                log.calls.append("send_task")
            to_send = []
        else:  # idle: every report is in
            assert "Call shutdown()" in body, body
            break
    log.told = ok(await moogle.call_tool("shutdown", {"reason": "all the work is done"}))
    log.calls.append("shutdown")
    return log


@dataclass
class ChocoboLog:
    did: list[str] = field(default_factory=list)
    calls: int = 0
    last: dict[str, Any] = field(default_factory=dict)


async def scripted_chocobo(chocobo: Client, budget: int, log: ChocoboLog) -> None:
    """A chocobo that calls wait_for_task until an answer's status says shutdown; prompts starting 'fail' fail."""
    while True:
        assert log.calls < budget, f"the chocobo is looping: {log.last}"
        log.calls += 1
        answer = await chocobo.call_tool("wait_for_task", {"timeout_s": 5})
        got, body = ok(answer), text(answer)
        log.last = got
        if got["status"] == "shutdown":
            assert "Do not call wait_for_task again" in body, body
            return
        if got["status"] == "task":
            task = got["task"]
            status = "failed" if task["prompt"].startswith("fail") else "done"
            args = {"task_id": task["task_id"], "result": f"did {task['prompt']}", "status": status}
            assert ok(await chocobo.call_tool("report", args))["accepted"] is True
            log.did.append(task["task_id"])
        else:
            assert got["status"] == "timeout" and "call wait_for_task again" in body, body


WORK = [f"job {i}" for i in range(8)] + ["fail on purpose"]


async def run_session(moogle: Client, chocobos: dict[int, Client]) -> tuple[MoogleLog, dict[int, ChocoboLog]]:
    logs = {n: ChocoboLog() for n in chocobos}
    async with anyio.create_task_group() as tg:
        for n, client in chocobos.items():
            tg.start_soon(scripted_chocobo, client, 12, logs[n])
        moogle_log = await scripted_moogle(moogle, WORK, len(chocobos), budget=30)
    return moogle_log, logs


def check_session(moogle_log: MoogleLog, logs: dict[int, ChocoboLog]) -> None:
    reports = moogle_log.reports
    assert len(reports) == len(WORK) and len({rep["task_id"] for rep in reports}) == len(WORK)
    assert sorted(rep["status"] for rep in reports).count("failed") == 1
    assert sorted(t for log in logs.values() for t in log.did) == sorted(rep["task_id"] for rep in reports)
    assert moogle_log.calls[0] == "idle" and moogle_log.calls[-1] == "shutdown"
    assert moogle_log.told["told"] == sorted(logs) and moogle_log.told["reason"] == "all the work is done"
    for log in logs.values():
        assert log.last["status"] == "shutdown" and log.last["reason"] == "all the work is done"


@pytest.mark.parametrize("mode", MODES)
async def test_scripted_agents_finish_a_session_and_stop(r: Redis, orch_config: OrchConfig, mode: Mode) -> None:
    async with team_of(r, orch_config, mode, children=3) as team:
        moogle_log, logs = await run_session(team.moogle, team.chocobos)
        check_session(moogle_log, logs)
        st = ok(await team.summoner.call_tool("session_status", {}))
        assert [c["state"] for c in st["children"]] == ["stopped"] * 3
        # A chocobo that asks again is told again; so is the moogle.
        again = ok(await team.chocobos[1].call_tool("wait_for_task", {"timeout_s": 5}))
        assert again["status"] == "shutdown" and again["waited_s"] < 2
        assert (await team.wait(5))[0]["status"] == "idle"
        ok(await team.summoner.call_tool("cleanup_session", {"session_id": team.cfg.session_id}))
        assert "was cleaned up" in error(await team.moogle.call_tool("wait_for_report", {"timeout_s": 5}))
        assert "was cleaned up" in error(await team.chocobos[2].call_tool("wait_for_task", {"timeout_s": 5}))


@pytest.mark.slow
async def test_scripted_agents_over_stdio_finish_a_session_and_stop(r: Redis, env_for: dict[str, str]) -> None:
    cfg = await init_session(r, namespace="test", max_children=2)
    with anyio.fail_after(60):
        async with AsyncExitStack() as stack:
            moogle = await stack.enter_async_context(Client(serve_params("moogle", env_for)))
            chocobos = {
                n: await stack.enter_async_context(Client(serve_params("chocobo", env_for, "--child-id", str(n))))
                for n in (1, 2)
            }
            moogle_log, logs = await run_session(moogle, chocobos)
            check_session(moogle_log, logs)
            assert cfg.session_id == (await current_session(r, namespace="test")).session_id


# ---------------------------------------------------------------- wait_for_report: idle, and the counts


@pytest.mark.parametrize("mode", MODES)
async def test_idle_at_once_before_anything_is_sent(r: Redis, orch_config: OrchConfig, mode: Mode) -> None:
    async with team_of(r, orch_config, mode) as team:
        got, body = await team.wait(20)
        assert got["status"] == "idle" and got["waited_s"] < 2 and got["report"] is None
        assert got["outstanding"] == {**NOTHING, "done": 0, "failed": 0, "cancelled": 0}
        assert body.startswith("Idle: nothing sent yet, so no report can come. Call send_task(child_id, prompt)")
        assert "call wait_for_report again" not in body


@pytest.mark.parametrize("mode", MODES)
async def test_idle_at_once_after_every_report(r: Redis, orch_config: OrchConfig, mode: Mode) -> None:
    async with team_of(r, orch_config, mode) as team:
        first, second, dropped = [await team.send(n, f"job {n}") for n in (1, 2, 1)]
        ok(await team.moogle.call_tool("cancel_task", {"task_id": dropped}))
        assert await team.do(1) == first
        assert await team.do(2, "failed") == second

        got, body = await team.wait(5)
        assert got["status"] == "report" and got["report"]["task_id"] == first
        assert got["outstanding"] == {"queued": 0, "working": 0, "reports_waiting": 1, "done": 1, "failed": 1,
                                      "cancelled": 1}  # fmt: skip
        assert "Still outstanding: 0 queued, 0 working, 1 report waiting. Call wait_for_report" in body

        got, body = await team.wait(5)
        assert got["status"] == "report" and got["report"]["task_id"] == second
        assert nothing_left(got["outstanding"])
        assert body.endswith(
            "That was the last one: all 2 reports are in (1 done, 1 failed; 1 task cancelled), and nothing is queued "
            "or working, so no more can come. Call shutdown() to stop the children, or send_task for more work."
        )

        for _ in range(3):  # as often as it asks: at once, never a wait of 20 s
            got, body = await team.wait(20)
            assert got["status"] == "idle" and got["waited_s"] < 2, got
            assert body.startswith("Idle: all 2 reports are in (1 done, 1 failed; 1 task cancelled)")
            assert "Call shutdown()" in body

        # New work: not idle any more while it is queued or worked on.
        third = await team.send(2, "one more")
        got, body = await team.wait(0.3)
        assert got["status"] == "timeout" and got["outstanding"]["queued"] == 1, got
        assert "still outstanding: 1 queued, 0 working, 0 reports waiting" in body
        await team.take(2)
        got, _ = await team.wait(0.3)
        assert got["status"] == "timeout" and got["outstanding"]["working"] == 1, got
        ok(await team.chocobos[2].call_tool("report", {"task_id": third, "result": "r"}))
        got, body = await team.wait(5)
        assert got["report"]["task_id"] == third and "all 3 reports are in (2 done, 1 failed" in body


@pytest.mark.parametrize("mode", MODES)
async def test_a_wait_blocked_on_working_tasks_gets_the_report(r: Redis, orch_config: OrchConfig, mode: Mode) -> None:
    """Idle is never answered while a task is working: the wait blocks its whole timeout, then the report comes."""
    async with team_of(r, orch_config, mode) as team:
        task_id = await team.send(1, "slow job")
        await team.take(1)
        got, body = await team.wait(0.6)
        assert got["status"] == "timeout" and got["waited_s"] >= 0.5, got  # it blocked: not idle
        assert "still outstanding: 0 queued, 1 working, 0 reports waiting" in body
        ok(await team.chocobos[1].call_tool("report", {"task_id": task_id, "result": "finally"}))
        got, _ = await team.wait(5)
        assert got["status"] == "report" and got["report"]["result"] == "finally"
        assert nothing_left(got["outstanding"])


async def test_outstanding_counts_reports_not_collected(r: Redis, orch_config: OrchConfig) -> None:
    async with team_of(r, orch_config, "summoner") as team:
        ids = [await team.send(1, f"job {i}") for i in range(3)]
        await team.do(1)
        await team.do(1)
        got, _ = await team.wait(5)
        assert got["report"]["task_id"] == ids[0]
        assert {k: got["outstanding"][k] for k in NOTHING} == {"queued": 1, "working": 0, "reports_waiting": 1}


# ---------------------------------------------------------------- wait_for_task: counts, sticky shutdown, reason


@pytest.mark.parametrize("mode", MODES)
async def test_wait_for_task_counts_the_queue(r: Redis, orch_config: OrchConfig, mode: Mode) -> None:
    async with team_of(r, orch_config, mode) as team:
        for i in range(3):
            await team.send(1, f"job {i}")
        answer = await team.chocobos[1].call_tool("wait_for_task", {"timeout_s": 5})
        assert ok(answer)["outstanding"] == {"queued": 2} and text(answer).endswith("Your queue holds 2 more.")
        empty = ok(await team.chocobos[2].call_tool("wait_for_task", {"timeout_s": 0}))
        assert empty["status"] == "timeout" and empty["outstanding"] == {"queued": 0}


@pytest.mark.parametrize("mode", MODES)
async def test_shutdown_is_sticky_with_its_reason(r: Redis, orch_config: OrchConfig, mode: Mode) -> None:
    async with team_of(r, orch_config, mode) as team:
        task_id = await team.send(1, "last job")
        told = await team.moogle.call_tool("shutdown", {"child_id": 1, "reason": "the release is out"})
        assert ok(told) == {"told": [1], "now": False, "reason": "the release is out",
                            "session_id": team.cfg.session_id}  # fmt: skip
        assert "(reason: the release is out)" in text(told) and "starts later, hears the same" in text(told)
        assert await team.do(1) == task_id  # the queued task first
        for _ in range(3):  # then the shutdown, as often as it asks, at once
            answer = await team.chocobos[1].call_tool("wait_for_task", {"timeout_s": 20})
            got = ok(answer)
            assert (got["status"], got["reason"]) == ("shutdown", "the release is out") and got["waited_s"] < 2
            assert text(answer).endswith("Reason: the release is out")
    # A chocobo started after its shutdown (a restarted agent) hears it too.
    async with server(orch_config, "chocobo", 1) as late, server(orch_config, "moogle") as moogle:
        with anyio.fail_after(20):
            got = ok(await late.call_tool("wait_for_task", {"timeout_s": 20}))
            assert (got["status"], got["reason"]) == ("shutdown", "the release is out") and got["waited_s"] < 10
            # New work revokes it.
            sent = ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "one more after all"}))
            got = ok(await late.call_tool("wait_for_task", {"timeout_s": 5}))
            assert got["status"] == "task" and got["task"]["task_id"] == sent["task_id"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_chocobo_started_after_a_shutdown_to_all(r: Redis, orch_config: OrchConfig, mode: Mode) -> None:
    async with team_of(r, orch_config, mode, children=3) as team:
        ok(await team.moogle.call_tool("shutdown", {"now": True}))
        for n in (1, 2):
            assert ok(await team.chocobos[n].call_tool("wait_for_task", {"timeout_s": 5}))["status"] == "shutdown"
        st = await team.moogle.call_tool("session_status", {})
        assert [c["state"] for c in ok(st)["children"]] == ["stopped", "stopped", "offline"]  # 3 never called
        assert "- child 1: stopped (it took its shutdown), 0 queued, last seen 0 s ago" in text(st)
    async with server(orch_config, "chocobo", 3) as late:  # chocobo 3 never asked before
        with anyio.fail_after(10):
            got = ok(await late.call_tool("wait_for_task", {"timeout_s": 20}))
        assert got["status"] == "shutdown" and got["waited_s"] < 5
        assert ok(await late.call_tool("wait_for_task", {"timeout_s": 20}))["status"] == "shutdown"


# ---------------------------------------------------------------- session_status: stopped, ages


@pytest.mark.parametrize("mode", MODES)
async def test_stopped_children_stay_stopped_after_their_servers_exit(
    r: Redis, orch_config: OrchConfig, mode: Mode
) -> None:
    async with team_of(r, orch_config, mode) as team:
        ok(await team.moogle.call_tool("shutdown", {"child_id": 1}))
        assert ok(await team.chocobos[1].call_tool("wait_for_task", {"timeout_s": 5}))["status"] == "shutdown"
        ok(await team.chocobos[2].call_tool("wait_for_task", {"timeout_s": 0}))
    # Every server is gone now (presence released): child 1 took its shutdown, child 2 did not.
    async with server(orch_config, "summoner") as summoner:
        st = ok(await summoner.call_tool("session_status", {}))
    one, two = st["children"]
    assert (one["state"], one["online"]) == ("stopped", False)
    assert (two["state"], two["online"]) == ("offline", False)
    assert one["last_seen"] is not None and 0 <= one["last_seen_ago_s"] < 10


async def test_session_status_and_get_task_give_ages(r: Redis, orch_config: OrchConfig) -> None:
    async with team_of(r, orch_config, "summoner") as team:
        task_id = await team.send(1, "job")
        queued = ok(await team.moogle.call_tool("get_task", {"task_id": task_id}))
        assert 0 <= queued["created_ago_s"] < 10 and queued["started_ago_s"] is None
        assert queued["finished_ago_s"] is None
        await team.take(1)
        answer = await team.moogle.call_tool("get_task", {"task_id": task_id})
        assert re.search(r"\(delivered 1 time\(s\); sent \d+ s ago, taken \d+ s ago\)", text(answer)), text(answer)
        assert text(answer).endswith("Its report comes through wait_for_report.")
        status = await team.moogle.call_tool("session_status", {})
        child = ok(status)["children"][0]
        assert child["state"] == "working" and child["last_seen_ago_s"] < 10
        assert re.search(r"- child 1: working, working on task \w+, 0 queued, last seen \d+ s ago", text(status))


# ---------------------------------------------------------------- a session that was cleaned up


@pytest.mark.parametrize("mode", MODES)
async def test_a_cleaned_up_session_says_so_to_both_roles(r: Redis, orch_config: OrchConfig, mode: Mode) -> None:
    async with team_of(r, orch_config, mode) as team:
        task_id = await team.send(1, "in flight at the cleanup")
        await team.take(1)
        sid = team.cfg.session_id
        ok(await team.summoner.call_tool("cleanup_session", {"session_id": sid}))
        tombstone = NamespaceKeys("test").cleaned(sid)
        assert 0 < await r.ttl(tombstone) <= team.cfg.ttl_s
        cleaned = f"session {sid!r} no longer exists (it was cleaned up with cleanup_session: its work is over)"
        calls = [
            (team.moogle, "wait_for_report", {"timeout_s": 5}),
            (team.moogle, "send_task", {"child_id": 1, "prompt": "x"}),
            (team.moogle, "list_tasks", {}),
            (team.chocobos[1], "report", {"task_id": task_id, "result": "too late"}),
            (team.chocobos[1], "wait_for_task", {"timeout_s": 5}),
            (team.chocobos[2], "wait_for_task", {"timeout_s": 5}),
        ]
        for _ in range(2):  # and again: never "no session exists yet", which tells an agent to wait for one
            for client, tool, args in calls:
                message = error(await client.call_tool(tool, args))
                assert cleaned in message and "stop working in it" in message, (tool, message)
                assert "no session exists yet" not in message and " --" not in message
    # Servers started after the cleanup hear it too, whether they follow the current session or name it.
    for kw in ({}, {"session_id": sid}):
        async with server(orch_config, "moogle", **kw) as moogle, server(orch_config, "chocobo", 1, **kw) as chocobo:
            for client, tool, args in [(moogle, "wait_for_report", {}), (chocobo, "wait_for_task", {})]:
                message = error(await client.call_tool(tool, args))
                assert "was cleaned up" in message and "stop working in it" in message, (kw, message)
                assert "no session exists yet" not in message
    # The summoner is told to create a new one.
    async with server(orch_config, "summoner") as summoner:
        message = error(await summoner.call_tool("session_status", {}))
        assert (
            f"the current session {sid!r} of namespace 'test' was cleaned up: create a new one with init_session"
            in (message)
        )
        # A new session: the agents move to it (a session id used again loses its tombstone).
        new = ok(await summoner.call_tool("init_session", {"mode": mode}))
    async with server(orch_config, "chocobo", 1) as chocobo:
        assert ok(await chocobo.call_tool("wait_for_task", {"timeout_s": 0}))["session_id"] == new["session_id"]


async def test_before_any_session_the_agents_are_told_to_wait(orch_config: OrchConfig) -> None:
    async with server(orch_config, "chocobo", 1) as chocobo:
        message = error(await chocobo.call_tool("wait_for_task", {"timeout_s": 0}))
    assert "no session exists yet" in message and "init_session" in message and "cleaned up" not in message


def test_the_chocobo_is_taught_to_stop_when_its_session_is_cleaned_up(orch_config: OrchConfig) -> None:
    chocobo = instructions(settings(orch_config, "chocobo", 1))
    stop = chocobo.index("cleaned up or no longer exists (the work is over)")
    assert (
        chocobo.index('returns status "shutdown"') < stop < chocobo.index("Only if a tool says no session exists yet")
    )
    moogle = instructions(settings(orch_config, "moogle"))
    assert "if it says the session was cleaned up or no longer exists, the work is over: stop" in moogle
    assert '"idle"' in moogle and "list_tasks" in moogle


# ---------------------------------------------------------------- list_tasks


@pytest.mark.parametrize("mode", MODES)
async def test_list_tasks_filters_and_limits(r: Redis, orch_config: OrchConfig, mode: Mode) -> None:
    async with team_of(r, orch_config, mode) as team:
        empty = await team.moogle.call_tool("list_tasks", {})
        assert ok(empty)["tasks"] == [] and ok(empty)["total"] == 0
        assert "nothing sent yet. Call send_task" in text(empty)
        ids = [await team.send(1 + i % 2, f"job {i}\n  with   spaces " + "x" * 300) for i in range(6)]
        await team.do(1)  # job 0: done
        await team.do(2, "failed")  # job 1: failed
        ok(await team.moogle.call_tool("cancel_task", {"task_id": ids[2]}))
        await team.take(2)  # job 3: working

        everything = await team.moogle.call_tool("list_tasks", {})
        listed = ok(everything)
        assert [t["task_id"] for t in listed["tasks"]] == ids[::-1]  # newest first
        assert [t["state"] for t in listed["tasks"]] == ["queued", "queued", "working", "cancelled", "failed", "done"]
        assert listed["total"] == 6 and listed["state"] is None
        assert listed["counts"] == {"queued": 2, "working": 1, "done": 1, "failed": 1, "cancelled": 1}
        first = listed["tasks"][-1]
        assert first["child_id"] == 1 and first["delivery_count"] == 1
        assert first["prompt"].startswith("job 0 with spaces xxx") and len(first["prompt"]) == 160
        assert first["finished_ago_s"] is not None and listed["tasks"][0]["started_ago_s"] is None
        body = text(everything)
        assert body.startswith("All 6 task(s), newest first:\n")
        assert f"- {ids[3]} child 2: working, sent 0 s ago, taken 0 s ago: job 3 with spaces" in body
        assert "get_task(task_id) reads a task's result" in body

        for state, expected in [("queued", ids[5:3:-1]), ("working", [ids[3]]), ("cancelled", [ids[2]])]:
            got = ok(await team.moogle.call_tool("list_tasks", {"state": state}))
            assert [t["task_id"] for t in got["tasks"]] == expected and got["total"] == len(expected)
        two = await team.moogle.call_tool("list_tasks", {"limit": 2})
        assert [t["task_id"] for t in ok(two)["tasks"]] == [ids[5], ids[4]]
        assert text(two).startswith("2 of 6 task(s), newest first:")
        assert "No done" not in text(await team.moogle.call_tool("list_tasks", {"state": "done"}))

        assert "limit must be at most 500" in error(await team.moogle.call_tool("list_tasks", {"limit": 501}))
        assert "limit must be at least 1" in error(await team.moogle.call_tool("list_tasks", {"limit": 0}))
        wrong = error(await team.moogle.call_tool("list_tasks", {"state": "lost"}))
        assert "state" in wrong and "cancelled" in wrong, wrong


async def test_list_tasks_reads_the_stream_not_the_whole_history(r: Redis, orch_config: OrchConfig) -> None:
    """A 20,000-task history: the newest tasks come from the status stream (no HSCAN); an old state from a scan."""
    cfg = await init_session(r, namespace="test", max_children=2)
    old = [TaskMessage.create(f"old {i}", cfg.session_id, 1) for i in range(20_000)]
    async with r.pipeline(transaction=False) as pipe:
        for i, task in enumerate(old):
            record = json.loads(new_record(task, task.to_json()))
            record["state"] = "cancelled" if i == 7 else "done"
            pipe.hset(cfg.keys.records(1), task.task_id, json.dumps(record))
            pipe.hset(cfg.keys.task_child, task.task_id, 1)
        pipe.hset(cfg.keys.counts, mapping={"done": len(old) - 1, "cancelled": 1})
        await pipe.execute()
    async with server(orch_config, "moogle") as moogle:
        new = [
            ok(await moogle.call_tool("send_task", {"child_id": 2, "prompt": f"new {i}"}))["task_id"] for i in range(60)
        ]
        await r.config_resetstat()
        newest = ok(await moogle.call_tool("list_tasks", {"limit": 50}))
        assert [t["task_id"] for t in newest["tasks"]] == new[:-51:-1] and newest["total"] == 20_060
        stats = await r.info("commandstats")
        assert "cmdstat_hscan" not in stats and "cmdstat_hgetall" not in stats, stats
        assert stats["cmdstat_xrevrange"]["calls"] <= 2 and stats["cmdstat_hmget"]["calls"] <= 6, stats

        # The one cancelled task is older than anything the stream knows: found by the scan of the records.
        cancelled = ok(await moogle.call_tool("list_tasks", {"state": "cancelled"}))
        assert [t["task_id"] for t in cancelled["tasks"]] == [old[7].task_id]
        assert cancelled["tasks"][0]["prompt"] == "old 7"


# ---------------------------------------------------------------- what the model reads


def resolved(schema: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """Property `name` of an output schema, its `$ref` (if any) looked up in the schema's `$defs`."""
    assert schema is not None
    prop: dict[str, Any] = schema["properties"][name]
    ref = prop.get("$ref") or next((o["$ref"] for o in prop.get("anyOf", []) if "$ref" in o), None)
    if ref is not None:
        found: dict[str, Any] = schema["$defs"][ref.rsplit("/", 1)[-1]]
        return found
    return prop


async def test_output_schemas_a_client_sees(orch_config: OrchConfig) -> None:
    async with server(orch_config, "moogle") as moogle, server(orch_config, "chocobo", 1) as chocobo:
        tools = {t.name: t for t in (await moogle.list_tools()).tools + (await chocobo.list_tools()).tools}
    states = ["queued", "working", "done", "failed", "cancelled"]
    assert list(get_args(TaskStateName)) == list(TASK_STATES) == states  # the argument's names are TaskState's
    assert resolved(tools["get_task"].output_schema, "state")["enum"] == states
    listed = tools["list_tasks"]
    assert listed.input_schema["properties"]["state"]["anyOf"][0]["enum"] == states
    assert listed.input_schema["properties"]["limit"]["maximum"] == 500
    assert resolved(tools["wait_for_report"].output_schema, "status")["enum"] == ["report", "timeout", "idle"]
    assert set(resolved(tools["wait_for_report"].output_schema, "outstanding")["properties"]) >= set(NOTHING)
    assert resolved(tools["list_tasks"].output_schema, "tasks")["items"]
    assert "reason" in tools["shutdown"].input_schema["properties"]
    report = tools["report"].output_schema
    assert report is not None and "report_task" not in json.dumps(report) and "`" not in report["description"]


SOURCES = ["server/texts.py", "server/models.py", "server/moogle.py", "server/chocobo.py", "server/summoner.py",
           "server/state.py", "errors.py", "sessions.py", *(f"delivery/{p.name}" for p in
           (Path(orch_mcp.__file__).parent / "delivery").glob("*.py"))]  # fmt: skip


@pytest.mark.parametrize("source", SOURCES)
def test_no_text_a_model_reads_names_a_flag(source: str) -> None:
    tree = ast.parse((Path(orch_mcp.__file__).parent / source).read_text())
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert [s for s in strings if re.search(r"(^|\s)--[a-z]", s)] == []


@pytest.mark.parametrize("role", ["summoner", "moogle", "chocobo"])
def test_no_instructions_name_a_flag(orch_config: OrchConfig, role: str) -> None:
    assert " --" not in instructions(settings(orch_config, role, 1 if role == "chocobo" else None))
