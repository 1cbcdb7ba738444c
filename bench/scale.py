"""Wake-up at scale: 500 children waiting in one session, and 100 sessions of 5 children, against one child.

The children are library clients (`AsyncChild`, each blocked in `take`), run as asyncio tasks in a few
processes, not 500 processes; each reports back the CLOCK_MONOTONIC time its take returned. The parents
(`AsyncParent`, one per session) run here. Each iteration sends one task to a random child of each layout
in turn (the one-child session, the 500-child session, one of the 100 sessions) and takes its report:
wake-up = send_task's start to the child's take returning. Target: the p99 of each layout at most twice
the one-child p99, measured in the same run.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import random
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from orch_mcp.agents import AsyncChild, AsyncParent
from orch_mcp.config import RedisConfig
from orch_mcp.messages import ShutdownMessage
from orch_mcp.redis_client import Redis, create_async_client
from orch_mcp.sessions import SessionConfig, cleanup_session, init_session

from .harness import Context, Figure, ms, p50, p99

TARGET = 2.0
WAIT_S = 30.0
#: Children sharing one client: each blocked take holds a connection, and redis-py's pool allows 100.
CHILDREN_PER_CLIENT = 50


async def stamping_child(child: AsyncChild) -> None:
    """Take a task, report the moment the take returned, until told to shut down."""
    while True:
        msg = await child.take(None)
        woke = time.monotonic()
        if isinstance(msg, ShutdownMessage):
            return
        if msg is None:
            raise RuntimeError(f"child {child.child_id}: a take without timeout returned nothing")
        await child.report(msg.task_id, repr(woke))


def children_process(url: str, assignments: list[tuple[str, list[int]]]) -> None:
    """Body of one children's process: for each (session JSON, child ids), those children as coroutines."""

    async def body() -> None:
        clients: list[Redis] = []
        loops: list[Coroutine[Any, Any, None]] = []
        for session_json, ids in assignments:
            session = SessionConfig.model_validate_json(session_json)
            for n in ids:
                if len(loops) % CHILDREN_PER_CLIENT == 0:  # a client's pool holds 100 connections at most
                    clients.append(create_async_client(RedisConfig(url=url)))
                loops.append(stamping_child(AsyncChild(clients[-1], session, n)))
        try:
            await asyncio.gather(*loops)
        finally:
            for r in clients:
                await r.aclose()

    asyncio.run(body())


@dataclass
class Layout:
    """Sessions whose children wait, and their parents."""

    name: str
    parents: list[AsyncParent] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)

    async def wake_once(self, rng: random.Random) -> float:
        """Send one task to a random child of a random session; seconds until that child's take returned."""
        parent = rng.choice(self.parents)
        child_id = rng.randint(1, parent.session.max_children)
        start = time.monotonic()
        task = await parent.send_task(child_id, "wake up")
        report = await parent.wait_for_report(WAIT_S)
        if report is None or report.task_id != task.task_id:
            raise RuntimeError(f"{self.name}: no report for {task.task_id} within {WAIT_S:.0f} s")
        return float(report.result) - start


def spread(layouts: list[tuple[SessionConfig, list[int]]], processes: int) -> list[list[tuple[str, list[int]]]]:
    """Deal every (session, child) out to `processes` processes, round robin."""
    work: list[list[tuple[str, list[int]]]] = [[] for _ in range(processes)]
    k = 0
    for session, ids in layouts:
        per: list[list[int]] = [[] for _ in range(processes)]
        for n in ids:
            per[k % processes].append(n)
            k += 1
        for p, chosen in enumerate(per):
            if chosen:
                work[p].append((session.model_dump_json(), chosen))
    return work


async def measure(url: str, ctx: Context) -> list[Figure]:
    config = RedisConfig(url=url)
    admin = create_async_client(config)
    clients: list[Redis] = []
    made = itertools.count()

    def parent_of(cfg: SessionConfig) -> AsyncParent:
        """A parent, a new client every CHILDREN_PER_CLIENT parents (each wait holds a connection)."""
        if next(made) % CHILDREN_PER_CLIENT == 0:
            clients.append(create_async_client(config))
        return AsyncParent(clients[-1], cfg)

    big_children, sessions, per_session = ctx.n(500, 200), ctx.n(100, 40), 5
    one = await init_session(admin, namespace="bench-one", max_children=1)
    big = await init_session(admin, namespace="bench-big", max_children=big_children)
    many = [await init_session(admin, namespace="bench-many", max_children=per_session) for _ in range(sessions)]
    layouts: list[Layout] = []
    for name, configs in [
        ("1 child", [one]),
        (f"{big_children} children in one session", [big]),
        (f"{sessions} sessions x {per_session} children", many),
    ]:
        layouts.append(Layout(name))
        layouts[-1].parents = [parent_of(cfg) for cfg in configs]
    ctx_spawn = multiprocessing.get_context("spawn")
    procs = [ctx_spawn.Process(target=children_process, args=(url, [(one.model_dump_json(), [1])]), daemon=True)]
    crowd = [(big, list(big.child_ids))] + [(s, list(s.child_ids)) for s in many]
    procs += [
        ctx_spawn.Process(target=children_process, args=(url, work), daemon=True) for work in spread(crowd, ctx.n(4, 2))
    ]
    for p in procs:
        p.start()
    try:
        await warm_up(layouts)
        rng = random.Random(13)
        for i in range(ctx.n(1000, 60)):  # p99 of 1,000 samples: the 10th highest, steadier than the 3rd of 300
            order = layouts if i % 2 == 0 else layouts[::-1]
            for layout in order:
                layout.samples.append(await layout.wake_once(rng))
    finally:
        await stop(admin, layouts, [one, big, *many], procs)
        for r in [*clients, admin]:
            await r.aclose()
    base = layouts[0].samples
    figures = [
        Figure(
            "wake-up, library, 1 child: p99 (baseline column: its p50)",
            ms(p99(base)),
            ms(p50(base)),
            "ms",
            "report",
            None,
            "the 1-child p99 is the baseline of the two rows below",
        )
    ]
    for layout in layouts[1:]:
        figures.append(
            Figure(
                f"wake-up p99, {layout.name}",
                ms(p99(layout.samples)),
                ms(p99(base)),
                "ms",
                "le",
                TARGET,
                f"vs the 1-child p99; p50 {ms(p50(layout.samples)):.2f} ms vs {ms(p50(base)):.2f} ms",
            )
        )
    return figures


async def warm_up(layouts: list[Layout]) -> None:
    """One task to every child, all reports taken: every child is up, connected and back in its take."""

    async def session_round(parent: AsyncParent) -> None:
        for n in parent.session.child_ids:
            await parent.send_task(n, "warm up")
        for _ in parent.session.child_ids:
            if await parent.wait_for_report(60) is None:
                raise RuntimeError(f"a child of {parent.session.session_id} did not start within 60 s")

    await asyncio.gather(*(session_round(p) for layout in layouts for p in layout.parents))


async def stop(
    admin: Redis, layouts: list[Layout], sessions: list[SessionConfig], procs: Sequence[BaseProcess]
) -> None:
    """Shut every child down, wait for the processes (ending those that do not stop), remove the sessions."""
    try:
        for layout in layouts:
            for parent in layout.parents:
                await parent.shutdown()
        for p in procs:
            await asyncio.to_thread(p.join, 30)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
    for s in sessions:
        await cleanup_session(admin, s)


def run(ctx: Context) -> list[Figure]:
    """The scale family's figures."""
    with ctx.redis() as url:
        return asyncio.run(measure(url, ctx))
