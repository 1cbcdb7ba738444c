#!/usr/bin/env python3
"""Benchmark: the library's task round trip against a raw redis-py RPUSH/BLPOP ping-pong.

    python bench/bench_core.py [--iterations N] [--warmup N] [--mode summoner|normal] [--layout processes|threads|loop]

(a) library: the parent sends a task (`send_task`), the child, already blocked in `take`, gets it,
    reports it (`report_task`), and the parent's `wait_for_report` returns it: `AsyncParent` and
    `AsyncChild` on two separate clients (connection pools).
(b) raw: client A RPUSHes onto one list, client B (blocked in BLPOP) pops it and RPUSHes it onto a
    second list, A BLPOPs it: the same shape with nothing but redis-py.

Both pairs stay up for the whole run and their iterations alternate (one library round trip, one raw
ping-pong, ...), so a noisy machine slows both alike. The responding side (child / B) runs as a task in
its own process by default (as agents run), or with --layout threads|loop in a thread with its own event
loop or in the parent's event loop. Starts its own
redis-server (EmbeddedRedis) unless REDIS_URL is set; everything it writes there is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from orch_mcp.agents import AsyncChild, AsyncParent
from orch_mcp.config import RedisConfig
from orch_mcp.embedded import EmbeddedRedis, redis_version
from orch_mcp.messages import ShutdownMessage
from orch_mcp.redis_client import Redis, create_async_client
from orch_mcp.sessions import Mode, SessionConfig, cleanup_session, init_session

TARGET_RATIO = 2.0
STOP = "stop"


async def child_loop(child: AsyncChild) -> None:
    """The child: take a task, report its prompt back as the result, until told to shut down."""
    while True:
        msg = await child.take(None)
        if isinstance(msg, ShutdownMessage):
            return
        assert msg is not None
        await child.report(msg.task_id, msg.prompt)


async def pong_loop(b: Redis, ping: str, pong: str) -> None:
    """Client B: pop from `ping`, push it back onto `pong`, until it pops STOP."""
    while True:
        popped = await b.blpop([ping], 0)
        await b.rpush(pong, popped[1])
        if popped[1] == STOP:
            return


def run_responder(factory: Callable[[], Coroutine[Any, Any, None]], threads: bool) -> Callable[[], Awaitable[None]]:
    """Start the responding side (in this loop, or in a thread with its own loop); returns a waiter for its end."""
    if not threads:
        task = asyncio.ensure_future(factory())

        async def join_task() -> None:
            await task

        return join_task
    done = threading.Event()
    errors: list[BaseException] = []

    def body() -> None:
        try:
            asyncio.run(factory())
        except BaseException as exc:  # surfaced by the waiter
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=body, daemon=True).start()

    async def join_thread() -> None:
        await asyncio.to_thread(done.wait, 30)
        if errors:
            raise errors[0]

    return join_thread


def responder_process(kind: str, url: str, session_json: str, ping: str, pong: str) -> None:
    """Body of a responder process (--processes): the child, or client B of the raw ping-pong."""
    config = RedisConfig(url=url)

    async def body() -> None:
        r = create_async_client(config)
        try:
            if kind == "child":
                await child_loop(AsyncChild(r, SessionConfig.model_validate_json(session_json), 1))
            else:
                await pong_loop(r, ping, pong)
        finally:
            await r.aclose()

    asyncio.run(body())


def run_in_process(kind: str, url: str, session: SessionConfig, ping: str, pong: str) -> Callable[[], Awaitable[None]]:
    """Start a responder in its own process (as agents really run); returns a waiter for its end."""
    proc = multiprocessing.get_context("spawn").Process(
        target=responder_process, args=(kind, url, session.model_dump_json(), ping, pong), daemon=True
    )
    proc.start()

    async def join_process() -> None:
        await asyncio.to_thread(proc.join, 30)
        if proc.exitcode != 0:
            raise RuntimeError(f"{kind} process exited with {proc.exitcode}")

    return join_process


def summary(samples: list[float]) -> dict[str, float]:
    """p50 / p99 / mean in microseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": statistics.median(ordered) * 1e6, "p99": p99 * 1e6, "mean": statistics.fmean(ordered) * 1e6}


async def bench(url: str, iterations: int, warmup: int, mode: Mode, layout: str) -> tuple[list[float], list[float]]:
    config = RedisConfig(url=url)
    tag = uuid.uuid4().hex[:12]
    parent_r, admin = create_async_client(config), create_async_client(config)
    a = create_async_client(config)
    session: SessionConfig = await init_session(admin, namespace=f"bench-{tag}", mode=mode, max_children=1)
    ping, pong = f"bench:{{{tag}}}:ping", f"bench:{{{tag}}}:pong"
    parent = AsyncParent(parent_r, session)

    async def child_side() -> None:
        r = create_async_client(config)
        try:
            await child_loop(AsyncChild(r, session, 1))
        finally:
            await r.aclose()

    async def raw_side() -> None:
        b = create_async_client(config)
        try:
            await pong_loop(b, ping, pong)
        finally:
            await b.aclose()

    if layout == "processes":
        join_child = run_in_process("child", url, session, ping, pong)
        join_raw = run_in_process("raw", url, session, ping, pong)
    else:
        join_child = run_responder(child_side, layout == "threads")
        join_raw = run_responder(raw_side, layout == "threads")

    async def library_once(i: int) -> float:
        start = time.perf_counter()
        task = await parent.send_task(1, f"task {i}")
        report = await parent.wait_for_report(10)
        elapsed = time.perf_counter() - start
        assert report is not None and report.task_id == task.task_id and report.result == f"task {i}"
        return elapsed

    async def raw_once(i: int) -> float:
        start = time.perf_counter()
        await a.rpush(ping, f"ping {i}")
        popped = await a.blpop([pong], 10)
        elapsed = time.perf_counter() - start
        assert popped is not None and popped[1] == f"ping {i}"
        return elapsed

    lib: list[float] = []
    raw: list[float] = []
    try:
        for i in range(warmup + iterations):
            # Alternate which goes first, so neither always runs right after the other.
            first, second = (library_once, raw_once) if i % 2 == 0 else (raw_once, library_once)
            t1, t2 = await first(i), await second(i)
            if i >= warmup:
                lib_t, raw_t = (t1, t2) if first is library_once else (t2, t1)
                lib.append(lib_t)
                raw.append(raw_t)
    finally:
        await parent.shutdown(1)
        await a.rpush(ping, STOP)
        await join_child()
        await join_raw()
        await parent.wait_for_report(0.01)  # acknowledge the last report
        await cleanup_session(admin, session)
        await admin.delete(ping, pong, f"bench-{tag}:sessions", f"bench-{tag}:current", f"bench-{tag}:seq:*")
        for client in (parent_r, admin, a):
            await client.aclose()
    return lib, raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=2000, help="measured round trips of each kind")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured round trips of each kind first")
    parser.add_argument("--mode", choices=["summoner", "normal"], default="summoner", help="session mode")
    parser.add_argument(
        "--layout",
        choices=["processes", "threads", "loop"],
        default="processes",
        help="where the child / client B runs: its own process (as agents run; default), its own thread, "
        "or the parent's event loop (then the figure is the CPU both sides spend)",
    )
    args = parser.parse_args(argv)

    url = os.environ.get("REDIS_URL")
    server: EmbeddedRedis | None = None
    if not url:
        server = EmbeddedRedis().start()
        url = server.url
        where = f"embedded redis-server {redis_version(server.binary)} at {url}"
    else:
        where = f"REDIS_URL {RedisConfig(url=url).display_url}"
    try:
        layout = args.layout
        lib, raw = asyncio.run(bench(url, args.iterations, args.warmup, args.mode, layout))
    finally:
        if server is not None:
            server.stop()

    lib_s, raw_s = summary(lib), summary(raw)
    described = {"processes": "child in its own process", "threads": "child in its own thread"}
    print(f"{where}; python {sys.version.split()[0]}; {args.mode} mode; {described.get(layout, 'one event loop')}")
    print(f"{args.iterations} measured round trips each (after {args.warmup} warm-up), alternating")
    print(f"{'':34}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}")
    rows: list[tuple[str, dict[str, Any]]] = [
        ("library send→take→report→report", lib_s),
        ("raw RPUSH/BLPOP ping-pong", raw_s),
    ]
    for name, s in rows:
        print(f"{name:34}{s['p50']:10.0f}{s['p99']:10.0f}{s['mean']:10.0f}")
    ratio = lib_s["p50"] / raw_s["p50"]
    mean_ratio = lib_s["mean"] / raw_s["mean"]
    verdict = "within" if ratio <= TARGET_RATIO else "OVER"
    print(f"ratio library/raw: p50 {ratio:.2f}, mean {mean_ratio:.2f} ({verdict} the target {TARGET_RATIO:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
