"""The library against raw redis-py: one task's round trip, and throughput from one parent to 8 children.

Round trip: `AsyncParent.send_task` → the child, already blocked in `AsyncChild.take`, gets the task →
`AsyncChild.report` → the parent's `wait_for_report` returns it: the full at-least-once path (records,
in-flight lists, status stream, monitor channel, acknowledgement of the previous report). Raw: client A
RPUSHes onto a list, client B (blocked in BLPOP) pops it and RPUSHes it onto a second list, A BLPOPs
it. The child and client B each run in a process of their own, as agents do; the iterations alternate
(library, raw, raw, library, ...) so a noisy machine slows both alike.

Throughput: one parent sends N tasks round robin to 8 children (at most 20 per child outstanding) while
it collects the reports; the 8 children are coroutines in one other process. Raw: the same shape with
RPUSH/BLPOP (8 lists, one report list). Run in alternating rounds.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from orch_mcp.agents import AsyncChild, AsyncParent
from orch_mcp.config import RedisConfig
from orch_mcp.messages import ShutdownMessage
from orch_mcp.redis_client import Redis, create_async_client
from orch_mcp.sessions import SessionConfig, cleanup_session, init_session

from .harness import Context, Figure, ms, p50, p99

STOP = "stop"
ROUND_TRIP_TARGET = 2.5
THROUGHPUT_TARGET = 0.5
CHILDREN = 8
WINDOW_PER_CHILD = 20
WAIT_S = 30.0


async def child_loop(child: AsyncChild) -> None:
    """A child: take a task, report its prompt back as the result, until told to shut down."""
    while True:
        msg = await child.take(None)
        if isinstance(msg, ShutdownMessage):
            return
        if msg is None:
            raise RuntimeError(f"child {child.child_id}: a take without timeout returned nothing")
        await child.report(msg.task_id, msg.prompt)


async def pong_loop(b: Redis, ping: str, pong: str) -> None:
    """Raw client B: pop from `ping`, push it onto `pong`, until it pops STOP."""
    while True:
        popped = await b.blpop([ping], 1)  # in slices: a blocking command may not outlast the socket timeout
        if popped is None:
            continue
        if popped[1] == STOP:
            return
        await b.rpush(pong, popped[1])


def responder_process(url: str, session_json: str, pings: list[str], pong: str) -> None:
    """Body of the responders' process: one AsyncChild per child of the session and one raw client per ping list."""

    async def body() -> None:
        r = create_async_client(RedisConfig(url=url))
        session = SessionConfig.model_validate_json(session_json)
        try:
            children = [child_loop(AsyncChild(r, session, n)) for n in session.child_ids]
            await asyncio.gather(*children, *(pong_loop(r, ping, pong) for ping in pings))
        finally:
            await r.aclose()

    asyncio.run(body())


@dataclass
class Pair:
    """A session with its children and the raw lists, their responders running in another process."""

    parent: AsyncParent
    session: SessionConfig
    a: Redis
    pings: list[str]
    pong: str
    process: multiprocessing.process.BaseProcess

    async def stop(self, admin: Redis) -> None:
        """Shut the responders down, wait for their process, and remove everything written."""
        await self.parent.shutdown()
        for ping in self.pings:
            await self.a.rpush(ping, STOP)
        await asyncio.to_thread(self.process.join, 30)
        await self.parent.wait_for_report(0.01)  # acknowledge the last report
        await cleanup_session(admin, self.session)
        await admin.delete(*self.pings, self.pong)
        if self.process.exitcode != 0:
            raise RuntimeError(f"the responders' process exited with {self.process.exitcode}")


async def start_pair(url: str, admin: Redis, children: int) -> Pair:
    """A session of `children` children and as many raw ping lists, the responders started in their own process."""
    config = RedisConfig(url=url)
    tag = uuid.uuid4().hex[:12]
    session = await init_session(admin, namespace=f"bench-{tag}", max_children=children)
    pings = [f"bench:{{{tag}}}:ping:{n}" for n in range(1, children + 1)]
    pong = f"bench:{{{tag}}}:pong"
    process = multiprocessing.get_context("spawn").Process(
        target=responder_process, args=(url, session.model_dump_json(), pings, pong), daemon=True
    )
    process.start()
    return Pair(
        AsyncParent(create_async_client(config), session), session, create_async_client(config), pings, pong, process
    )


async def round_trips(pair: Pair, warmup: int, iterations: int) -> tuple[list[float], list[float]]:
    """Alternating library and raw round trips with child 1 and ping list 1: (library, raw) seconds."""

    async def library_once(i: int) -> float:
        start = time.perf_counter()
        task = await pair.parent.send_task(1, f"task {i}")
        report = await pair.parent.wait_for_report(WAIT_S)
        elapsed = time.perf_counter() - start
        if report is None or report.task_id != task.task_id:
            raise RuntimeError(f"round trip {i}: got {report!r}")
        return elapsed

    async def raw_once(i: int) -> float:
        start = time.perf_counter()
        await pair.a.rpush(pair.pings[0], f"ping {i}")
        popped = await pair.a.blpop([pair.pong], WAIT_S)
        elapsed = time.perf_counter() - start
        if popped is None or popped[1] != f"ping {i}":
            raise RuntimeError(f"ping {i}: got {popped!r}")
        return elapsed

    lib: list[float] = []
    raw: list[float] = []
    for i in range(warmup + iterations):
        first, second = (library_once, raw_once) if i % 2 == 0 else (raw_once, library_once)
        t1, t2 = await first(i), await second(i)
        if i >= warmup:
            lib.append(t1 if first is library_once else t2)
            raw.append(t2 if first is library_once else t1)
    return lib, raw


async def flow(count: int, send: Callable[[int], Awaitable[None]], collect: Callable[[], Awaitable[None]]) -> float:
    """Send `count` tasks (at most WINDOW_PER_CHILD per child outstanding) while collecting as many; seconds taken."""
    window = asyncio.Semaphore(WINDOW_PER_CHILD * CHILDREN)

    async def sender() -> None:
        for i in range(count):
            await window.acquire()
            await send(i)

    async def collector() -> None:
        for _ in range(count):
            await collect()
            window.release()

    start = time.perf_counter()
    await asyncio.gather(sender(), collector())
    return time.perf_counter() - start


async def library_flow(pair: Pair, count: int) -> float:
    """Seconds to send `count` tasks round robin to the children through the library and collect their reports."""
    parent, children = pair.parent, pair.session.max_children

    async def send(i: int) -> None:
        await parent.send_task(i % children + 1, f"task {i}")

    async def collect() -> None:
        if await parent.wait_for_report(WAIT_S) is None:
            raise RuntimeError("no report within the wait")

    return await flow(count, send, collect)


async def raw_flow(pair: Pair, count: int) -> float:
    """The same shape with plain RPUSH/BLPOP: seconds for `count` items."""
    a, pings = pair.a, pair.pings

    async def send(i: int) -> None:
        await a.rpush(pings[i % len(pings)], f"task {i}")

    async def collect() -> None:
        if await a.blpop([pair.pong], WAIT_S) is None:
            raise RuntimeError("no raw reply within the wait")

    return await flow(count, send, collect)


async def throughput(pair: Pair, count: int, rounds: int) -> tuple[float, float]:
    """Tasks per second through the library and raw, in alternating rounds of count/rounds tasks each."""
    per_round = max(1, count // rounds)
    lib_s = raw_s = 0.0
    for i in range(rounds):
        if i % 2 == 0:
            lib_s += await library_flow(pair, per_round)
            raw_s += await raw_flow(pair, per_round)
        else:
            raw_s += await raw_flow(pair, per_round)
            lib_s += await library_flow(pair, per_round)
    total = per_round * rounds
    return total / lib_s, total / raw_s


async def measure(url: str, ctx: Context) -> list[Figure]:
    admin = create_async_client(RedisConfig(url=url))
    figures: list[Figure] = []
    try:
        pair = await start_pair(url, admin, 1)
        try:
            lib, raw = await round_trips(pair, ctx.n(200, 50), ctx.n(2000, 300))
        finally:
            await pair.stop(admin)
        for name, fn in (("p50", p50), ("p99", p99)):
            figures.append(
                Figure(
                    f"library round trip {name}",
                    ms(fn(lib)),
                    ms(fn(raw)),
                    "ms",
                    "le",
                    ROUND_TRIP_TARGET,
                    "vs raw redis-py RPUSH/BLPOP ping-pong on two lists",
                )
            )
        count = ctx.n(20_000, 2_000)
        pair = await start_pair(url, admin, CHILDREN)
        try:
            await throughput(pair, CHILDREN * WINDOW_PER_CHILD * 2, 2)  # warm-up: connections, scripts
            lib_rate, raw_rate = await throughput(pair, count, 4)
        finally:
            await pair.stop(admin)
        figures.append(
            Figure(
                f"throughput, library, 1 parent -> {CHILDREN} children ({count:,} tasks)",
                lib_rate,
                raw_rate,
                "tasks/s",
                "ge",
                THROUGHPUT_TARGET,
                "vs raw redis-py with the same shape",
            )
        )
    finally:
        await admin.aclose()
    return figures


def run(ctx: Context) -> list[Figure]:
    """The library family's figures."""
    with ctx.redis() as url:
        return asyncio.run(measure(url, ctx))
