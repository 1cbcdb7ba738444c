#!/usr/bin/env python3
"""Benchmark: what a session refresh, `session_status` and a snapshot cost as the session's history grows.

    python bench/bench_history.py [--sizes 10,100,1000,100000] [--children 5] [--runs 200] [--mode summoner|normal]

The history is built through the real transitions, by concurrent coroutines on asyncio clients:
several senders call `delivery.send_task` and one parent takes every report with
`delivery.take_report` (acknowledging the previous one); one worker per child calls `delivery.take`
and `delivery.report_task`, in a process of their own (--layout loop: in the same event loop). The
session grows size by size; at each size (every task finished and its report acknowledged) it
measures:

(a) one session refresh, `sessions.touch_session(force=True)`: median time over --runs calls, and the
    Redis commands one call sends (INFO commandstats deltas on the private server);
(b) `delivery.session_status`: the same two figures;
(c) `snapshot.take_snapshot` (what `orch-mcp status` and `watch` read): the same two figures;
(d) Redis memory per finished task (used_memory delta since the session was empty, and the bytes of
    the session's own keys by MEMORY USAGE) and the number of keys the session owns;
and at the end (e) the keys left after `sessions.cleanup_session` (must be 0).

A second session, built to the first size, stays there: its figures are measured alongside the
growing session's (calls alternate), so the ratio compares both at the same moment of a noisy
machine (target: at most 1.5). Always starts its own redis-server (EmbeddedRedis), since command
counts and memory are server-wide figures.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from orch_mcp import delivery, sessions, snapshot
from orch_mcp.config import RedisConfig
from orch_mcp.embedded import EmbeddedRedis, redis_version
from orch_mcp.messages import TaskMessage
from orch_mcp.redis_client import Redis, create_async_client
from orch_mcp.sessions import Mode, SessionConfig

TARGET_RATIO = 1.5
MAX_BYTES = 1 << 20
WAIT_S = 30.0  # a take or take_report that gets nothing in this long means the build is stuck
WINDOW_PER_CHILD = 20  # tasks sent but not yet reported, per child: the queues stay short, as in use

Op = Callable[[Redis, SessionConfig], Awaitable[object]]


async def _touch(r: Redis, cfg: SessionConfig) -> object:
    return await sessions.touch_session(r, cfg, force=True)


FIGURES: list[tuple[str, Op]] = [
    ("touch_session", _touch),
    ("session_status", delivery.session_status),
    ("take_snapshot", snapshot.take_snapshot),
]


@dataclass
class History:
    """A session and how many tasks it has finished (each one's report taken and acknowledged)."""

    cfg: SessionConfig
    tasks: int = 0
    ack: bytes | None = None
    build_s: float = 0.0
    seen: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Options:
    """How the history is built and measured (the command-line flags)."""

    sizes: list[int]
    children: int
    runs: int
    senders: int
    payload: int
    mode: Mode
    layout: str


async def run_all(coros: list[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines concurrently; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def work(r: Redis, cfg: SessionConfig, quota: list[int]) -> None:
    """The children: child n takes and reports `quota[n - 1]` tasks (`delivery.take`, `delivery.report_task`)."""

    async def worker(n: int) -> None:
        for _ in range(quota[n - 1]):
            taken = await delivery.take(r, cfg, n, WAIT_S)
            msg = taken.message
            if not isinstance(msg, TaskMessage):
                raise RuntimeError(f"child {n} took {msg!r} instead of a task")
            outcome = await delivery.report_task(r, cfg, n, msg.task_id, f"result of {msg.prompt}", max_bytes=MAX_BYTES)
            if not outcome.accepted:
                raise RuntimeError(f"child {n}'s report of {msg.task_id} was not accepted: {outcome}")

    await run_all([worker(n) for n in cfg.child_ids])


def children_process(url: str, session_json: str, quota: list[int]) -> None:
    """Body of the children's process (--layout processes): one worker coroutine per child."""

    async def body() -> None:
        r = create_async_client(RedisConfig(url=url))
        try:
            await work(r, SessionConfig.model_validate_json(session_json), quota)
        finally:
            await r.aclose()

    asyncio.run(body())


async def run_children(url: str, r: Redis, cfg: SessionConfig, quota: list[int], layout: str) -> None:
    """The children's side of one build step: in their own process (as agents run), or in this event loop."""
    if layout == "loop":
        await work(r, cfg, quota)
        return
    proc = multiprocessing.get_context("spawn").Process(
        target=children_process, args=(url, cfg.model_dump_json(), quota), daemon=True
    )
    proc.start()
    try:
        await asyncio.to_thread(proc.join)
    finally:
        if proc.exitcode is None:  # the parent's side failed first
            proc.terminate()
            proc.join(5)
    if proc.exitcode != 0:
        raise RuntimeError(f"the children's process exited with {proc.exitcode}")


async def grow(url: str, r: Redis, h: History, target: int, opts: Options, progress: bool) -> None:
    """Send, take, report and take the reports of tasks until `h` has finished `target` of them."""
    cfg = h.cfg
    children = cfg.max_children
    start, count = h.tasks, target - h.tasks
    quota = [0] * children
    for i in range(start, target):
        quota[i % children] += 1
    numbers = iter(range(start, target))  # shared by the senders: each number is sent once
    window = asyncio.Semaphore(WINDOW_PER_CHILD * children)
    filler = "x" * opts.payload

    async def sender() -> None:
        for i in numbers:
            await window.acquire()
            await delivery.send_task(r, cfg, i % children + 1, f"task {i}: {filler}", max_bytes=MAX_BYTES)

    async def taker() -> None:
        step = max(1, count // 10)
        began = time.perf_counter()
        for k in range(1, count + 1):
            got = await delivery.take_report(r, cfg, WAIT_S, ack=h.ack)
            if got is None:
                raise RuntimeError(f"no report within {WAIT_S:.0f} s after {h.tasks} tasks")
            report, h.ack = got
            if report.task_id in h.seen:
                raise RuntimeError(f"report of {report.task_id} taken twice")
            h.seen.add(report.task_id)
            h.tasks += 1
            window.release()
            if progress and k % step == 0:
                rate = k / (time.perf_counter() - began)
                print(f"  built {h.tasks:,}/{target:,} tasks ({rate:,.0f}/s)", file=sys.stderr, flush=True)
        # Acknowledge the last report: the next call finds nothing else.
        if await delivery.take_report(r, cfg, 0.05, ack=h.ack) is not None:
            raise RuntimeError("a report came after the last task")
        h.ack = None

    began = time.perf_counter()
    senders = [sender() for _ in range(opts.senders)]
    await run_all([*senders, taker(), run_children(url, r, cfg, quota, opts.layout)])
    h.build_s += time.perf_counter() - began
    status = await delivery.session_status(r, cfg)
    if status.tasks["done"] != target or any(v for s, v in status.tasks.items() if s != "done"):
        raise RuntimeError(f"after {target} tasks the counts are {status.tasks}")


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


async def commands_per_call(op: Op, m: Redis, cfg: SessionConfig, repeat: int = 5) -> tuple[float, dict[str, float]]:
    """Redis commands one call of `op` sends (INFO commandstats deltas, INFO itself left out), with the breakdown."""
    await op(m, cfg)  # the connection is open and the scripts loaded before counting
    before = await m.info("commandstats")
    for _ in range(repeat):
        await op(m, cfg)
    after = await m.info("commandstats")
    delta: dict[str, float] = {}
    for key, stats in after.items():
        name = key.removeprefix("cmdstat_")
        calls = stats["calls"] - before.get(key, {}).get("calls", 0)
        if name != "info" and calls:
            delta[name] = calls / repeat
    return sum(delta.values()), delta


async def session_keys(m: Redis, cfg: SessionConfig) -> list[str]:
    """The keys that exist under the session's prefix."""
    return [key async for key in m.scan_iter(match=f"{cfg.prefix}:*", count=1000)]


async def session_bytes(m: Redis, keys: list[str]) -> int:
    """What the keys take in Redis (MEMORY USAGE, every element counted)."""
    async with m.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes = await pipe.execute()
    return sum(s or 0 for s in sizes)


async def used_memory(m: Redis) -> int:
    """INFO used_memory once it has settled: right after a burst of traffic it reads tens of kB high for a moment."""
    reading = int((await m.info("memory"))["used_memory"])
    for _ in range(10):
        await asyncio.sleep(0.3)
        previous, reading = reading, int((await m.info("memory"))["used_memory"])
        if reading == previous:
            break
    return reading


@dataclass
class Row:
    figure: str
    tasks: int
    seconds: float
    base_seconds: float
    commands: float
    breakdown: dict[str, float]


@dataclass
class MemoryRow:
    tasks: int
    used: int  # used_memory now minus when the session was empty
    own: int  # MEMORY USAGE of every key of the session
    records: int  # MEMORY USAGE of the records hashes and task_child
    keys: int
    record_fields: int
    stream: int
    build_s: float


@dataclass
class Result:
    rows: list[Row] = field(default_factory=list)
    memory: list[MemoryRow] = field(default_factory=list)
    cleanup: list[tuple[str, int, int, float]] = field(default_factory=list)  # session, keys before, left, seconds
    namespace_left: list[str] = field(default_factory=list)
    max_keys: int = 0


async def memory_row(m: Redis, h: History, empty: int) -> MemoryRow:
    """Memory, keys and sizes of `h`'s session now."""
    cfg = h.cfg
    keys = await session_keys(m, cfg)
    record_keys = [cfg.keys.records(n) for n in cfg.child_ids] + [cfg.keys.task_child]
    async with m.pipeline(transaction=False) as pipe:
        for n in cfg.child_ids:
            pipe.hlen(cfg.keys.records(n))
        pipe.xlen(cfg.keys.status)
        *record_fields, stream = await pipe.execute()
    return MemoryRow(
        tasks=h.tasks,
        used=await used_memory(m) - empty,
        own=await session_bytes(m, keys),
        records=await session_bytes(m, record_keys),
        keys=len(keys),
        record_fields=sum(record_fields),
        stream=stream,
        build_s=h.build_s,
    )


async def bench(url: str, opts: Options) -> Result:
    config = RedisConfig(url=url)
    namespace = f"bench-{uuid.uuid4().hex[:12]}"
    r, m = create_async_client(config), create_async_client(config)  # r builds the history, m measures
    result = Result()
    base: History | None = None
    grown: History | None = None

    async def new_session() -> History:
        return History(await sessions.init_session(r, namespace=namespace, mode=opts.mode, max_children=opts.children))

    try:
        base = await new_session()
        await grow(url, r, base, opts.sizes[0], opts, progress=False)
        grown = await new_session()
        result.max_keys = len(sessions.session_keys(grown.cfg))
        empty = await used_memory(m)
        for size in opts.sizes:
            print(f"building history to {size:,} tasks ...", file=sys.stderr, flush=True)
            await grow(url, r, grown, size, opts, progress=size - grown.tasks >= 10_000)
            result.memory.append(await memory_row(m, grown, empty))
            for name, op in FIGURES:
                seconds, base_seconds = await timed_pair(op, m, grown.cfg, base.cfg, opts.runs)
                commands, breakdown = await commands_per_call(op, m, grown.cfg)
                result.rows.append(Row(name, size, seconds, base_seconds, commands, breakdown))
    finally:
        for h in (grown, base):
            if h is None:
                continue
            before = len(await session_keys(m, h.cfg))
            began = time.perf_counter()
            await sessions.cleanup_session(r, h.cfg)
            elapsed = time.perf_counter() - began
            result.cleanup.append((f"{h.tasks:,} tasks", before, len(await session_keys(m, h.cfg)), elapsed))
        left = [key async for key in m.scan_iter(match=f"{namespace}:*")]
        result.namespace_left = sorted(left)
        if left:
            await m.delete(*left)
        for client in (r, m):
            await client.aclose()
    return result


def report(result: Result, sizes: list[int]) -> None:
    first = sizes[0]
    print()
    print(
        f"{'figure':16}{'tasks':>9}{'median µs':>11}{f'{first}-task µs':>13}{'ratio':>7}{'vs start':>9}"
        f"{'commands':>10}  commands sent by one call"
    )
    at_start = {row.figure: row for row in result.rows if row.tasks == first}
    worst: dict[str, float] = {}
    for name, _ in FIGURES:
        for row in (row for row in result.rows if row.figure == name):
            ratio = row.seconds / row.base_seconds
            worst[name] = max(worst.get(name, 0.0), ratio)
            mix = ", ".join(f"{k} {v:g}" for k, v in sorted(row.breakdown.items(), key=lambda kv: -kv[1]))
            print(
                f"{row.figure:16}{row.tasks:>9,}{row.seconds * 1e6:11.0f}{row.base_seconds * 1e6:13.0f}"
                f"{ratio:7.2f}{row.seconds / at_start[name].seconds:9.2f}{row.commands:10g}  {mix}"
            )
    print(
        f"ratio: median / the median of a second session that stays at {first} tasks, measured alongside (calls "
        f"alternate);\nvs start: / this session's own median at {first} tasks, measured minutes earlier "
        "(shows how much the machine's speed drifted)"
    )
    for name, value in worst.items():
        verdict = "within" if value <= TARGET_RATIO else "OVER"
        print(f"  {name}: worst ratio {value:.2f} ({verdict} the target {TARGET_RATIO:.1f})")
    print()
    print(
        f"{'tasks':>9}{'used_memory Δ/task':>20}{'marginal/task':>15}{'own keys B/task':>17}{'records B/task':>16}"
        f"{'keys':>6}{'records':>9}{'stream':>8}{'built in s':>12}"
    )
    prev_tasks, prev_used = 0, 0
    for mem in result.memory:
        marginal = (mem.used - prev_used) / (mem.tasks - prev_tasks)
        prev_tasks, prev_used = mem.tasks, mem.used
        print(
            f"{mem.tasks:>9,}{mem.used / mem.tasks:20.0f}{marginal:15.0f}{mem.own / mem.tasks:17.0f}"
            f"{mem.records / mem.tasks:16.0f}{mem.keys:6}{mem.record_fields:9,}{mem.stream:8,}{mem.build_s:12.1f}"
        )
    print(
        "used_memory Δ: INFO used_memory now minus when the session was empty; marginal: the same since the previous "
        "size;\nown keys: MEMORY USAGE of the session's keys; records: of its records hashes and task_child;\n"
        f"keys: under the session's prefix (at most {result.max_keys}, fixed by the child count); "
        "stream: status stream entries (capped near 10,000)"
    )
    print()
    for who, before, left, seconds in result.cleanup:
        verdict = "ok" if left == 0 else "KEYS LEFT"
        print(f"cleanup_session ({who}): {before} keys -> {left} left in {seconds * 1e3:.1f} ms ({verdict})")
    if result.namespace_left:
        left = ", ".join(result.namespace_left)
        print(f"namespace keys left after both cleanups: {left} (the normal-mode prefix counter is kept by design)")
    else:
        print("namespace keys left after both cleanups: none")


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not sizes or any(s < 1 for s in sizes) or sizes != sorted(set(sizes)):
        raise argparse.ArgumentTypeError("sizes must be positive and increasing, e.g. 10,100,1000")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("10,100,1000,100000"),
        help="tasks in history at each measurement, increasing; the first is the baseline (default 10,100,1000,100000)",
    )
    parser.add_argument("--children", type=int, default=5, help="children of each session (default 5)")
    parser.add_argument("--runs", type=int, default=200, help="timed calls of each figure per session and size")
    parser.add_argument("--senders", type=int, default=4, help="concurrent send_task coroutines (default 4)")
    parser.add_argument("--payload", type=int, default=64, help="bytes of filler in each prompt (default 64)")
    parser.add_argument("--mode", choices=["summoner", "normal"], default="summoner", help="session mode")
    parser.add_argument(
        "--layout",
        choices=["processes", "loop"],
        default="processes",
        help="where the children's workers run while history is built: their own process (default) or this event loop",
    )
    args = parser.parse_args(argv)
    opts = Options(args.sizes, args.children, args.runs, args.senders, args.payload, args.mode, args.layout)

    server = EmbeddedRedis().start()
    began = time.perf_counter()
    try:
        result = asyncio.run(bench(server.url, opts))
    finally:
        server.stop()
    print(
        f"embedded redis-server {redis_version(server.binary)}; python {sys.version.split()[0]}; {opts.mode} mode; "
        f"{opts.children} children; {opts.runs} timed calls per figure, session and size; "
        f"prompts {opts.payload} B of filler; total {time.perf_counter() - began:.0f} s"
    )
    report(result, opts.sizes)
    return 1 if any(left for _, _, left, _ in result.cleanup) else 0


if __name__ == "__main__":
    sys.exit(main())
