"""What a session's history costs: `session_status`, one session refresh and a snapshot at 10, 1,000 and
100,000 finished tasks; Redis memory per queued task and per finished record; keys left after cleanup.

The history is built through the real transition scripts (SEND, TRY_TAKE, REPORT, each task's in turn),
sent in pipelines of a few hundred tasks so 100,000 tasks take seconds, not minutes; the reports the
parent would take and acknowledge are then dropped (the state a moogle leaves once it collected them).
A second session stays at 10 tasks: its figures are timed alongside the growing session's (calls
alternate), so the ratio compares both at the same moment of a noisy machine. Commands per call come
from INFO commandstats on the private server: they show each call is a fixed number of round trips.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from orch_mcp import delivery, sessions, snapshot
from orch_mcp.config import RedisConfig
from orch_mcp.delivery import scripts
from orch_mcp.delivery.lua import Transition, context
from orch_mcp.delivery.records import new_record
from orch_mcp.messages import ReportMessage, TaskMessage
from orch_mcp.redis_client import Redis, create_async_client
from orch_mcp.sessions import SessionConfig

from .harness import Context, Figure

TARGET = 1.5
CHILDREN = 5
BATCH = 500
FILLER = "x" * 64

Op = Callable[[Redis, SessionConfig], Awaitable[object]]


async def _refresh(r: Redis, cfg: SessionConfig) -> object:
    return await sessions.touch_session(r, cfg, force=True)


FIGURES: list[tuple[str, Op]] = [
    ("session_status", delivery.session_status),
    ("session refresh", _refresh),
    ("snapshot (status/watch)", snapshot.take_snapshot),
]


class Builder:
    """Runs the transition scripts for many tasks in pipelines (the scripts loaded once, called by SHA)."""

    def __init__(self, r: Redis) -> None:
        self.r = r
        self.sha: dict[str, str] = {}

    async def load(self) -> None:
        for t in (scripts.SEND, scripts.TRY_TAKE, scripts.REPORT):
            self.sha[t.name] = await self.r.script_load(t.text)

    def call(self, pipe: Any, t: Transition, cfg: SessionConfig, keys: list[str], args: list[Any]) -> None:
        pipe.evalsha(self.sha[t.name], len(keys) + 1, cfg.keys.config, *keys, context(cfg), *args)

    def send(self, pipe: Any, cfg: SessionConfig, n: int, task: TaskMessage) -> None:
        """delivery.send_task's script."""
        k, raw = cfg.keys, task.to_json()
        keys = [k.records(n), k.task_child, k.counts, k.tasks(n), k.inflight(n), k.stopped, k.status]
        self.call(pipe, scripts.SEND, cfg, keys, [n, task.task_id, raw, 0, new_record(task, raw)])

    def take(self, pipe: Any, cfg: SessionConfig, n: int) -> None:
        """delivery.take's fast path (TRY_TAKE), unfenced."""
        k = cfg.keys
        keys = [
            k.tasks(n),
            k.inflight(n),
            k.records(n),
            k.task_child,
            k.counts,
            k.last_seen,
            k.status,
            k.presence(n),
            k.leases,
            cfg.report_queue(n),
            k.doorbell,
            k.dead,
        ]
        self.call(pipe, scripts.TRY_TAKE, cfg, keys, [n, ""])

    def report(self, pipe: Any, cfg: SessionConfig, n: int, task: TaskMessage) -> None:
        """delivery.report_task's script."""
        k = cfg.keys
        msg = ReportMessage.create(task.task_id, cfg.session_id, n, result=f"result of {task.prompt}")
        keys = [
            k.records(n),
            k.task_child,
            k.inflight(n),
            k.counts,
            cfg.report_queue(n),
            k.doorbell,
            k.last_seen,
            k.status,
            k.presence(n),
            k.leases,
        ]
        args = [n, task.task_id, "done", msg.result, "", msg.to_json(), "1" if cfg.mode == "normal" else "0", "", ""]
        self.call(pipe, scripts.REPORT, cfg, keys, args)

    async def finish(self, cfg: SessionConfig, count: int) -> None:
        """Send, take and report `count` tasks round robin over the session's children; drop the reports."""
        for start in range(0, count, BATCH):
            tasks = [
                TaskMessage.create(f"task {i}: {FILLER}", cfg.session_id, i % cfg.max_children + 1)
                for i in range(start, min(count, start + BATCH))
            ]
            async with self.r.pipeline(transaction=False) as pipe:
                for t in tasks:
                    self.send(pipe, cfg, t.child_id, t)
                for t in tasks:
                    self.take(pipe, cfg, t.child_id)
                    self.report(pipe, cfg, t.child_id, t)
                replies = await pipe.execute()
            bad = [r for r in replies if r[0] != "ok"]
            if bad:
                raise RuntimeError(f"the history build got {bad[:3]}")
            await self.r.delete(cfg.keys.reports)  # what the moogle's waits would have taken and acknowledged

    async def queue(self, cfg: SessionConfig, count: int) -> None:
        """Send `count` tasks (queued, not taken)."""
        for start in range(0, count, BATCH):
            async with self.r.pipeline(transaction=False) as pipe:
                for i in range(start, min(count, start + BATCH)):
                    n = i % cfg.max_children + 1
                    self.send(pipe, cfg, n, TaskMessage.create(f"task {i}: {FILLER}", cfg.session_id, n))
                await pipe.execute()


async def timed_pair(op: Op, m: Redis, grown: SessionConfig, base: SessionConfig, runs: int) -> tuple[float, float]:
    """Median seconds of `op` on the grown session and on the baseline session, calls alternating."""
    samples: dict[str, list[float]] = {grown.prefix: [], base.prefix: []}
    warmup = max(5, runs // 10)
    for i in range(warmup + runs):
        for cfg in (grown, base) if i % 2 == 0 else (base, grown):
            began = time.perf_counter()
            await op(m, cfg)
            elapsed = time.perf_counter() - began
            if i >= warmup:
                samples[cfg.prefix].append(elapsed)
    return statistics.median(samples[grown.prefix]), statistics.median(samples[base.prefix])


async def commands_per_call(op: Op, m: Redis, cfg: SessionConfig, repeat: int = 5) -> float:
    """Redis commands one call of `op` sends (INFO commandstats deltas, INFO itself left out)."""
    await op(m, cfg)
    before = await m.info("commandstats")
    for _ in range(repeat):
        await op(m, cfg)
    after = await m.info("commandstats")
    calls = sum(s["calls"] - before.get(k, {}).get("calls", 0) for k, s in after.items() if k != "cmdstat_info")
    return float(calls) / repeat


async def session_keys(m: Redis, cfg: SessionConfig) -> list[str]:
    """The keys that exist under the session's prefix."""
    return [key async for key in m.scan_iter(match=f"{cfg.prefix}:*", count=1000)]


async def key_bytes(m: Redis, keys: list[str]) -> int:
    """What the keys take in Redis (MEMORY USAGE, every element counted)."""
    async with m.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes = await pipe.execute()
    return sum(s or 0 for s in sizes)


async def used_memory(m: Redis) -> int:
    """INFO used_memory once it has settled (right after a burst it reads a little high for a moment)."""
    reading = int((await m.info("memory"))["used_memory"])
    for _ in range(10):
        await asyncio.sleep(0.2)
        previous, reading = reading, int((await m.info("memory"))["used_memory"])
        if reading == previous:
            break
    return reading


async def measure(url: str, ctx: Context) -> list[Figure]:
    r = create_async_client(RedisConfig(url=url))
    m = create_async_client(RedisConfig(url=url))  # m measures, r builds
    build = Builder(r)
    await build.load()
    sizes = [1_000, ctx.n(100_000, 5_000)]
    runs = ctx.n(200, 30)
    made: list[SessionConfig] = []
    figures: list[Figure] = []

    async def new_session(children: int = CHILDREN) -> SessionConfig:
        cfg = await sessions.init_session(r, namespace="bench", max_children=children)
        made.append(cfg)
        return cfg

    try:
        base = await new_session()
        await build.finish(base, 10)
        grown = await new_session()
        await build.finish(grown, 10)
        empty = await used_memory(m)
        done = 10
        for size in sizes:
            began = time.perf_counter()
            await build.finish(grown, size - done)
            built_s, done = time.perf_counter() - began, size
            for name, op in FIGURES:
                ours, baseline = await timed_pair(op, m, grown, base, runs)
                commands = await commands_per_call(op, m, grown)
                figures.append(
                    Figure(
                        f"{name}, {size:,} tasks in history",
                        ours * 1e6,
                        baseline * 1e6,
                        "µs",
                        "le",
                        TARGET,
                        f"vs the 10-task session; {commands:g} Redis commands per call; built in {built_s:.1f} s",
                    )
                )
        records = [grown.keys.records(n) for n in grown.child_ids] + [grown.keys.task_child]
        per_record = await key_bytes(m, records) / done
        per_task = (await used_memory(m) - empty) / (done - 10)
        figures.append(
            Figure(
                "Redis memory per finished record",
                per_record,
                None,
                "B",
                "report",
                None,
                f"MEMORY USAGE of the records hashes and task_child / {done:,}; used_memory grew "
                f"{per_task:,.0f} B per task (64 B prompts)",
            )
        )
        queued = await new_session()
        count = ctx.n(10_000, 1_000)
        before = await used_memory(m)
        await build.queue(queued, count)
        grew = (await used_memory(m) - before) / count
        own = await key_bytes(m, await session_keys(m, queued)) / count
        figures.append(
            Figure(
                "Redis memory per queued task",
                own,
                None,
                "B",
                "report",
                None,
                f"MEMORY USAGE of the session's keys / {count:,} queued tasks; used_memory grew {grew:,.0f} B "
                "per task (message in the queue + record)",
            )
        )
        wide = await new_session(1000)
        narrow = await new_session(10)
        for name, op in FIGURES[:2]:
            ours, baseline = await timed_pair(op, m, wide, narrow, ctx.n(30, 10))  # 0.1 s a call at 1,000
            commands = await commands_per_call(op, m, wide)
            figures.append(
                Figure(
                    f"{name}, 1,000 children",
                    ours * 1e6,
                    baseline * 1e6,
                    "µs",
                    "report",
                    None,
                    f"vs 10 children; one pipeline of {commands:g} commands (one round trip)",
                )
            )
    finally:
        left = 0
        for cfg in made:
            await sessions.cleanup_session(r, cfg)
            left += len(await session_keys(m, cfg))
        await r.aclose()
        await m.aclose()
    figures.append(
        Figure(
            "keys left after cleanup_session",
            left,
            None,
            "keys",
            "zero",
            None,
            f"under the prefixes of the {len(made)} sessions of this family",
        )
    )
    return figures


def run(ctx: Context) -> list[Figure]:
    """The history family's figures."""
    with ctx.redis() as url:
        return asyncio.run(measure(url, ctx))
