"""In-process tests of every tool of every role: results, the text the model reads, errors and bad arguments."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_helpers import error, ok, settings, text

from orch_mcp.agents import AsyncChild, AsyncParent
from orch_mcp.config import OrchConfig, RedisConfig
from orch_mcp.embedded import EmbeddedRedis, free_port
from orch_mcp.errors import OrchError
from orch_mcp.redis_client import Redis
from orch_mcp.server import MAX_WAIT_S, ROLE_TOOLS, ServerSettings, create_server, instructions
from orch_mcp.sessions import current_session, init_session

ROLE_TOOL_NAMES = {
    "summoner": {"init_session", "get_session", "list_sessions", "cleanup_session", "session_status"},
    "moogle": {
        "send_task",
        "wait_for_report",
        "get_task",
        "list_tasks",
        "cancel_task",
        "requeue_task",
        "shutdown",
        "session_status",
    },
    "chocobo": {"wait_for_task", "heartbeat", "report"},
}


@asynccontextmanager
async def team_of(orch: OrchConfig) -> AsyncIterator[dict[str, Client]]:
    """A summoner, a moogle and chocobos 1 and 2, each its own in-process server (no session yet); 30 s at most.

    They check that their session still exists at every call (session_check_s=0), as they do for calls more
    than SESSION_CHECK_S apart.
    """
    async with AsyncExitStack() as stack:
        clients = {
            role: await stack.enter_async_context(
                Client(create_server(settings(orch, role.rstrip("12"), child or None, session_check_s=0)))
            )
            for role, child in [("summoner", 0), ("moogle", 0), ("chocobo1", 1), ("chocobo2", 2)]
        }
        with anyio.fail_after(30):
            yield clients


async def start(team: dict[str, Client], **args: object) -> dict[str, object]:
    return ok(await team["summoner"].call_tool("init_session", {"max_children": 2, **args}))


# ---------------------------------------------------------------- what each role lists


@pytest.mark.parametrize("role", ["summoner", "moogle", "chocobo"])
async def test_each_role_lists_only_its_tools_described(orch_config: OrchConfig, role: str) -> None:
    server = create_server(settings(orch_config, role, 1 if role == "chocobo" else None))
    async with Client(server) as client:
        tools = (await client.list_tools()).tools
        assert {t.name for t in tools} == ROLE_TOOL_NAMES[role]
        for tool in tools:
            assert tool.description and "\n" not in tool.description.strip(), tool.name
            assert tool.output_schema is not None, f"{tool.name} has no structured output"
            for name, prop in tool.input_schema.get("properties", {}).items():
                assert prop.get("description"), f"{tool.name}({name}) has no description"
        assert client.instructions == instructions(settings(orch_config, role, 1 if role == "chocobo" else None))
    assert {fn.__name__ for fn in ROLE_TOOLS[role]} == ROLE_TOOL_NAMES[role]  # type: ignore[index]


def test_instructions_teach_each_loop(orch_config: OrchConfig) -> None:
    chocobo = instructions(settings(orch_config, "chocobo", 2))
    assert "chocobo 2" in chocobo
    assert chocobo.index("wait_for_task") < chocobo.index("report(") < chocobo.index('"shutdown"')
    moogle = instructions(settings(orch_config, "moogle"))
    assert moogle.index("send_task") < moogle.index("wait_for_report") < moogle.index("shutdown()")
    summoner = instructions(settings(orch_config, "summoner"))
    assert summoner.index("init_session") < summoner.index("session_status") < summoner.index("cleanup_session")
    assert "session abc" in instructions(settings(orch_config, "moogle", session_id="abc"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "chocobo"}, "a chocobo needs its child id"),
        ({"role": "chocobo", "child_id": 0}, "child id 0 is out of range; use 1 or more"),
        ({"role": "boss"}, "unknown role 'boss'"),
        ({"role": "moogle", "session_id": "a b"}, "invalid session id 'a b'"),
        ({"role": "moogle", "http_port": 0}, "HTTP port 0 is out of range"),
        ({"role": "moogle", "transport": "sse"}, "unknown transport 'sse'"),
    ],
)
def test_settings_refuse_what_cannot_work(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(OrchError, match=message):
        ServerSettings(**kwargs)


# ---------------------------------------------------------------- before any session exists


async def test_agents_started_before_init_session_are_told_to_wait_for_it(orch_config: OrchConfig) -> None:
    async with team_of(orch_config) as team:
        hint = "no session exists yet in namespace 'test': have the summoner call init_session first"
        assert hint in error(await team["moogle"].call_tool("send_task", {"child_id": 1, "prompt": "x"}))
        assert hint in error(await team["moogle"].call_tool("wait_for_report", {"timeout_s": 0}))
        assert hint in error(await team["chocobo1"].call_tool("wait_for_task", {"timeout_s": 0}))
        own = "no session exists yet in namespace 'test': create a new one with init_session"
        assert own in error(await team["summoner"].call_tool("session_status", {}))
        # ... and work as soon as it exists, in the same server processes.
        session = await start(team)
        sent = ok(await team["moogle"].call_tool("send_task", {"child_id": 1, "prompt": "x"}))
        got = ok(await team["chocobo1"].call_tool("wait_for_task", {"timeout_s": 5}))
        assert got["task"]["task_id"] == sent["task_id"]
        assert got["session_id"] == sent["session_id"] == session["session_id"]


# ---------------------------------------------------------------- summoner


async def test_init_get_list_and_cleanup_sessions(orch_config: OrchConfig, r: Redis) -> None:
    async with team_of(orch_config) as team:
        summoner = team["summoner"]
        empty = await summoner.call_tool("list_sessions", {})
        assert ok(empty) == {"namespace": "test", "current": None, "sessions": []}
        assert "No live session in namespace 'test': create one with init_session" in text(empty)

        first = await summoner.call_tool("init_session", {})
        info = ok(first)
        sid = info["session_id"]
        assert info["mode"] == "summoner" and info["max_children"] == 3 and info["ttl_s"] == 3600
        assert info["prefix"] == f"summoner:{{{sid}}}"
        assert info["task_queues"]["2"] == f"summoner:{{{sid}}}:tasks:2"
        assert info["monitor_channel"] == f"summoner:{{{sid}}}:monitor"
        assert f"Created session {sid}" in text(first) and "follow the current session (the default)" in text(first)

        second = ok(await summoner.call_tool("init_session", {"mode": "normal", "max_children": 5, "ttl_s": 60}))
        assert second["mode"] == "normal" and second["ttl_s"] == 60 and second["monitor_channel"] is None
        assert second["prefix"].startswith("{test-") and second["prefix"].endswith("-001}")

        listed = await summoner.call_tool("list_sessions", {})
        assert ok(listed)["current"] == second["session_id"]
        assert [s["session_id"] for s in ok(listed)["sessions"]] == [sid, second["session_id"]]
        assert f"{second['session_id']} (normal mode, children 1..5" in text(listed)
        assert text(listed).endswith("(current)")

        assert ok(await summoner.call_tool("get_session", {"session_id": sid}))["prefix"] == info["prefix"]
        assert (
            ok(await summoner.call_tool("get_session", {"session_id": "current"}))["session_id"] == second["session_id"]
        )

        cleaned = await summoner.call_tool("cleanup_session", {"session_id": sid})
        assert ok(cleaned)["session_id"] == sid and ok(cleaned)["removed_count"] == len(ok(cleaned)["removed_keys"]) > 0
        assert f"Removed session {sid}" in text(cleaned)
        assert not await r.keys(f"summoner:{{{sid}}}*")
        gone = error(await summoner.call_tool("get_session", {"session_id": sid}))
        assert f"session {sid!r} not found in namespace 'test'" in gone and "list_sessions" in gone
        assert "not found" in error(await summoner.call_tool("cleanup_session", {"session_id": sid}))


async def test_summoner_argument_errors(orch_config: OrchConfig) -> None:
    async with team_of(orch_config) as team:
        summoner = team["summoner"]
        assert "must be at least 1" in error(await summoner.call_tool("init_session", {"max_children": 0}))
        assert "must be at most 1000" in error(await summoner.call_tool("init_session", {"max_children": 1001}))
        assert "'summoner' or 'normal'" in error(await summoner.call_tool("init_session", {"mode": "fast"}))
        assert "must be at least 1" in error(await summoner.call_tool("init_session", {"ttl_s": 0}))
        bad_id = error(await summoner.call_tool("get_session", {"session_id": "a*b"}))
        assert "invalid session id 'a*b'" in bad_id and "no spaces, braces or glob characters" in bad_id
        assert "session_id" in error(await summoner.call_tool("cleanup_session", {}))


async def test_session_status_shows_children_and_counts(orch_config: OrchConfig, r: Redis) -> None:
    async with team_of(orch_config) as team:
        session = await start(team)
        moogle, chocobo = team["moogle"], team["chocobo1"]
        first = ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "one"}))
        ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "two"}))
        ok(await chocobo.call_tool("wait_for_task", {"timeout_s": 5}))
        for who in ("summoner", "moogle"):
            result = await team[who].call_tool("session_status", {})
            st = ok(result)
            assert st["session_id"] == session["session_id"]
            one, two = st["children"]
            assert (one["state"], one["online"], one["in_flight_task"], one["queue_depth"]) == (
                "working",
                True,
                first["task_id"],
                1,
            )
            assert (two["state"], two["online"]) == ("offline", False)
            assert st["tasks"]["working"] == 1 and st["tasks"]["queued"] == 1
            assert f"- child 1: working, working on task {first['task_id']}, 1 queued" in text(result)
            assert "- child 2: offline" in text(result) and "1 queued, 1 working, 0 done" in text(result)
        by_id = ok(await team["summoner"].call_tool("session_status", {"session_id": session["session_id"]}))
        assert by_id["session_id"] == session["session_id"]
        assert "not found" in error(await team["summoner"].call_tool("session_status", {"session_id": "nope"}))


# ---------------------------------------------------------------- moogle and chocobo


async def test_a_task_round_trip_with_texts(orch_config: OrchConfig) -> None:
    async with team_of(orch_config) as team:
        await start(team)
        moogle, chocobo = team["moogle"], team["chocobo1"]
        sent_result = await moogle.call_tool(
            "send_task", {"child_id": 1, "prompt": "Sum 2 and 3.", "context": {"numbers": [2, 3]}}
        )
        sent = ok(sent_result)
        tid = sent["task_id"]
        assert sent["child_id"] == 1 and sent["priority"] == 0
        assert f"Task {tid} queued on child 1's queue. Call wait_for_report" in text(sent_result)

        got_result = await chocobo.call_tool("wait_for_task", {})
        got = ok(got_result)
        assert got["status"] == "task" and got["child_id"] == 1
        assert got["task"] == {
            "task_id": tid,
            "prompt": "Sum 2 and 3.",
            "context": {"numbers": [2, 3]},
            "priority": 0,
            "created_at": sent["created_at"],
            "delivery_count": 1,
        }
        assert text(got_result).startswith(f'Task {tid}:\nSum 2 and 3.\nContext: {{"numbers": [2, 3]}}')
        assert f'call report(task_id="{tid}", result=...)' in text(got_result)

        assert ok(await moogle.call_tool("get_task", {"task_id": tid}))["state"] == "working"
        reported = await chocobo.call_tool("report", {"task_id": tid, "result": "5"})
        assert ok(reported) == {"task_id": tid, "accepted": True, "duplicate": False, "state": "done"}
        assert "recorded (done). Call wait_for_task for your next task." in text(reported)

        report_result = await moogle.call_tool("wait_for_report", {"timeout_s": 5})
        rep = ok(report_result)
        assert rep["status"] == "report"
        assert rep["report"]["task_id"] == tid and rep["report"]["result"] == "5" and rep["report"]["status"] == "done"
        assert text(report_result).startswith(f"Report on task {tid} from child 1: done.\nResult:\n5")

        record_result = await moogle.call_tool("get_task", {"task_id": tid})
        record = ok(record_result)
        assert (record["state"], record["result"], record["delivery_count"]) == ("done", "5", 1)
        assert re.fullmatch(
            rf"Task {tid} for child 1: done \(delivered 1 time\(s\); sent \d+ s ago, taken \d+ s ago, "
            r"finished \d+ s ago\)\.\nResult:\n5",
            text(record_result),
        ), text(record_result)
        assert 0 <= record["finished_ago_s"] <= record["started_ago_s"] <= record["created_ago_s"] < 30


async def test_timeouts_are_results_that_say_call_again(orch_config: OrchConfig) -> None:
    async with team_of(orch_config) as team:
        await start(team)
        waited = await team["chocobo1"].call_tool("wait_for_task", {"timeout_s": 0.3})
        assert ok(waited)["status"] == "timeout" and ok(waited)["task"] is None
        assert 0.25 < ok(waited)["waited_s"] < 5
        assert ok(waited)["outstanding"] == {"queued": 0}
        assert (
            text(waited)
            == "No task arrived within 0.3 s. Your queue is empty. This is normal: call wait_for_task again."
        )
        ok(await team["moogle"].call_tool("send_task", {"child_id": 2, "prompt": "for a chocobo that is not there"}))
        polled = await team["moogle"].call_tool("wait_for_report", {"timeout_s": 0})
        assert ok(polled)["status"] == "timeout" and ok(polled)["waited_s"] < 1
        assert text(polled) == (
            "No report arrived within 0 s; still outstanding: 1 queued, 0 working, 0 reports waiting. "
            "This is normal while the children work: call wait_for_report again."
        )


@pytest.mark.parametrize("tool", ["wait_for_task", "wait_for_report"])
@pytest.mark.parametrize(("timeout", "message"), [(51, "must be at most 50"), (-1, "must be at least 0")])
async def test_wait_timeouts_are_validated(orch_config: OrchConfig, tool: str, timeout: int, message: str) -> None:
    async with team_of(orch_config) as team:
        await start(team)
        client = team["chocobo1" if tool == "wait_for_task" else "moogle"]
        assert message in error(await client.call_tool(tool, {"timeout_s": timeout}))
        assert MAX_WAIT_S == 50


async def test_send_task_errors(orch_config: OrchConfig) -> None:
    async with team_of(orch_config) as team:
        await start(team)
        moogle = team["moogle"]
        out_of_range = error(await moogle.call_tool("send_task", {"child_id": 3, "prompt": "x"}))
        assert "invalid child id 3: this session has children 1..2" in out_of_range
        assert "must be at least 1" in error(await moogle.call_tool("send_task", {"child_id": 0, "prompt": "x"}))
        assert "at least 1 character" in error(await moogle.call_tool("send_task", {"child_id": 1, "prompt": ""}))
        assert "prompt" in error(await moogle.call_tool("send_task", {"child_id": 1}))
        assert "context must be a JSON object" in error(
            await moogle.call_tool("send_task", {"child_id": 1, "prompt": "x", "context": 5})
        )


async def test_message_size_limits(orch_config: OrchConfig, r: Redis) -> None:
    small = OrchConfig(redis=orch_config.redis, namespace="test", max_message_bytes=100)
    with anyio.fail_after(20):
        async with Client(create_server(settings(small, "summoner"))) as summoner:
            ok(await summoner.call_tool("init_session", {"max_children": 1}))
        async with Client(create_server(settings(small, "moogle"))) as moogle:
            big = error(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "x" * 101}))
            assert (
                "the task (prompt + context) is 103 bytes, over the limit of 100 bytes (ORCH_MAX_MESSAGE_BYTES)" in big
            )
            assert "pass large data by reference" in big
            tid = ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "x" * 50}))["task_id"]
        async with Client(create_server(settings(small, "chocobo", 1))) as chocobo:
            ok(await chocobo.call_tool("wait_for_task", {"timeout_s": 5}))
            too_long = error(await chocobo.call_tool("report", {"task_id": tid, "result": "r" * 101}))
            assert "the result is 101 bytes, over the limit of 100 bytes" in too_long
            assert "write it to a file and report the path" in too_long
            ok(await chocobo.call_tool("report", {"task_id": tid, "result": "r" * 100}))


async def test_report_errors_and_duplicates(orch_config: OrchConfig) -> None:
    async with team_of(orch_config) as team:
        await start(team)
        moogle, one, two = team["moogle"], team["chocobo1"], team["chocobo2"]
        tid = ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "x"}))["task_id"]
        ok(await one.call_tool("wait_for_task", {"timeout_s": 5}))

        unknown = error(await one.call_tool("report", {"task_id": "f" * 32, "result": "r"}))
        assert "no task 'ffffffffffffffffffffffffffffffff' in this session" in unknown
        assert "report only task ids you got from wait_for_task" in unknown
        theirs = error(await two.call_tool("report", {"task_id": tid, "result": "r"}))
        assert f"task {tid!r} belongs to child 1, not to you (child 2)" in theirs
        assert "invalid task id" in error(await one.call_tool("report", {"task_id": "a b", "result": "r"}))
        assert "'done' or 'failed'" in error(
            await one.call_tool("report", {"task_id": tid, "result": "r", "status": "ok"})
        )

        failed = await one.call_tool("report", {"task_id": tid, "result": "no network", "status": "failed"})
        assert ok(failed)["state"] == "failed"
        again = await one.call_tool("report", {"task_id": tid, "result": "changed my mind"})
        assert ok(again) == {"task_id": tid, "accepted": False, "duplicate": True, "state": "failed"}
        assert "was already reported (failed); its recorded result stays as it was" in text(again)
        record = ok(await moogle.call_tool("get_task", {"task_id": tid}))
        assert (record["state"], record["result"]) == ("failed", "no network")
        rep = ok(await moogle.call_tool("wait_for_report", {"timeout_s": 5}))
        assert rep["report"]["status"] == "failed" and rep["report"]["result"] == "no network"


async def test_get_task_and_cancel_task(orch_config: OrchConfig) -> None:
    async with team_of(orch_config) as team:
        await start(team)
        moogle = team["moogle"]
        missing = error(await moogle.call_tool("get_task", {"task_id": "nope"}))
        assert "no task 'nope' in session" in missing and "check the id returned by send_task" in missing
        assert "invalid task id" in error(await moogle.call_tool("get_task", {"task_id": "*"}))

        keep = ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "keep"}))["task_id"]
        drop = ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "drop"}))["task_id"]
        cancelled = await moogle.call_tool("cancel_task", {"task_id": drop})
        assert ok(cancelled)["state"] == "cancelled"
        assert f"Task {drop} for child 1 is cancelled; no child will receive it." == text(cancelled)
        got = ok(await team["chocobo1"].call_tool("wait_for_task", {"timeout_s": 5}))
        assert got["task"]["task_id"] == keep
        assert ok(await team["chocobo1"].call_tool("wait_for_task", {"timeout_s": 0}))["task"]["task_id"] == keep
        working = await moogle.call_tool("cancel_task", {"task_id": keep})
        assert ok(working)["state"] == "cancelled"
        assert "is cancelled" in text(working)
        again = error(await moogle.call_tool("cancel_task", {"task_id": keep}))
        assert f"task {keep!r} is already cancelled, so it can no longer be cancelled" in again


async def test_priority_and_shutdown_order(orch_config: OrchConfig) -> None:
    async with team_of(orch_config) as team:
        await start(team)
        moogle, chocobo = team["moogle"], team["chocobo1"]
        ids = [ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": p}))["task_id"] for p in ("a", "b")]
        told = await moogle.call_tool("shutdown", {"child_id": 1})
        assert ok(told)["told"] == [1] and ok(told)["now"] is False
        assert text(told).startswith("Told child(ren) 1 to stop after the tasks already queued for them. ")
        urgent = await moogle.call_tool("send_task", {"child_id": 1, "prompt": "urgent", "priority": 5})
        assert "queued at the front of child 1's queue" in text(urgent)

        order = []
        for _ in range(4):
            got = ok(await chocobo.call_tool("wait_for_task", {"timeout_s": 5}))
            if got["status"] == "shutdown":
                order.append("shutdown")
                break
            order.append(got["task"]["prompt"])
            ok(await chocobo.call_tool("report", {"task_id": got["task"]["task_id"], "result": "ok"}))
        assert order == ["urgent", "a", "b", "shutdown"]
        assert ids

        now = ok(await moogle.call_tool("shutdown", {"now": True}))
        assert now["told"] == [1, 2] and now["now"] is True
        ok(await moogle.call_tool("send_task", {"child_id": 2, "prompt": "late"}))
        first = await team["chocobo2"].call_tool("wait_for_task", {"timeout_s": 5})
        assert ok(first)["status"] == "shutdown" and ok(first)["task"] is None
        assert text(first).startswith("Shutdown: the moogle asked you to stop. Do not call wait_for_task again")
        assert "invalid child id 9" in error(await moogle.call_tool("shutdown", {"child_id": 9}))


# ---------------------------------------------------------------- session resolution and presence


async def test_current_session_is_kept_until_it_is_gone(orch_config: OrchConfig, r: Redis) -> None:
    async with team_of(orch_config) as team:
        first = await start(team)
        moogle, chocobo = team["moogle"], team["chocobo1"]
        assert (
            ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "x"}))["session_id"] == first["session_id"]
        )
        second = await start(team)
        # The moogle keeps the session it resolved first; a chocobo resolving now gets the newer one.
        assert (
            ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "y"}))["session_id"] == first["session_id"]
        )
        assert ok(await chocobo.call_tool("wait_for_task", {"timeout_s": 0}))["session_id"] == second["session_id"]
        ok(await team["summoner"].call_tool("cleanup_session", {"session_id": first["session_id"]}))
        assert (
            ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "z"}))["session_id"]
            == second["session_id"]
        )
        ok(await team["summoner"].call_tool("cleanup_session", {"session_id": second["session_id"]}))
        gone = error(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "w"}))
        assert f"session {second['session_id']!r} no longer exists (it was cleaned up with cleanup_session" in gone
        again = error(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "w"}))
        assert again == gone  # and so on: never "no session exists yet", which would mean "wait for one"


async def test_a_burst_of_calls_confirms_the_session_once_per_interval(orch_config: OrchConfig, r: Redis) -> None:
    first = await init_session(r, namespace="test", max_children=1)
    async with Client(create_server(settings(orch_config, "moogle", session_check_s=60))) as moogle:
        assert ok(await moogle.call_tool("session_status", {}))["session_id"] == first.session_id
        second = await init_session(r, namespace="test", max_children=1)
        await r.delete(first.keys.config)  # gone, but confirmed a moment ago: still used until the interval ends
        # session_status reads the (now empty) session the server still holds: the interval has not passed.
        assert ok(await moogle.call_tool("session_status", {}))["session_id"] == first.session_id
    async with Client(create_server(settings(orch_config, "moogle", session_check_s=0))) as moogle:
        assert ok(await moogle.call_tool("session_status", {}))["session_id"] == second.session_id


async def test_a_fixed_session_id(orch_config: OrchConfig, r: Redis) -> None:
    async with Client(create_server(settings(orch_config, "summoner"))) as summoner:
        old = ok(await summoner.call_tool("init_session", {}))["session_id"]
        ok(await summoner.call_tool("init_session", {}))
    async with Client(create_server(settings(orch_config, "moogle", session_id=old))) as moogle:
        assert ok(await moogle.call_tool("session_status", {}))["session_id"] == old
    async with Client(create_server(settings(orch_config, "moogle", session_id="gone"))) as moogle:
        assert "session 'gone' not found in namespace 'test'" in error(await moogle.call_tool("session_status", {}))


@pytest.mark.usefixtures("quick_renewal")
async def test_one_live_chocobo_per_child_id(orch_config: OrchConfig, r: Redis) -> None:
    async with Client(create_server(settings(orch_config, "summoner"))) as summoner:
        ok(await summoner.call_tool("init_session", {"max_children": 2}))
    session = await current_session(r, namespace="test")
    async with Client(create_server(settings(orch_config, "chocobo", 1))) as first:
        ok(await first.call_tool("wait_for_task", {"timeout_s": 0}))
        assert await r.exists(session.keys.presence(1))
        async with Client(create_server(settings(orch_config, "chocobo", 1))) as second:
            # The newcomer waits for the claim to lapse; the live first server renews it: refused.
            refused = error(await second.call_tool("wait_for_task", {"timeout_s": 10}))
            assert "child 1 of session" in refused and "served by another live orch-mcp server" in refused
            assert "two agents cannot be one child" in refused and "--child-id" not in refused
            assert "another live" in error(await second.call_tool("report", {"task_id": "t", "result": "r"}))
            ok(await first.call_tool("wait_for_task", {"timeout_s": 0}))  # the first one keeps working
    # Both servers stopped: the claim was released, so a new server for child 1 is accepted at once.
    assert not await r.exists(session.keys.presence(1))
    async with Client(create_server(settings(orch_config, "chocobo", 1))) as third:
        ok(await third.call_tool("wait_for_task", {"timeout_s": 0}))


async def test_a_chocobo_beyond_the_sessions_children(orch_config: OrchConfig, r: Redis) -> None:
    async with Client(create_server(settings(orch_config, "summoner"))) as summoner:
        ok(await summoner.call_tool("init_session", {"max_children": 2}))
    async with Client(create_server(settings(orch_config, "chocobo", 3))) as chocobo:
        refused = error(await chocobo.call_tool("wait_for_task", {"timeout_s": 0}))
        assert "this server is child 3 but session" in refused and "has children 1..2" in refused
        assert "--child-id" not in refused


async def test_a_restarted_chocobo_gets_its_unreported_task_back(orch_config: OrchConfig, r: Redis) -> None:
    async with Client(create_server(settings(orch_config, "summoner"))) as summoner:
        ok(await summoner.call_tool("init_session", {"max_children": 1}))
    parent = AsyncParent(r, await current_session(r, namespace="test"))
    task = await parent.send_task(1, "survive a restart")
    async with Client(create_server(settings(orch_config, "chocobo", 1))) as chocobo:
        assert ok(await chocobo.call_tool("wait_for_task", {"timeout_s": 5}))["task"]["task_id"] == task.task_id
    async with Client(create_server(settings(orch_config, "chocobo", 1))) as chocobo:
        assert ok(await chocobo.call_tool("wait_for_task", {"timeout_s": 5}))["task"]["task_id"] == task.task_id
        ok(await chocobo.call_tool("report", {"task_id": task.task_id, "result": "ok"}))
    assert (await parent.get_task(task.task_id)).delivery_count == 2


async def test_concurrent_waits_of_one_server_take_turns(orch_config: OrchConfig, r: Redis) -> None:
    async with team_of(orch_config) as team:
        await start(team)
        session = await current_session(r, namespace="test")
        child = AsyncChild(r, session, 1)
        tids = [ok(await team["moogle"].call_tool("send_task", {"child_id": 1, "prompt": p}))["task_id"] for p in "ab"]
        for tid in tids:
            assert await child.take(1) is not None
            await child.report(tid, f"result {tid}")
        got: list[str] = []

        async def wait() -> None:
            got.append(ok(await team["moogle"].call_tool("wait_for_report", {"timeout_s": 5}))["report"]["task_id"])

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            tg.start_soon(wait)
        assert sorted(got) == sorted(tids)


# ---------------------------------------------------------------- Redis unreachable, then back


async def test_unreachable_redis_is_a_tool_error_until_it_is_back() -> None:
    port = free_port()
    orch = OrchConfig(redis=RedisConfig(url=f"redis://127.0.0.1:{port}/0"), namespace="test")
    calls = {
        "summoner": ("init_session", {}),
        "moogle": ("wait_for_report", {"timeout_s": 1}),
        "chocobo": ("wait_for_task", {"timeout_s": 1}),
    }
    async with AsyncExitStack() as stack:
        clients = {
            role: await stack.enter_async_context(Client(create_server(settings(orch, role, 1)))) for role in calls
        }
        for role, (tool, args) in calls.items():
            with anyio.fail_after(5):
                message = error(await clients[role].call_tool(tool, args))
            assert f"Redis at redis://127.0.0.1:{port}/0 is unreachable" in message, message
            assert "start it with `orch-mcp redis start`" in message
        with EmbeddedRedis(port=port):
            session = ok(await clients["summoner"].call_tool("init_session", {"max_children": 1}))
            assert ok(await clients["moogle"].call_tool("wait_for_report", {"timeout_s": 0}))["status"] == "idle"
            got = ok(await clients["chocobo"].call_tool("wait_for_task", {"timeout_s": 0}))
            assert got["session_id"] == session["session_id"]
