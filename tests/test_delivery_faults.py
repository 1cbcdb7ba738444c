"""Issue 7, "What is broken today": one test per broken behaviour, each causing the fault on a real Redis.

1. undecodable bytes on a task or report queue wedge nobody; 2. a report for a task never delivered is
refused; 3. a task whose id is another child's goes to the dead letters once; 4. normal mode takes
reports in arrival order across children and loses none to cancelled waits; 5. a shutdown taken by a
cancelled wait comes again, and stays; 6. times are stamped at take; 7. no lookup crosses namespaces,
empty session ids are errors; 8. nothing re-creates a session's keys after cleanup; 9. a corrupt record
is reported as damaged; 10. a session refresh and session_status cost the same whatever the history.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_helpers import error, ok, settings
from test_cancel_under_flow import cancelled_at_random, run_library_flow

from orch_mcp import delivery, errors, sessions
from orch_mcp.agents import AsyncChild, AsyncParent
from orch_mcp.config import OrchConfig
from orch_mcp.messages import ShutdownMessage, TaskMessage
from orch_mcp.redis_client import Redis
from orch_mcp.server import create_server
from orch_mcp.sessions import Mode, SessionConfig, init_session

LIMIT = 1 << 20
MODES = ["summoner", "normal"]


@pytest.fixture(params=MODES)
async def cfg(r: Redis, request: pytest.FixtureRequest) -> SessionConfig:
    """A fresh session with two children, in each mode; the namespace's current one."""
    mode: Mode = request.param
    return await init_session(r, namespace="test", mode=mode, max_children=2, ttl_s=600)


@asynccontextmanager
async def team(orch: OrchConfig, session_id: str = "current") -> AsyncIterator[dict[str, Client]]:
    """In-process servers: a summoner, a moogle, chocobos 1 and 2 (each checks its session at every call); 30 s."""
    async with AsyncExitStack() as stack:
        clients = {}
        for name, role, child in [
            ("summoner", "summoner", None),
            ("moogle", "moogle", None),
            ("chocobo1", "chocobo", 1),
            ("chocobo2", "chocobo", 2),
        ]:
            server = create_server(settings(orch, role, child, session_id=session_id, session_check_s=0))
            clients[name] = await stack.enter_async_context(Client(server))
        with anyio.fail_after(30):
            yield clients


async def dead(r: Redis, cfg: SessionConfig) -> list[dict[str, Any]]:
    """The session's dead letters, oldest first."""
    return [json.loads(text) for text in await r.lrange(cfg.keys.dead, 0, -1)]


async def session_keys_left(r: Redis, cfg: SessionConfig) -> list[str]:
    """Every key of the session still in Redis (SCAN on its prefix)."""
    return sorted([key async for key in r.scan_iter(match=f"{cfg.prefix}*", count=1000)])


def exact_bytes(letter: dict[str, Any]) -> bytes:
    """The bytes a dead letter stands for."""
    b64 = letter.get("raw_base64")
    return base64.b64decode(b64) if b64 else str(letter["raw"]).encode()


# ---------------------------------------------------------------- 1. undecodable bytes

UNDECODABLE = [b"\xe9", b'{"type":"task",\xff}']


@pytest.mark.parametrize("bad", UNDECODABLE, ids=["latin1-byte", "json-with-ff"])
async def test_undecodable_bytes_wedge_neither_child_nor_moogle(
    r: Redis, cfg: SessionConfig, orch_config: OrchConfig, bad: bytes
) -> None:
    async with team(orch_config) as t:
        await r.rpush(cfg.keys.tasks(1), bad)
        await r.rpush(cfg.keys.inflight(2), bad)  # as a take cancelled after its move would leave it
        for who in ("moogle", "summoner"):
            ok(await t[who].call_tool("session_status", {}))
        sent = ok(await t["moogle"].call_tool("send_task", {"child_id": 1, "prompt": "behind the bad bytes"}))
        got = ok(await t["chocobo1"].call_tool("wait_for_task", {"timeout_s": 5}))
        assert got["status"] == "task" and got["task"]["task_id"] == sent["task_id"], got
        # Child 2's in-flight list held only the bad bytes: its wait answers (timeout), it does not fail.
        assert ok(await t["chocobo2"].call_tool("wait_for_task", {"timeout_s": 0}))["status"] == "timeout"

        await r.rpush(cfg.report_queue(1), bad)  # ahead of the real report
        for who in ("moogle", "summoner"):
            ok(await t[who].call_tool("session_status", {}))
        ok(await t["chocobo1"].call_tool("report", {"task_id": sent["task_id"], "result": "still here"}))
        got = ok(await t["moogle"].call_tool("wait_for_report", {"timeout_s": 5}))
        assert got["status"] == "report" and got["report"]["task_id"] == sent["task_id"], got
        assert got["report"]["result"] == "still here"
        status = ok(await t["moogle"].call_tool("session_status", {}))
    assert status["tasks"]["done"] == 1
    letters = await dead(r, cfg)
    assert [exact_bytes(letter) for letter in letters] == [bad, bad, bad], letters  # each one, by its exact bytes
    assert {letter["queue"] for letter in letters} >= {cfg.keys.inflight(1), cfg.keys.inflight(2)}


# ---------------------------------------------------------------- 2. a report for a task never delivered


async def test_report_for_a_task_never_delivered_is_refused(
    r: Redis, cfg: SessionConfig, orch_config: OrchConfig
) -> None:
    async with team(orch_config) as t:
        sent = ok(await t["moogle"].call_tool("send_task", {"child_id": 1, "prompt": "not yet taken"}))
        task_id = sent["task_id"]
        refused = error(await t["chocobo1"].call_tool("report", {"task_id": task_id, "result": "too early"}))
        assert "queued" in refused and "wait_for_task" in refused, refused
        assert ok(await t["moogle"].call_tool("get_task", {"task_id": task_id}))["state"] == "queued"
        assert await r.llen(cfg.keys.tasks(1)) == 1  # the queued copy is still there

        got = ok(await t["chocobo1"].call_tool("wait_for_task", {"timeout_s": 5}))
        assert got["status"] == "task" and got["task"]["task_id"] == task_id
        done = ok(await t["chocobo1"].call_tool("report", {"task_id": task_id, "result": "the real result"}))
        assert done["accepted"] is True
        report = ok(await t["moogle"].call_tool("wait_for_report", {"timeout_s": 5}))
        assert report["status"] == "report" and report["report"]["result"] == "the real result"


# ---------------------------------------------------------------- 3. another child's task on child 1's queue


async def test_task_with_another_childs_id_goes_to_the_dead_letters_once(
    r: Redis, cfg: SessionConfig, orch_config: OrchConfig
) -> None:
    async with team(orch_config) as t:
        sent = ok(await t["moogle"].call_tool("send_task", {"child_id": 2, "prompt": "child 2's job"}))
        original = await r.lindex(cfg.keys.tasks(2), 0)
        assert original is not None
        forged = TaskMessage.model_validate_json(original).model_copy(update={"child_id": 1})
        assert forged.task_id == sent["task_id"]
        await r.rpush(cfg.keys.tasks(1), forged.to_json())  # addressed to child 1, so it passes a route check

        for _ in range(3):  # not delivered, and not delivered again on the next waits either
            got = ok(await t["chocobo1"].call_tool("wait_for_task", {"timeout_s": 0.2}))
            assert got["status"] == "timeout", got
        letters = await dead(r, cfg)
        assert len(letters) == 1, letters
        assert sent["task_id"] in letters[0]["raw"] and "child 2" in letters[0]["reason"], letters[0]
        assert await r.llen(cfg.keys.inflight(1)) == 0

        got = ok(await t["chocobo2"].call_tool("wait_for_task", {"timeout_s": 5}))
        assert got["status"] == "task" and got["task"]["task_id"] == sent["task_id"]
        ok(await t["chocobo2"].call_tool("report", {"task_id": sent["task_id"], "result": "mine"}))
        later = ok(await t["moogle"].call_tool("send_task", {"child_id": 1, "prompt": "child 1's job"}))
        got = ok(await t["chocobo1"].call_tool("wait_for_task", {"timeout_s": 5}))
        assert got["status"] == "task" and got["task"]["task_id"] == later["task_id"]
    assert len(await dead(r, cfg)) == 1


# ---------------------------------------------------------------- 4. reports in arrival order; none lost


async def test_reports_come_in_arrival_order_across_children(r: Redis, cfg: SessionConfig) -> None:
    parent = AsyncParent(r, cfg)
    children = {n: AsyncChild(r, cfg, n) for n in cfg.child_ids}
    # Child 1 is busy (it reports most), child 2 reports now and then: neither may wait for the other's backlog.
    order = [1, 1, 2, 1, 1, 1, 2, 1, 2, 2, 1, 1]
    for i, n in enumerate(order):
        await parent.send_task(n, f"task {i}")
    arrived = []
    for n in order:
        task = await children[n].take(5)
        assert isinstance(task, TaskMessage)
        await children[n].report(task.task_id, f"done by {n}")
        arrived.append(task.task_id)
    received = []
    with anyio.fail_after(10):
        while (report := await parent.wait_for_report(0.2)) is not None:
            received.append(report.task_id)
    assert received == arrived


@pytest.mark.parametrize("mode", MODES)
async def test_cancelled_report_waits_lose_no_report(r: Redis, mode: Mode) -> None:
    # The flow of test_cancel_under_flow, narrowed to the reports: children take and report without being cancelled,
    # one or two tasks at a time, so the parent's waits (cancelled at random) mostly block on an empty queue until a
    # report arrives. run_library_flow checks every report arrived; here, that the window was hit.
    tally = await run_library_flow(r, mode, 150, cancel_takes=False, outstanding=2)
    assert tally.report_hits > 0, f"no cancelled wait_for_report landed in the window; {tally.summary(mode)}"


# ---------------------------------------------------------------- 5. shutdown: at least once, sticky


async def test_shutdown_taken_by_a_cancelled_wait_comes_again_and_stays(r: Redis, cfg: SessionConfig) -> None:
    parent = AsyncParent(r, cfg)
    child = AsyncChild(r, cfg, 1)
    rng = random.Random(7)
    hits = rounds = cancels = 0
    with anyio.fail_after(20):
        while hits < 5 and rounds < 200:
            rounds += 1
            await parent.shutdown(1, reason=f"round {rounds}")
            cancelled, msg = await cancelled_at_random(lambda: child.take(1), rng)
            if not cancelled:
                assert isinstance(msg, ShutdownMessage), msg
            else:
                cancels += 1
                if await r.llen(cfg.keys.tasks(1)) == 0:
                    hits += 1  # the cancelled take had moved the shutdown off the queue, and never returned it
            for _ in range(3):  # the next wait hears it, and so does every wait after it: sticky
                again = await child.take(1)
                assert isinstance(again, ShutdownMessage), f"round {rounds}: the shutdown was lost ({again})"
                assert again.reason == f"round {rounds}"
            task = await parent.send_task(1, f"new work {rounds}")  # new work withdraws it
            got = await child.take(1)
            assert isinstance(got, TaskMessage) and got.task_id == task.task_id, got
            await child.report(task.task_id, "done")
            assert await child.take(0.05) is None
    summary = f"{cfg.mode} mode: {hits} of {cancels} cancelled takes had taken the shutdown off the queue"
    print(summary)
    assert hits > 0, f"no cancelled take landed in the window in {rounds} rounds; {summary}"


# ---------------------------------------------------------------- 6. times


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_times_are_stamped_at_take_not_when_the_wait_began(r: Redis, cfg: SessionConfig) -> None:
    parent = AsyncParent(r, cfg)
    child = AsyncChild(r, cfg, 1)
    blocking = anyio.Event()
    taken: list[object] = []

    async def on_slice() -> None:
        blocking.set()

    async def wait() -> None:
        taken.append(await child.take(10, on_slice=on_slice))

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await blocking.wait()
            # The gap under test, not a wait for something: the child blocks 0.5 s before there is anything to take.
            await anyio.sleep(0.5)
            task = await parent.send_task(1, "sent while the child waited")
    assert isinstance(taken[0], TaskMessage) and taken[0].task_id == task.task_id
    sent_at = task.created_at

    record = await parent.get_task(task.task_id)
    assert record.started_at is not None
    assert at(record.started_at) >= sent_at, f"started_at {record.started_at} is before the send ({sent_at})"

    events = [f for _, f in await r.xrange(cfg.keys.status) if f["task_id"] == task.task_id]
    assert [e["state"] for e in events] == ["queued", "working"], events
    assert at(events[0]["at"]) <= at(events[1]["at"]), events
    assert at(events[1]["at"]) >= sent_at, events

    seen_ms = int(await r.hget(cfg.keys.last_seen, "1"))
    assert seen_ms >= int(sent_at.timestamp() * 1000), "last_seen was stamped before the task was sent"


# ---------------------------------------------------------------- 7. namespaces and empty ids


async def test_another_namespace_cannot_reach_a_session(r: Redis, cfg: SessionConfig, orch_config: OrchConfig) -> None:
    parent = AsyncParent(r, cfg)
    task = await parent.send_task(1, "belongs to namespace test")
    keys_before = await session_keys_left(r, cfg)
    other = OrchConfig(redis=orch_config.redis, namespace="other")
    async with team(other, session_id=cfg.session_id) as t:
        calls: list[tuple[str, dict[str, Any]]] = [
            ("get_task", {"task_id": task.task_id}),
            ("cancel_task", {"task_id": task.task_id}),
            ("send_task", {"child_id": 1, "prompt": "smuggled"}),
            ("wait_for_report", {"timeout_s": 0}),
            ("session_status", {}),
        ]
        for tool, args in calls:
            assert "not found" in error(await t["moogle"].call_tool(tool, args)), tool
        assert "not found" in error(await t["chocobo1"].call_tool("wait_for_task", {"timeout_s": 0.2}))
        for tool in ("get_session", "session_status", "cleanup_session"):
            assert "not found" in error(await t["summoner"].call_tool(tool, {"session_id": cfg.session_id})), tool
    with pytest.raises(errors.NotFoundError):
        await sessions.resolve_session(r, "other", cfg.session_id)

    assert await session_keys_left(r, cfg) == keys_before
    assert (await parent.get_task(task.task_id)).state == "queued"
    assert await r.lrange(cfg.keys.tasks(1), 0, -1) == [task.to_json()]
    assert await r.hget("test:sessions", cfg.session_id) == cfg.prefix


async def test_empty_session_id_is_an_error_and_deletes_nothing(
    r: Redis, cfg: SessionConfig, orch_config: OrchConfig
) -> None:
    keys_before = await session_keys_left(r, cfg)
    async with team(orch_config) as t:
        for tool in ("get_session", "cleanup_session"):
            assert "session_id" in error(await t["summoner"].call_tool(tool, {"session_id": ""})), tool
    assert await session_keys_left(r, cfg) == keys_before
    assert await r.get("test:current") == cfg.session_id
    assert (await sessions.resolve_session(r, "test", None)).session_id == cfg.session_id


# ---------------------------------------------------------------- 8. nothing comes back after cleanup


async def test_a_running_child_recreates_no_key_after_cleanup(
    r: Redis, cfg: SessionConfig, orch_config: OrchConfig
) -> None:
    parent = AsyncParent(r, cfg)
    child = AsyncChild(r, cfg, 1)
    await child.claim()
    first = await parent.send_task(1, "before the cleanup")
    assert isinstance(await child.take(5), TaskMessage)
    await child.report(first.task_id, "done")
    second = await parent.send_task(1, "in flight at the cleanup")
    assert isinstance(await child.take(5), TaskMessage)
    assert await r.exists(cfg.keys.presence(1)) and await r.hexists(cfg.keys.last_seen, "1")

    async with team(orch_config) as t:
        got = ok(await t["chocobo2"].call_tool("wait_for_task", {"timeout_s": 0}))  # a real server, present
        assert got["status"] == "timeout"
        async with anyio.create_task_group() as tg:
            tg.start_soon(child.keep_presence)  # its first renewal is seconds away: driven directly below
            removed = ok(await t["summoner"].call_tool("cleanup_session", {"session_id": cfg.session_id}))
            assert removed["removed_count"] > 0
            assert await session_keys_left(r, cfg) == []

            # What keep_presence does at each renewal, then the child's other calls: none may re-create a key.
            for call in (child.claim, lambda: child.take(0.05), lambda: child.report(second.task_id, "late")):
                with contextlib.suppress(errors.OrchError):  # refusing is fine; re-creating keys is not
                    await call()
                assert await session_keys_left(r, cfg) == []
            error(await t["chocobo2"].call_tool("wait_for_task", {"timeout_s": 0}))
            error(await t["chocobo1"].call_tool("report", {"task_id": second.task_id, "result": "late"}))
            assert await session_keys_left(r, cfg) == []
            tg.cancel_scope.cancel()
    assert await session_keys_left(r, cfg) == []
    assert not await r.hexists("test:sessions", cfg.session_id)


# ---------------------------------------------------------------- 9. corrupt records

CORRUPT = [
    pytest.param(b"\xff\xfe", id="bytes"),
    pytest.param(b"not json", id="text"),
    pytest.param(b"[]", id="list"),
    pytest.param(b'{"state": "queued"}', id="no-msg"),
    pytest.param(b'{"state": 7, "msg": "x"}', id="wrong-types"),
]


@pytest.mark.parametrize("garbage", CORRUPT)
async def test_a_corrupt_record_is_reported_as_damaged(
    r: Redis, cfg: SessionConfig, orch_config: OrchConfig, garbage: bytes
) -> None:
    parent = AsyncParent(r, cfg)
    child = AsyncChild(r, cfg, 1)
    queued = await parent.send_task(1, "its record will be overwritten")
    await r.hset(cfg.keys.records(1), queued.task_id, garbage)
    with pytest.raises(errors.DamagedRecordError):
        await parent.get_task(queued.task_id)
    async with team(orch_config) as t:
        for tool in ("get_task", "cancel_task"):
            text = error(await t["moogle"].call_tool(tool, {"task_id": queued.task_id}))
            assert "damaged" in text, f"{tool}: {text}"
        ok(await t["moogle"].call_tool("session_status", {}))
    # The child is not handed a task rebuilt from defaults: the queued message goes to the dead letters, as damaged.
    assert await child.take(0.2) is None
    letters = await dead(r, cfg)
    assert len(letters) == 1 and "damaged" in letters[0]["reason"], letters

    working = await parent.send_task(1, "taken, then its record is overwritten")
    assert isinstance(await child.take(5), TaskMessage)
    await r.hset(cfg.keys.records(1), working.task_id, garbage)
    with pytest.raises(errors.DamagedRecordError):
        await child.report(working.task_id, "done")


# ---------------------------------------------------------------- 10. costs flat in history

#: Commands a client may send on its own (a new connection's handshake); not part of what an operation costs.
HANDSHAKE = {"cmdstat_hello", "cmdstat_client", "cmdstat_ping", "cmdstat_select", "cmdstat_auth"}


async def commands_of(r: Redis, operation: Any) -> int:
    """How many commands (scripts' inner commands included) Redis executed for `await operation()`."""
    await r.config_resetstat()
    await operation()
    stats: dict[str, dict[str, int]] = await r.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in HANDSHAKE | {"cmdstat_config", "cmdstat_info"})


async def with_history(r: Redis, mode: Mode, tasks: int) -> SessionConfig:
    """A session whose `tasks` tasks were each sent, taken and reported (spread over three children)."""
    cfg = await init_session(r, namespace="test", mode=mode, max_children=3, ttl_s=600)
    parent = AsyncParent(r, cfg)
    children = {n: AsyncChild(r, cfg, n) for n in cfg.child_ids}
    for i in range(tasks):
        n = i % 3 + 1
        await parent.send_task(n, f"task {i}")
        task = await children[n].take(5)
        assert isinstance(task, TaskMessage)
        await children[n].report(task.task_id, "ok")
    return cfg


@pytest.mark.parametrize("mode", MODES)
async def test_refresh_and_status_cost_the_same_whatever_the_history(r: Redis, mode: Mode) -> None:
    small = await with_history(r, mode, 10)
    large = await with_history(r, mode, 1_000)
    assert (await delivery.session_status(r, large)).tasks["done"] == 1_000
    costs = {}
    for name, cfg in (("10 tasks", small), ("1,000 tasks", large)):
        costs[name] = (
            await commands_of(r, lambda cfg=cfg: sessions.touch_session(r, cfg, force=True)),
            await commands_of(r, lambda cfg=cfg: delivery.session_status(r, cfg)),
        )
    print(f"{mode} mode: (refresh, session_status) commands: {costs}")
    assert costs["10 tasks"] == costs["1,000 tasks"], costs
