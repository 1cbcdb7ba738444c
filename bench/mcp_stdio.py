"""orch-mcp over stdio against bare MCP echo calls: a task's round trip, the child's wake-up, and throughput.

Every orch-mcp server is a real `orch-mcp serve` process driven by the SDK's stdio client, as agents run it.

Round trip and wake-up: the moogle's client runs here; the chocobo's agent is a process of its own
(`python -m bench.mcp_stdio agent`) that loops wait_for_task → report and tells this process, on its stdout,
when its wait is pending (its first progress notification) and when a task woke it (CLOCK_MONOTONIC, which
every process on the machine shares). With the chocobo's wait pending, each iteration times three echo calls
of bench/echo_server.py, then send_task → wait_for_report: round trip = send_task's start to wait_for_report's
return (compared with the three echo calls), wake-up = send_task's start to the chocobo's wait returning
(compared with the first echo call).

Throughput: 8 chocobo servers and one moogle, all their clients in this process; the moogle keeps one task in
flight per child (it sends the next to whichever child reported). Baseline: 9 echo servers with the same shape
(per task: a parent call, two child calls, a parent call) at the same concurrency. Alternating rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from mcp import Client
from mcp_types import CallToolResult

from orch_mcp.config import RedisConfig
from orch_mcp.redis_client import create_async_client
from orch_mcp.sessions import init_session

from .harness import ROOT, Context, Figure, ms, p50, p99
from .startup import echo_params, orch_params

ROUND_TRIP_TARGET = 1.3
WAKE_UP_TARGET = 1.2
CHILDREN = 8
WAIT = {"timeout_s": 30}


def structured(result: CallToolResult) -> dict[str, Any]:
    """The structured answer of a tool call; RuntimeError with the text the model would read if it failed."""
    if result.is_error or result.structured_content is None:
        raise RuntimeError(" ".join(getattr(block, "text", "") for block in result.content))
    data: dict[str, Any] = result.structured_content
    return data


async def chocobo_loop(client: Client, child_id: int, tell: Callable[[str], None] | None) -> None:
    """A chocobo agent: wait_for_task → report the prompt back, until shutdown. `tell` hears "pending" and "woke"."""
    while True:
        told = False

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            nonlocal told
            if tell is not None and not told:
                told = True
                tell(f"pending {child_id}")

        got = structured(await client.call_tool("wait_for_task", WAIT, progress_callback=on_progress))
        woke = time.monotonic()
        if got["status"] == "shutdown":
            return
        if got["status"] == "task":
            task = got["task"]
            if tell is not None:
                tell(f"woke {child_id} {task['task_id']} {woke!r}")
            structured(await client.call_tool("report", {"task_id": task["task_id"], "result": task["prompt"]}))


async def agent_main() -> None:
    """`python -m bench.mcp_stdio agent`: the chocobo agent of child 1, with REDIS_URL etc. in its environment."""
    import os

    def tell(line: str) -> None:
        print(line, flush=True)

    async with Client(orch_params(dict(os.environ), "chocobo", "--child-id", "1")) as client:
        await chocobo_loop(client, 1, tell)


class Lines:
    """Lines from a byte stream."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.buffer = ""

    async def next(self) -> str:
        while "\n" not in self.buffer:
            self.buffer += (await self.stream.receive()).decode()
        line, self.buffer = self.buffer.split("\n", 1)
        return line


async def round_trips(url: str, ctx: Context) -> list[Figure]:
    env = ctx.env(url)
    admin = create_async_client(RedisConfig(url=url))
    await init_session(admin, namespace="bench", max_children=1)
    await admin.aclose()
    one: list[float] = []
    three: list[float] = []
    trips: list[float] = []
    wakes: list[float] = []
    warmup, iterations = ctx.n(20, 5), ctx.n(300, 40)
    command = [sys.executable, "-m", "bench.mcp_stdio", "agent"]
    async with (
        Client(echo_params(env)) as echo,
        Client(orch_params(env, "moogle")) as moogle,
        await anyio.open_process(command, env=env, cwd=ROOT, stderr=None) as agent,
    ):
        assert agent.stdout is not None
        lines = Lines(agent.stdout)
        for i in range(warmup + iterations):
            if await lines.next() != "pending 1":
                raise RuntimeError("the chocobo agent did not say its wait is pending")
            calls = []
            start = time.monotonic()
            for k in range(3):
                answer = await echo.call_tool("echo", {"text": f"hello {i} {k}"})
                calls.append(time.monotonic())
                if answer.structured_content != {"result": f"hello {i} {k}"}:
                    raise RuntimeError(f"echo answered {answer}")
            sent_at = time.monotonic()
            sent = structured(await moogle.call_tool("send_task", {"child_id": 1, "prompt": f"task {i}"}))
            got = structured(await moogle.call_tool("wait_for_report", WAIT))
            done = time.monotonic()
            if got["status"] != "report" or got["report"]["task_id"] != sent["task_id"]:
                raise RuntimeError(f"wait_for_report answered {got}")
            word, _, task_id, stamp = (await lines.next()).split()
            if word != "woke" or task_id != sent["task_id"]:
                raise RuntimeError(f"the chocobo agent woke for {task_id}, not {sent['task_id']}")
            if i >= warmup:
                one.append(calls[0] - start)
                three.append(calls[2] - start)
                trips.append(done - sent_at)
                wakes.append(float(stamp) - sent_at)
        structured(await moogle.call_tool("shutdown", {"child_id": 1}))
        await agent.wait()
    return [
        Figure(
            "MCP stdio task round trip p50",
            ms(p50(trips)),
            ms(p50(three)),
            "ms",
            "le",
            ROUND_TRIP_TARGET,
            "send_task -> pending wait_for_task returns -> report -> wait_for_report; vs 3 echo calls",
        ),
        Figure(
            "MCP stdio task round trip p99",
            ms(p99(trips)),
            ms(p99(three)),
            "ms",
            "le",
            ROUND_TRIP_TARGET,
            "the same, 99th percentiles",
        ),
        Figure(
            "wake-up: send_task -> pending wait_for_task returns (p50)",
            ms(p50(wakes)),
            ms(p50(one)),
            "ms",
            "le",
            WAKE_UP_TARGET,
            "vs one echo call",
        ),
        Figure(
            "wake-up: send_task -> pending wait_for_task returns (p99)",
            ms(p99(wakes)),
            ms(p99(one)),
            "ms",
            "le",
            WAKE_UP_TARGET,
            "the same, 99th percentiles",
        ),
    ]


@contextlib.asynccontextmanager
async def clients(params: list[Any]) -> AsyncIterator[list[Client]]:
    """Start every server at once (their imports overlap) and yield their connected clients, in order."""
    started: list[Client | None] = [None] * len(params)
    ready = [anyio.Event() for _ in params]
    done = anyio.Event()

    async def hold(i: int) -> None:
        async with Client(params[i]) as client:
            started[i] = client
            ready[i].set()
            await done.wait()

    async with anyio.create_task_group() as tg:
        for i in range(len(params)):
            tg.start_soon(hold, i)
        for event in ready:
            await event.wait()
        try:
            yield [c for c in started if c is not None]
        finally:
            done.set()


async def orch_flow(moogle: Client, children: list[Client], count: int) -> float:
    """Seconds to run `count` tasks through the moogle and the chocobos, one in flight per child."""
    sent = 0

    async def send(child_id: int) -> None:
        nonlocal sent
        structured(await moogle.call_tool("send_task", {"child_id": child_id, "prompt": f"task {sent}"}))
        sent += 1

    start = time.perf_counter()
    for n in range(1, len(children) + 1):
        await send(n)
    for _ in range(count):
        got = structured(await moogle.call_tool("wait_for_report", WAIT))
        if got["status"] != "report":
            raise RuntimeError(f"wait_for_report answered {got['status']}")
        if sent < count:
            await send(got["report"]["child_id"])
    return time.perf_counter() - start


async def echo_flow(parent: Client, children: list[Client], count: int) -> float:
    """The same shape with echo calls: parent call (send), child calls (take, report), parent call (collect)."""
    queues: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in children]
    reports: asyncio.Queue[int] = asyncio.Queue()
    sent = 0

    async def call(client: Client, text: str) -> None:
        if (await client.call_tool("echo", {"text": text})).is_error:
            raise RuntimeError("echo failed")

    async def child(k: int) -> None:
        while (task := await queues[k].get()) >= 0:
            await call(children[k], f"take {task}")
            await call(children[k], f"report {task}")
            await reports.put(k)

    async def send(k: int) -> None:
        nonlocal sent
        await call(parent, f"send {sent}")
        await queues[k].put(sent)
        sent += 1

    workers = [asyncio.ensure_future(child(k)) for k in range(len(children))]
    start = time.perf_counter()
    for k in range(len(children)):
        await send(k)
    for _ in range(count):
        k = await reports.get()
        await call(parent, f"collect {k}")
        if sent < count:
            await send(k)
    elapsed = time.perf_counter() - start
    for q in queues:
        await q.put(-1)
    await asyncio.gather(*workers)
    return elapsed


async def throughput(url: str, ctx: Context) -> list[Figure]:
    env = ctx.env(url)
    admin = create_async_client(RedisConfig(url=url))
    await init_session(admin, namespace="bench", max_children=ctx.n(CHILDREN, 4))
    await admin.aclose()
    count, children = ctx.n(1000, 80), ctx.n(CHILDREN, 4)
    ids = range(1, children + 1)
    params = [orch_params(env, "moogle"), *(orch_params(env, "chocobo", "--child-id", str(n)) for n in ids)]
    params += [echo_params(env) for _ in range(children + 1)]
    ours = base = 0.0
    async with clients(params) as started:
        moogle, chocobos = started[0], started[1 : children + 1]
        echo_parent, echo_children = started[children + 1], started[children + 2 :]
        agents = [asyncio.ensure_future(chocobo_loop(c, n, None)) for n, c in zip(ids, chocobos, strict=True)]
        rounds: list[tuple[str, Callable[[], Awaitable[float]]]] = [
            ("ours", lambda: orch_flow(moogle, chocobos, count // 2)),
            ("echo", lambda: echo_flow(echo_parent, echo_children, count // 2)),
        ]
        await orch_flow(moogle, chocobos, children * 2)  # warm-up
        await echo_flow(echo_parent, echo_children, children * 2)
        for order in (rounds, rounds[::-1]):
            for name, run_round in order:
                seconds = await run_round()
                if name == "ours":
                    ours += seconds
                else:
                    base += seconds
        structured(await moogle.call_tool("shutdown", {}))
        await asyncio.gather(*agents)
    total = 2 * (count // 2)
    return [
        Figure(
            f"throughput over MCP stdio, {children} chocobo processes",
            total / ours,
            total / base,
            "tasks/s",
            "report",
            None,
            "vs echo calls of the same shape and concurrency (4 calls per task)",
        ),
    ]


def run(ctx: Context) -> list[Figure]:
    """The MCP family's figures."""
    with ctx.redis() as url:
        figures = anyio.run(round_trips, url, ctx)
    with ctx.redis() as url:
        figures += anyio.run(throughput, url, ctx)
    return figures


if __name__ == "__main__" and sys.argv[1:] == ["agent"]:
    anyio.run(agent_main)
