"""Waits cancelled at random moments while tasks and reports keep flowing lose nothing, in both session modes.

A producer keeps sending tasks (a bounded number outstanding), several children take and report them
concurrently, and the parent collects the reports; the children's takes and the parent's waits are
cancelled at random moments (after a random fraction of a millisecond, or after a random number of
scheduler turns). At the end every task reached its child exactly once (as far as a caller can tell:
a take that was cancelled returned nothing) and was reported exactly once, and every report reached
the parent; a report comes twice only when the wait that should have acknowledged it was itself
cancelled (DESIGN: a report is removed from the in-flight list when the next wait starts).

Each test counts the cancels that landed in the window - an item had moved from its queue into the
in-flight list (`tasks:<n>:inflight`, `reports:inflight`) but never reached the cancelled caller - and
fails if none did: a run that only ever cancelled on empty queues would prove nothing.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pytest
from mcp import Client
from mcp_helpers import ok, serve_params

from orch_mcp.agents import AsyncChild, AsyncParent
from orch_mcp.messages import TaskMessage
from orch_mcp.redis_client import Redis
from orch_mcp.sessions import Mode, SessionConfig, init_session

T = TypeVar("T")

CHILDREN = 3
LIBRARY_TASKS = 200
MCP_REPORTS = 60
#: Tasks sent but not yet reported back at most: the producer keeps this many in the pipeline.
OUTSTANDING = 12
#: Over MCP a few only: the moogle's waits then often block on an empty queue until a report arrives.
MCP_OUTSTANDING = 3
#: The shortest and longest a take or wait is given before it is cancelled (when it is cancelled by time); the
#: delay is drawn log-uniformly between them, so the few hundred microseconds of one round trip are well covered.
MIN_CANCEL_DELAY_S = 0.00005
MAX_CANCEL_DELAY_S = 0.004
#: The most scheduler turns a take or wait is given before it is cancelled (when cancelled by turns).
MAX_CANCEL_TURNS = 12
#: How long a take or wait of the flow may block. Well over MIN_BLOCK_S (0.05 s), the shortest wait that blocks:
#: a wait of 0.05 s has a little less than that left by its first look, so it looked again and again without ever
#: blocking (a hundred scripts a wait), and the hand-over of a blocking BLMOVE was never cancelled.
WAIT_S = 0.1


async def cancelled_at_random(call: Callable[[], Awaitable[T]], rng: random.Random) -> tuple[bool, T | None]:
    """Run `call()`, cancelling it at a random moment most of the time; (was it cancelled, its result)."""
    style = rng.random()
    if style < 0.3:
        return False, await call()
    done: list[T] = []

    async def run() -> None:
        done.append(await call())

    if style < 0.65:
        with anyio.move_on_after(math.exp(rng.uniform(math.log(MIN_CANCEL_DELAY_S), math.log(MAX_CANCEL_DELAY_S)))):
            await run()
    else:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            for _ in range(rng.randint(1, MAX_CANCEL_TURNS)):
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
    return (False, done[0]) if done else (True, None)


async def items(r: Redis, key: str) -> set[str]:
    """The messages on a list (each message is unique: it carries its own message_id)."""
    return set(await r.lrange(key, 0, -1))


@dataclass
class Tally:
    """What happened during a run, for the assertions and the printed summary."""

    task_cancels: int = 0
    task_hits: int = 0  # cancelled takes that had moved a message into the child's in-flight list
    report_cancels: int = 0
    report_hits: int = 0  # cancelled waits that had moved a report into the parent's in-flight list
    taken: Counter[str] = field(default_factory=Counter)  # task id -> times a take returned it to its caller
    received: Counter[str] = field(default_factory=Counter)  # task id -> times a wait returned its report
    #: Reports whose acknowledgement was carried by a cancelled wait: the contract lets them come again.
    ack_cancelled: set[str] = field(default_factory=set)

    def receive(self, task_id: str, credits: Credits) -> None:
        """A wait returned the report of `task_id`: a repeat only if the wait that acknowledged it was cancelled."""
        self.received[task_id] += 1
        if self.received[task_id] == 1:
            credits.reported()
        else:
            assert task_id in self.ack_cancelled, (
                f"the report of task {task_id} came twice, though no wait carrying its acknowledgement was cancelled"
            )

    def summary(self, where: str) -> str:
        return (
            f"{where}: {self.task_hits} of {self.task_cancels} cancelled takes and {self.report_hits} of "
            f"{self.report_cancels} cancelled report waits landed in the window (an item between queue and in-flight)"
        )


class Credits:
    """The producer's pipeline: at most `outstanding` tasks sent and not yet reported to the parent."""

    def __init__(self, outstanding: int = OUTSTANDING) -> None:
        self.semaphore = anyio.Semaphore(outstanding)

    async def before_send(self) -> None:
        await self.semaphore.acquire()

    def reported(self) -> None:
        self.semaphore.release()


async def produce(parent: AsyncParent, total: int, credits: Credits, rng: random.Random, sent: list[str]) -> None:
    """Send `total` tasks to random children (their ids to `sent`), at most OUTSTANDING unreported at any time."""
    for i in range(total):
        await credits.before_send()
        # Every take counts as a delivery, a cancelled one too (decision 5): a task may be taken and cancelled
        # several times in a row here, and this test is about losing nothing, not about max_deliveries.
        task = await parent.send_task(rng.randint(1, CHILDREN), f"task {i}", {"i": i}, max_deliveries=100)
        sent.append(task.task_id)
        for _ in range(rng.randint(0, 3)):
            await anyio.lowlevel.checkpoint()


async def lost_for_good(r: Redis, cfg: SessionConfig, sent: list[str], tally: Tally) -> bool:
    """True if a task sent is neither received nor on any list: nothing can bring it back, stop waiting for it.

    Called by the parent between its waits: only the parent moves reports off `reports:inflight`, so one
    atomic look at every list of the session is exact.
    """
    if not set(sent) - set(tally.received):
        return False
    lists = [cfg.keys.reports_inflight, *{cfg.report_queue(n) for n in cfg.child_ids}]
    lists += [key for n in cfg.child_ids for key in (cfg.keys.tasks(n), cfg.keys.inflight(n))]
    async with r.pipeline(transaction=True) as pipe:
        for key in lists:
            pipe.llen(key)
        lengths = await pipe.execute()
    return not any(lengths)


async def work(
    r: Redis,
    cfg: SessionConfig,
    child_id: int,
    tally: Tally,
    stop: anyio.Event,
    rng: random.Random,
    cancel_takes: bool = True,
) -> None:
    """Child `child_id`: take (cancelled at random if `cancel_takes`), report what was taken, until `stop`."""
    child = AsyncChild(r, cfg, child_id)
    inflight = cfg.keys.inflight(child_id)
    # What the in-flight list held when the last call ended; only this child moves messages into it.
    held = await items(r, inflight)
    while not stop.is_set():
        if cancel_takes:
            cancelled, msg = await cancelled_at_random(lambda: child.take(WAIT_S), rng)
        else:
            cancelled, msg = False, await child.take(WAIT_S)
        if cancelled:
            tally.task_cancels += 1
            now = await items(r, inflight)
            if now - held:  # moved in by the cancelled take, never returned to it
                tally.task_hits += 1
            held = now
            continue
        if msg is not None:
            assert isinstance(msg, TaskMessage), msg
            assert msg.child_id == child_id
            tally.taken[msg.task_id] += 1
            assert tally.taken[msg.task_id] == 1, f"task {msg.task_id} was given to child {child_id} twice"
            outcome = await child.report(msg.task_id, f"result of {msg.prompt}")
            assert (outcome.accepted, outcome.duplicate) == (True, False), outcome
        held = await items(r, inflight)


async def collect(
    r: Redis, parent: AsyncParent, sent: list[str], total: int, tally: Tally, credits: Credits, rng: random.Random
) -> None:
    """The parent: wait for reports (cancelled at random) until `total` different tasks have been reported."""
    inflight = parent.session.keys.reports_inflight
    unacked: str | None = None  # the report the last wait returned: the next wait acknowledges it
    while len(tally.received) < total:
        before = await items(r, inflight)
        cancelled, report = await cancelled_at_random(lambda: parent.wait_for_report(WAIT_S), rng)
        if cancelled:
            tally.report_cancels += 1
            if unacked is not None:
                tally.ack_cancelled.add(unacked)
            unacked = None
            # Only the parent moves reports into its in-flight list: what is new there, the cancelled wait took.
            if await items(r, inflight) - before:
                tally.report_hits += 1
            continue
        unacked = None if report is None else report.task_id
        if report is not None:
            tally.receive(report.task_id, credits)
        elif await lost_for_good(r, parent.session, sent, tally):
            return


async def check_nothing_lost(r: Redis, parent: AsyncParent, sent: list[str], tally: Tally) -> None:
    """Every task was taken once, reported once (done), its report received; every list is empty."""
    cfg = parent.session
    # The last report is acknowledged by one more wait; anything else still in flight must be a permitted repeat.
    while (extra := await parent.wait_for_report(WAIT_S)) is not None:
        assert extra.task_id in tally.ack_cancelled, f"report of task {extra.task_id} left over in flight"
        tally.received[extra.task_id] += 1
    assert len(set(sent)) == len(sent)
    assert set(tally.taken) == set(sent), f"{len(set(sent) - set(tally.taken))} tasks never reached their child"
    assert set(tally.received) == set(sent), f"{len(set(sent) - set(tally.received))} reports never reached the parent"
    records = [await parent.get_task(task_id) for task_id in sent]
    assert Counter(str(rec.state) for rec in records) == {"done": len(sent)}
    for rec in records:
        assert rec.result == f"result of {rec.prompt}"
        assert rec.delivery_count >= 1
    lists = [cfg.keys.reports_inflight, cfg.keys.dead, *(cfg.report_queue(n) for n in cfg.child_ids)]
    for n in cfg.child_ids:
        lists += [cfg.keys.tasks(n), cfg.keys.inflight(n)]
    lengths = {key: await r.llen(key) for key in lists}
    assert not any(lengths.values()), f"messages left behind: {lengths}"


# ---------------------------------------------------------------- library level


async def run_library_flow(
    r: Redis, mode: Mode, tasks: int, *, cancel_takes: bool = True, outstanding: int = OUTSTANDING
) -> Tally:
    """Send `tasks` tasks to CHILDREN children who take and report them, while the parent collects the reports;
    the takes (if `cancel_takes`) and the waits are cancelled at random. Checks that nothing was lost.

    With few tasks `outstanding` the parent mostly waits on an empty queue for the next report to arrive; with
    many, reports mostly wait for the parent: the two ways a report is taken."""
    cfg = await init_session(r, namespace="test", mode=mode, max_children=CHILDREN, ttl_s=600)
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    parent = AsyncParent(r, cfg)
    tally = Tally()
    credits = Credits(outstanding)
    stop = anyio.Event()
    sent: list[str] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for n in cfg.child_ids:
                tg.start_soon(work, r, cfg, n, tally, stop, random.Random(rng.random()), cancel_takes)

            tg.start_soon(produce, parent, tasks, credits, random.Random(rng.random()), sent)
            await collect(r, parent, sent, tasks, tally, credits, random.Random(rng.random()))
            stop.set()
            if len(tally.received) < tasks:  # some were lost: the producer waits for them for ever
                tg.cancel_scope.cancel()
        print(tally.summary(f"library, {mode} mode, seed {seed}"))
        await check_nothing_lost(r, parent, sent, tally)
    redelivered = [t for t in sent if (await parent.get_task(t)).delivery_count > 1]
    print(f"  {len(redelivered)} tasks were claimed by a cancelled take and delivered again")
    return tally


@pytest.mark.parametrize("mode", ["summoner", "normal"])
async def test_library_cancelled_takes_and_waits_lose_nothing(r: Redis, mode: Mode) -> None:
    tally = await run_library_flow(r, mode, LIBRARY_TASKS)
    assert tally.task_hits > 0, f"no cancelled take landed in the window; {tally.summary(mode)}"
    assert tally.report_hits > 0, f"no cancelled wait_for_report landed in the window; {tally.summary(mode)}"


# ---------------------------------------------------------------- through a real `orch-mcp serve` over stdio


async def collect_over_mcp(
    r: Redis,
    moogle: Client,
    cfg: SessionConfig,
    sent: list[str],
    total: int,
    tally: Tally,
    credits: Credits,
    rng: random.Random,
) -> None:
    """The moogle's wait_for_report calls, cancelled at random, until `total` different tasks have been reported."""
    inflight = cfg.keys.reports_inflight
    unacked: str | None = None

    async def call() -> dict[str, Any]:
        return ok(await moogle.call_tool("wait_for_report", {"timeout_s": 1}))

    while len(tally.received) < total:
        before = await items(r, inflight)
        cancelled, answer = await cancelled_at_random(call, rng)
        if cancelled:
            tally.report_cancels += 1
            if unacked is not None:
                tally.ack_cancelled.add(unacked)
            unacked = None
            # The client sent notifications/cancelled before giving up; a call answered after it means the server
            # has read it and stopped the wait, so the in-flight list now shows what the cancelled call took.
            with anyio.fail_after(10):
                ok(await moogle.call_tool("session_status", {}))
            if await items(r, inflight) - before:
                tally.report_hits += 1
            continue
        assert answer is not None
        if answer["status"] == "report":
            unacked = answer["report"]["task_id"]
            tally.receive(answer["report"]["task_id"], credits)
        else:
            unacked = None
            if await lost_for_good(r, cfg, sent, tally):
                return


@pytest.mark.parametrize("mode", ["summoner", "normal"])
async def test_stdio_cancelled_wait_for_report_loses_nothing(r: Redis, env_for: dict[str, str], mode: Mode) -> None:
    cfg = await init_session(r, namespace="test", mode=mode, max_children=CHILDREN, ttl_s=600)
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    parent = AsyncParent(r, cfg)  # sends the tasks; the moogle server (the same session's parent) collects reports
    tally = Tally()
    credits = Credits(MCP_OUTSTANDING)
    stop = anyio.Event()
    sent: list[str] = []
    with anyio.fail_after(30):
        async with Client(serve_params("moogle", env_for)) as moogle:
            async with anyio.create_task_group() as tg:
                for n in cfg.child_ids:  # the children's takes are the library test's business: not cancelled here
                    tg.start_soon(work, r, cfg, n, tally, stop, random.Random(rng.random()), False)

                tg.start_soon(produce, parent, MCP_REPORTS, credits, random.Random(rng.random()), sent)
                await collect_over_mcp(r, moogle, cfg, sent, MCP_REPORTS, tally, credits, random.Random(rng.random()))
                stop.set()
                if len(tally.received) < MCP_REPORTS:  # some were lost: the producer waits for them for ever
                    tg.cancel_scope.cancel()
            # One more wait acknowledges the last report; anything else still in flight must be a permitted repeat.
            while (extra := ok(await moogle.call_tool("wait_for_report", {"timeout_s": 0})))["status"] == "report":
                assert extra["report"]["task_id"] in tally.ack_cancelled, f"left over in flight: {extra}"
                tally.received[extra["report"]["task_id"]] += 1
        summary = tally.summary(f"stdio, {mode} mode, seed {seed}")
        print(summary)
        await check_nothing_lost(r, parent, sent, tally)
    assert tally.report_hits > 0, f"no cancelled wait_for_report landed in the window; {summary}"
