"""At-least-once delivery on a real Redis: tasks, reports, priorities, dead letters, presence, status, monitor."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from orch_mcp import delivery
from orch_mcp.agents import AsyncChild, AsyncParent
from orch_mcp.errors import ConflictError, LimitError, MessageError, NotFoundError
from orch_mcp.messages import ReportMessage, ShutdownMessage, StatusMessage, TaskMessage, parse_message
from orch_mcp.redis_client import Redis
from orch_mcp.sessions import Mode, SessionConfig, init_session

NS = "test"
LIMIT = 1 << 20


@pytest.fixture(params=["summoner", "normal"])
async def session(r: Redis, request: pytest.FixtureRequest) -> SessionConfig:
    """A fresh session in each mode, three children."""
    mode: Mode = request.param
    return await init_session(r, namespace=NS, mode=mode, max_children=3, ttl_s=600)


@pytest.fixture
async def summoner(r: Redis) -> SessionConfig:
    return await init_session(r, namespace=NS, mode="summoner", max_children=3, ttl_s=600)


async def send(r: Redis, cfg: SessionConfig, child: int, prompt: str, priority: int = 0) -> TaskMessage:
    return await delivery.send_task(r, cfg, child, prompt, priority=priority, max_bytes=LIMIT)


async def take(r: Redis, cfg: SessionConfig, child: int, timeout: float = 2) -> TaskMessage:
    msg = await delivery.take_task(r, cfg, child, timeout)
    assert isinstance(msg, TaskMessage), msg
    return msg


async def queue_order(r: Redis, cfg: SessionConfig, child: int) -> list[str]:
    """What is on a child's queue, front first: task prompts, or 'shutdown'."""
    order = []
    for raw in await r.lrange(cfg.keys.tasks(child), 0, -1):
        msg = parse_message(raw)
        order.append(msg.prompt if isinstance(msg, TaskMessage) else msg.type)
    return order


async def states(r: Redis, cfg: SessionConfig) -> list[tuple[str, str, str]]:
    """The status stream, oldest first, as (state, child_id, task_id)."""
    return [(f["state"], f["child_id"], f["task_id"]) for _, f in await r.xrange(cfg.keys.status)]


# ---------------------------------------------------------------- end to end


async def test_round_trip(r: Redis, session: SessionConfig) -> None:
    sent = await delivery.send_task(r, session, 2, "add 2 and 3", {"a": 2, "b": [3]}, max_bytes=LIMIT)
    record = await delivery.get_task(r, session, sent.task_id)
    assert (record.state, record.child_id, record.delivery_count, record.prompt) == ("queued", 2, 0, "add 2 and 3")
    assert record.context == {"a": 2, "b": [3]}

    got = await take(r, session, 2)
    assert got == sent
    record = await delivery.get_task(r, session, sent.task_id)
    assert (record.state, record.delivery_count) == ("working", 1) and record.started_at

    outcome = await delivery.report_task(r, session, 2, sent.task_id, "5", max_bytes=LIMIT)
    assert (outcome.accepted, outcome.duplicate, outcome.state) == (True, False, "done")
    assert await r.llen(session.keys.inflight(2)) == 0

    found = await delivery.take_report(r, session, 2)
    assert found is not None
    report, raw = found
    assert (report.task_id, report.child_id, report.status, report.result) == (sent.task_id, 2, "done", "5")
    assert await r.lrange(session.keys.reports_inflight, 0, -1) == [raw.decode()]  # until acknowledged
    assert await delivery.take_report(r, session, 0.05, ack=raw) is None
    assert await r.llen(session.keys.reports_inflight) == 0

    record = await delivery.get_task(r, session, sent.task_id)
    assert (record.state, record.result, record.error) == ("done", "5", None) and record.finished_at
    assert await states(r, session) == [("queued", "2", sent.task_id), ("working", "2", sent.task_id),
                                        ("done", "2", sent.task_id)]  # fmt: skip


async def test_report_queues_per_mode(r: Redis, session: SessionConfig) -> None:
    one, two = await send(r, session, 1, "one"), await send(r, session, 2, "two")
    for child, task in ((1, one), (2, two)):
        await take(r, session, child)
        await delivery.report_task(r, session, child, task.task_id, f"r{child}", "failed", "it broke", max_bytes=LIMIT)
    if session.mode == "summoner":
        assert await r.llen(session.keys.reports) == 2
    else:
        assert [await r.llen(session.keys.child_reports(n)) for n in (1, 2, 3)] == [1, 1, 0]
        assert not await r.exists(session.keys.reports)
    parent = AsyncParent(r, session)
    got = [await parent.wait_for_report(2), await parent.wait_for_report(2)]
    assert {(m.task_id, m.status, m.error) for m in got if m} == {
        (one.task_id, "failed", "it broke"),
        (two.task_id, "failed", "it broke"),
    }
    assert await parent.wait_for_report(0.05) is None
    assert await r.llen(session.keys.reports_inflight) == 0  # every report acknowledged


async def test_monitor_channel_gets_every_state_change(r: Redis, summoner: SessionConfig) -> None:
    assert summoner.monitor_channel
    async with r.pubsub() as pubsub:
        await pubsub.subscribe(summoner.monitor_channel)
        task = await send(r, summoner, 1, "watch me")
        await take(r, summoner, 1)
        await delivery.report_task(r, summoner, 1, task.task_id, "seen", max_bytes=LIMIT)
        seen: list[StatusMessage] = []
        with anyio.fail_after(5):
            while len(seen) < 3:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is not None:
                    parsed = parse_message(msg["data"])
                    assert isinstance(parsed, StatusMessage)
                    seen.append(parsed)
    assert [(m.state, m.child_id, m.task_id, m.session_id) for m in seen] == [
        (state, 1, task.task_id, summoner.session_id) for state in ("queued", "working", "done")
    ]


async def test_normal_mode_publishes_nothing(r: Redis) -> None:
    cfg = await init_session(r, namespace=NS, mode="normal", max_children=1)
    assert cfg.monitor_channel is None
    async with r.pubsub() as pubsub:
        await pubsub.psubscribe("*")
        task = await send(r, cfg, 1, "quiet")
        await take(r, cfg, 1)
        await delivery.report_task(r, cfg, 1, task.task_id, "done quietly", max_bytes=LIMIT)
        await r.publish("sentinel", "end")  # everything published before it would arrive before it
        with anyio.fail_after(5):
            while (msg := await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)) is None:
                pass
    assert (msg["channel"], msg["data"]) == ("sentinel", "end")
    assert [s for s, _, _ in await states(r, cfg)] == ["queued", "working", "done"]  # the stream still has them


async def test_waiting_child_wakes_when_a_task_arrives(r: Redis, session: SessionConfig) -> None:
    got: list[Any] = []

    async def child() -> None:
        got.append(await delivery.take_task(r, session, 3, 10, slice_s=0.2))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
            # wait until the child is blocked on its queue (CLIENT LIST shows the BLMOVE), then send
            while "cmd=blmove" not in await r.execute_command("CLIENT", "LIST"):
                await anyio.lowlevel.checkpoint()
            sent = await send(r, session, 3, "wake up")
    assert got == [sent]


async def test_waits_time_out_with_none(r: Redis, session: SessionConfig) -> None:
    slices: list[int] = []

    async def on_slice() -> None:
        slices.append(1)

    with anyio.fail_after(5):
        assert await delivery.take_task(r, session, 1, 1.0, slice_s=0.1, on_slice=on_slice) is None
        assert len(slices) >= 2  # the wait was cut into slices
        assert await delivery.take_report(r, session, 0.2, slice_s=0.1) is None


# ---------------------------------------------------------------- ordering


async def test_priority_goes_in_front_and_equal_priorities_keep_order(r: Redis, session: SessionConfig) -> None:
    for prompt, priority in [("a", 0), ("b", 0), ("c", 5), ("d", 5), ("e", 1), ("f", 0), ("g", -2), ("h", 9)]:
        await send(r, session, 1, prompt, priority)
    assert await queue_order(r, session, 1) == ["h", "c", "d", "e", "a", "b", "f", "g"]
    taken = []
    for _ in range(8):
        task = await take(r, session, 1)
        taken.append(task.prompt)
        await delivery.report_task(r, session, 1, task.task_id, "ok", max_bytes=LIMIT)
    assert taken == ["h", "c", "d", "e", "a", "b", "f", "g"]


async def test_shutdown_is_queued_behind_pending_tasks(r: Redis, session: SessionConfig) -> None:
    a, b = await send(r, session, 1, "a"), await send(r, session, 1, "b")
    assert await delivery.send_shutdown(r, session, 1, reason="finish up") == [1]
    assert await queue_order(r, session, 1) == ["a", "b", "shutdown"]
    for expected in (a, b):
        task = await take(r, session, 1)
        assert task == expected
        await delivery.report_task(r, session, 1, task.task_id, "ok", max_bytes=LIMIT)
    stop = await delivery.take_task(r, session, 1, 1)
    assert isinstance(stop, ShutdownMessage) and stop.reason == "finish up"
    # sticky: the shutdown stays in flight, and a child that asks again hears it again ...
    assert await delivery.take_task(r, session, 1, 0.05) == stop
    assert [s for s, _, _ in await states(r, session)].count("shutdown") == 1  # one event, however often asked
    # ... until new work is sent to it
    c = await send(r, session, 1, "c")
    assert await r.llen(session.keys.inflight(1)) == 0
    assert await take(r, session, 1) == c


async def test_shutdown_now_goes_and_stays_in_front(r: Redis, session: SessionConfig) -> None:
    await send(r, session, 2, "pending")
    assert await delivery.send_shutdown(r, session, 2, now=True) == [2]
    await send(r, session, 2, "urgent", priority=100)
    assert await queue_order(r, session, 2) == ["shutdown", "urgent", "pending"]
    assert isinstance(await delivery.take_task(r, session, 2, 1), ShutdownMessage)


async def test_shutdown_everyone(r: Redis, session: SessionConfig) -> None:
    assert await delivery.send_shutdown(r, session) == [1, 2, 3]
    for child in (1, 2, 3):
        stop = await delivery.take_task(r, session, child, 1)
        assert isinstance(stop, ShutdownMessage) and stop.child_id is None


# ---------------------------------------------------------------- what is on the queue


async def test_raw_rpush_of_a_valid_task_is_delivered_and_recorded(r: Redis, session: SessionConfig) -> None:
    raw_task = TaskMessage.create("typed by hand", session.session_id, 1, context={"via": "redis-cli"})
    await r.rpush(session.keys.tasks(1), raw_task.to_json())
    got = await take(r, session, 1)
    assert got == raw_task
    record = await delivery.get_task(r, session, raw_task.task_id)
    assert (record.state, record.delivery_count, record.prompt, record.context) == (
        "working",
        1,
        "typed by hand",
        {"via": "redis-cli"},
    )
    assert await r.hget(session.keys.task_child, raw_task.task_id) == "1"
    await delivery.report_task(r, session, 1, raw_task.task_id, "ok", max_bytes=LIMIT)
    assert (await delivery.get_task(r, session, raw_task.task_id)).state == "done"


async def test_malformed_messages_go_to_dead_letters_and_the_next_is_delivered(
    r: Redis, session: SessionConfig
) -> None:
    queue = session.keys.tasks(1)
    report = ReportMessage.create("t1", session.session_id, 1)
    bad_id = TaskMessage.create("x", session.session_id, 1).to_dict() | {"task_id": "a b"}
    for raw in ["garbage", '{"type": "task"}', "[1]", report.to_json(), json.dumps(bad_id)]:
        await r.rpush(queue, raw)
    good = await send(r, session, 1, "the good one")
    assert await take(r, session, 1) == good
    letters = await delivery.dead_letters(r, session)
    assert [letter.raw for letter in letters] == ["garbage", '{"type": "task"}', "[1]", report.to_json(),
                                                  json.dumps(bad_id)]  # fmt: skip
    reasons = [letter.reason for letter in letters]
    assert "not valid JSON" in reasons[0]
    assert "missing field 'task_id'" in reasons[1]
    assert "must be a JSON object" in reasons[2]
    assert "does not belong on a task queue" in reasons[3]
    assert "invalid task id" in reasons[4]
    assert await r.lrange(session.keys.inflight(1), 0, -1) == [good.to_json()]  # only the good one in flight
    assert [s for s, _, _ in await states(r, session)].count("dead_letter") == 5


async def test_misrouted_tasks_go_to_dead_letters(r: Redis, session: SessionConfig) -> None:
    for_child_2 = TaskMessage.create("not yours", session.session_id, 2)
    other_session = TaskMessage.create("wrong session", "another-session", 1)
    await r.rpush(session.keys.tasks(1), for_child_2.to_json(), other_session.to_json())
    assert await delivery.take_task(r, session, 1, 0.2) is None
    reasons = [letter.reason for letter in await delivery.dead_letters(r, session)]
    assert "addressed to child 2, not 1" in reasons[0]
    assert "belongs to session 'another-session'" in reasons[1]
    assert await r.llen(session.keys.inflight(1)) == 0


async def test_malformed_report_goes_to_dead_letters(r: Redis, session: SessionConfig) -> None:
    task = await send(r, session, 1, "x")
    await take(r, session, 1)
    await r.rpush(session.report_queue(1), "not a report")
    await delivery.report_task(r, session, 1, task.task_id, "fine", max_bytes=LIMIT)
    found = await delivery.take_report(r, session, 2)
    assert found is not None and found[0].task_id == task.task_id
    assert [letter.raw for letter in await delivery.dead_letters(r, session)] == ["not a report"]


# ---------------------------------------------------------------- reports


async def test_duplicate_report_is_not_an_error_and_changes_nothing(r: Redis, session: SessionConfig) -> None:
    task = await send(r, session, 1, "x")
    await take(r, session, 1)
    first = await delivery.report_task(r, session, 1, task.task_id, "first", max_bytes=LIMIT)
    again = await delivery.report_task(r, session, 1, task.task_id, "second", "failed", max_bytes=LIMIT)
    assert (first.accepted, first.duplicate) == (True, False)
    assert (again.accepted, again.duplicate, again.state) == (False, True, "done")
    record = await delivery.get_task(r, session, task.task_id)
    assert (record.state, record.result) == ("done", "first")
    assert await r.llen(session.report_queue(1)) == 1  # the repeat queued nothing


async def test_report_for_unknown_or_foreign_task_raises(r: Redis, session: SessionConfig) -> None:
    task = await send(r, session, 2, "for child 2")
    with pytest.raises(NotFoundError, match="no task 'nope'"):
        await delivery.report_task(r, session, 1, "nope", "x", max_bytes=LIMIT)
    with pytest.raises(ConflictError, match="belongs to child 2, not to you"):
        await delivery.report_task(r, session, 1, task.task_id, "x", max_bytes=LIMIT)
    with pytest.raises(MessageError, match="status"):
        await delivery.report_task(r, session, 2, task.task_id, "x", "maybe", max_bytes=LIMIT)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await delivery.get_task(r, session, "nope")
    assert (await delivery.get_task(r, session, task.task_id)).state == "queued"


async def test_oversized_messages_are_refused_with_the_limit(r: Redis, session: SessionConfig) -> None:
    with pytest.raises(LimitError, match="over the limit of 100 bytes"):
        await delivery.send_task(r, session, 1, "x" * 101, max_bytes=100)
    with pytest.raises(LimitError, match="100 bytes"):
        await delivery.send_task(r, session, 1, "short", {"blob": "y" * 100}, max_bytes=100)
    with pytest.raises(LimitError, match="ORCH_MAX_MESSAGE_BYTES"):
        await delivery.send_task(r, session, 1, "é" * 51, max_bytes=100)  # bytes, not characters
    assert await r.llen(session.keys.tasks(1)) == 0
    task = await delivery.send_task(r, session, 1, "x" * 90, max_bytes=100)
    await take(r, session, 1)
    with pytest.raises(LimitError, match="over the limit of 100 bytes"):
        await delivery.report_task(r, session, 1, task.task_id, "r" * 101, max_bytes=100)
    assert (await delivery.get_task(r, session, task.task_id)).state == "working"


async def test_context_must_be_plain_json(r: Redis, session: SessionConfig) -> None:
    with pytest.raises(MessageError, match="context"):
        await delivery.send_task(r, session, 1, "x", {"when": object()}, max_bytes=LIMIT)


async def test_report_is_recorded_before_it_is_queued(r: Redis, session: SessionConfig) -> None:
    """Whoever sees the report on the queue finds the result already in the record; no parent needs to wait."""
    task = await send(r, session, 1, "x")
    await take(r, session, 1)
    seen: list[tuple[str, str | None]] = []

    async def watcher() -> None:
        popped = await r.blpop([session.report_queue(1)], 5)  # a plain consumer, not the library
        assert popped is not None
        record = await delivery.get_task(r, session, json.loads(popped[1])["task_id"])
        seen.append((record.state, record.result))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watcher)
            while "cmd=blpop" not in await r.execute_command("CLIENT", "LIST"):
                await anyio.lowlevel.checkpoint()
            await delivery.report_task(r, session, 1, task.task_id, "42", max_bytes=LIMIT)
    assert seen == [("done", "42")]


async def test_a_report_before_the_take_is_refused_and_the_task_stays_queued(r: Redis, session: SessionConfig) -> None:
    early = await send(r, session, 1, "not taken yet")
    with pytest.raises(ConflictError, match=r"not in flight for you \(it is queued"):
        await delivery.report_task(r, session, 1, early.task_id, "did it offline", max_bytes=LIMIT)
    assert (await delivery.get_task(r, session, early.task_id)).state == "queued"
    assert await take(r, session, 1) == early  # still delivered


# ---------------------------------------------------------------- cancel safety


async def test_unacknowledged_report_comes_back(r: Redis, session: SessionConfig) -> None:
    a, b = await send(r, session, 1, "a"), await send(r, session, 2, "b")
    for child, task in ((1, a), (2, b)):
        await take(r, session, child)
        await delivery.report_task(r, session, child, task.task_id, task.prompt, max_bytes=LIMIT)
    first = await delivery.take_report(r, session, 1)
    assert first is not None
    # the caller was cancelled before it used `first`: the next call, without ack, gets it again
    again = await delivery.take_report(r, session, 1)
    assert again == first
    second = await delivery.take_report(r, session, 1, ack=first[1])
    assert second is not None and second[0].task_id != first[0].task_id
    assert {first[0].task_id, second[0].task_id} == {a.task_id, b.task_id}
    assert await delivery.take_report(r, session, 0.05, ack=second[1]) is None
    assert await r.llen(session.keys.reports_inflight) == 0


async def test_cancelled_waits_lose_nothing(r: Redis, session: SessionConfig) -> None:
    parent, child = AsyncParent(r, session, slice_s=0.2), AsyncChild(r, session, 1, slice_s=0.2)
    for _ in range(2):  # cancel both waits while they block, then deliver
        with anyio.move_on_after(0.1):
            await parent.wait_for_report(5)
        with anyio.move_on_after(0.1):
            await child.take(5)
    task = await send(r, session, 1, "after the cancels")
    with anyio.fail_after(5):
        got = await child.take(2)
        assert got == task
        # a take without a report in between hands the same in-flight task back
        again = await child.take(2)
        assert again == task
        assert (await delivery.get_task(r, session, task.task_id)).delivery_count == 2
        await child.report(task.task_id, "ok")
        report = await parent.wait_for_report(2)
        assert report is not None and report.task_id == task.task_id
        assert await parent.wait_for_report(0.05) is None
        assert await child.take(0.05) is None


async def test_agents_keep_going_over_many_tasks(r: Redis, session: SessionConfig) -> None:
    parent, child = AsyncParent(r, session), AsyncChild(r, session, 2)
    with anyio.fail_after(10):
        for i in range(20):
            task = await parent.send_task(2, f"task {i}", priority=i % 3)
            got = await child.take(2)
            assert got == task
            await child.report(got.task_id, f"result {i}")
            report = await parent.wait_for_report(2)
            assert report is not None and (report.task_id, report.result) == (task.task_id, f"result {i}")
    assert await r.llen(session.keys.inflight(2)) == 0
    assert await r.llen(session.keys.reports_inflight) == 1  # the last one, acknowledged by the next wait
    assert (await parent.status()).tasks["done"] == 20


# ---------------------------------------------------------------- cancel, presence, status


async def test_cancel_task(r: Redis, session: SessionConfig) -> None:
    queued, working = await send(r, session, 1, "never mind"), await send(r, session, 2, "busy")
    await take(r, session, 2)
    record = await delivery.cancel_task(r, session, queued.task_id)
    assert record.state == "cancelled" and record.finished_at
    assert await r.llen(session.keys.tasks(1)) == 0
    with pytest.raises(ConflictError, match="cancelled"):
        await delivery.report_task(r, session, 1, queued.task_id, "x", max_bytes=LIMIT)
    assert ("cancelled", "1", queued.task_id) in await states(r, session)
    # a working task is marked cancelled; its child hears it at its next take, and its report is refused
    assert (await delivery.cancel_task(r, session, working.task_id)).state == "cancelled"
    taken = await delivery.take(r, session, 2, 0.05)
    assert (taken.message, taken.cancelled) == (None, [working.task_id])
    assert await r.llen(session.keys.inflight(2)) == 0
    with pytest.raises(ConflictError, match="cancelled"):
        await delivery.report_task(r, session, 2, working.task_id, "x", max_bytes=LIMIT)
    with pytest.raises(ConflictError, match="already cancelled"):
        await delivery.cancel_task(r, session, working.task_id)
    assert (await delivery.session_status(r, session)).tasks["cancelled"] == 2


async def test_presence_conflict_and_release(r: Redis, session: SessionConfig) -> None:
    await delivery.claim_presence(r, session, 1, "first")
    await delivery.claim_presence(r, session, 1, "first")  # renewing your own claim is fine
    with pytest.raises(ConflictError, match=r"child 1 .* already served by another live orch-mcp process"):
        await delivery.claim_presence(r, session, 1, "second")
    await delivery.claim_presence(r, session, 2, "second")  # another child id is free
    await delivery.release_presence(r, session, 1, "second")  # not its claim: no effect
    assert await r.get(session.keys.presence(1)) == "first"
    await delivery.release_presence(r, session, 1, "first")
    await delivery.claim_presence(r, session, 1, "second")
    assert await r.get(session.keys.presence(1)) == "second"
    assert 0 < await r.ttl(session.keys.presence(1)) <= delivery.PRESENCE_TTL_S


@pytest.mark.usefixtures("quick_renewal")
async def test_async_child_claim(r: Redis, session: SessionConfig) -> None:
    first, second = AsyncChild(r, session, 3), AsyncChild(r, session, 3)
    assert await first.claim() is True
    assert await second.claim() is False  # held: not taken, and no wait asked for
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.keep_presence)  # a live holder renews its claim while the newcomer waits
            with pytest.raises(delivery.HeldError, match="held by another live orch-mcp server"):
                await second.claim(wait_s=delivery.PRESENCE_TTL_S + 1)
            tg.cancel_scope.cancel()
    await first.release()
    assert await second.claim() is True
    await second.release()
    assert not await r.exists(session.keys.presence(3))


async def test_session_status(r: Redis, session: SessionConfig) -> None:
    await delivery.claim_presence(r, session, 1, "one")
    await delivery.claim_presence(r, session, 2, "two")
    working = await send(r, session, 1, "in progress")
    done = await send(r, session, 2, "finished")
    for _ in range(2):
        await send(r, session, 3, "waiting")
    await take(r, session, 1)
    await take(r, session, 2)
    await delivery.report_task(r, session, 2, done.task_id, "ok", max_bytes=LIMIT)
    await r.rpush(session.keys.tasks(2), "junk")
    assert await delivery.take_task(r, session, 2, 0.05) is None

    status = await delivery.session_status(r, session)
    assert (status.session_id, status.mode) == (session.session_id, session.mode)
    by_id = {c.child_id: c for c in status.children}
    assert (by_id[1].state, by_id[1].online, by_id[1].in_flight_task, by_id[1].queue_depth) == (
        "working",
        True,
        working.task_id,
        0,
    )
    assert (by_id[2].state, by_id[2].in_flight_task, by_id[2].last_seen is not None) == ("idle", None, True)
    assert (by_id[3].state, by_id[3].online, by_id[3].queue_depth, by_id[3].last_seen) == ("offline", False, 2, None)
    assert status.tasks == {"queued": 2, "working": 1, "done": 1, "failed": 0, "cancelled": 0}
    assert (status.dead_letters, status.report_queue_depth) == (1, 1)


async def test_status_stream_has_an_entry_per_state_change(r: Redis, session: SessionConfig) -> None:
    ok, bad, gone = await send(r, session, 1, "ok"), await send(r, session, 1, "bad"), await send(r, session, 2, "x")
    await take(r, session, 1)
    await delivery.report_task(r, session, 1, ok.task_id, "fine", max_bytes=LIMIT)
    await take(r, session, 1)
    await delivery.report_task(r, session, 1, bad.task_id, "", "failed", "no luck", max_bytes=LIMIT)
    await delivery.cancel_task(r, session, gone.task_id)
    await r.rpush(session.keys.tasks(3), "junk")
    await delivery.send_shutdown(r, session, 3)
    assert isinstance(await delivery.take_task(r, session, 3, 1), ShutdownMessage)
    assert await states(r, session) == [
        ("queued", "1", ok.task_id),
        ("queued", "1", bad.task_id),
        ("queued", "2", gone.task_id),
        ("working", "1", ok.task_id),
        ("done", "1", ok.task_id),
        ("working", "1", bad.task_id),
        ("failed", "1", bad.task_id),
        ("cancelled", "2", gone.task_id),
        ("shutdown_sent", "3", ""),
        ("dead_letter", "", ""),
        ("shutdown", "3", ""),
    ]
    newest = await delivery.recent_events(r, session, count=2)
    assert [e["state"] for e in newest] == ["shutdown", "dead_letter"] and all("id" in e for e in newest)


async def test_scripts_survive_a_script_flush(r: Redis, session: SessionConfig) -> None:
    """The Lua scripts run by EVALSHA; after a server restart or SCRIPT FLUSH they are loaded again on the fly."""
    parent, child = AsyncParent(r, session), AsyncChild(r, session, 1)
    for i in range(2):
        await r.script_flush()
        task = await parent.send_task(1, f"after flush {i}")
        await r.script_flush()
        assert await child.take(2) == task  # the claim pipelined behind the BLMOVE falls back too
        await r.script_flush()
        assert (await child.report(task.task_id, "ok")).accepted
        report = await parent.wait_for_report(2)
        assert report is not None and report.task_id == task.task_id
        assert (await delivery.get_task(r, session, task.task_id)).delivery_count == 1


async def evalsha_calls(r: Redis) -> int:
    stats = await r.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


async def test_a_wait_shorter_than_a_blocking_command_looks_once(r: Redis, session: SessionConfig) -> None:
    """take_task / take_report with a few ms left look once, never poll Redis in a loop until the deadline."""
    await r.config_resetstat()
    assert await delivery.take_task(r, session, 1, 0.04) is None
    assert await delivery.take_report(r, session, 0.04) is None
    # one look each, plus the reaper lock and the presence touches: a handful, not hundreds
    assert await evalsha_calls(r) <= 8
