#!/usr/bin/env python3
"""Benchmark: orch-mcp's tools over stdio against a bare MCP echo server, in one run.

    python bench/bench_mcp.py [--iterations N] [--warmup N] [--cold-starts N]

Measured through the SDK's stdio client, each server a real subprocess:
(a) echo: one call of the `echo` tool of bench/echo_server.py (an MCPServer with nothing else);
(b) send_task: one call of the moogle's send_task;
(c) round trip: the chocobo's wait_for_task already pending; from the moogle's send_task to its
    wait_for_report returning, through the chocobo's report. That is three tool calls end to end
    (send_task, report, wait_for_report) plus the pending call's answer, so it is compared with three
    echo calls: target ratio <= 1.5;
(a), (b) and (c) alternate within each iteration (so a noisy machine slows them alike), each while
the chocobo's wait is pending and nothing else runs. The chocobo is an agent process of its own (its
client drives its server), as every agent is; this process is the moogle's client. The echo call is
also timed back to back first, as a reference (a tight loop on a quiet machine runs faster);
(d) cold start: spawn -> first tools/list answered, `orch-mcp serve --role moogle` against the echo
    server (runs interleaved, medians compared): target ratio <= 1.3.
Starts its own redis-server (EmbeddedRedis); prints p50 / p99 of each and the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orch_mcp.embedded import EmbeddedRedis, redis_version  # noqa: E402

ROUND_TRIP_TARGET = 1.5
COLD_START_TARGET = 1.3


def echo_params(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[str(ROOT / "bench" / "echo_server.py")], env=env)


def orch_params(env: dict[str, str], role: str, *extra: str) -> StdioServerParameters:
    script = Path(sys.executable).parent / "orch-mcp"  # the console script users register
    if script.exists():
        return StdioServerParameters(command=str(script), args=["serve", "--role", role, *extra], env=env)
    return StdioServerParameters(command=sys.executable, args=["-m", "orch_mcp", "serve", "--role", role, *extra],
                                 env=env)  # fmt: skip


def structured(result: Any) -> dict[str, Any]:
    if result.is_error:
        raise RuntimeError(result.content[0].text)
    data: dict[str, Any] = result.structured_content
    return data


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99, in milliseconds."""
    ms = sorted(s * 1000 for s in samples)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[0]
    return statistics.median(ms), p99


def report_line(name: str, samples: list[float]) -> tuple[float, float]:
    p50, p99 = percentiles(samples)
    print(f"  {name:<34} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms   (n={len(samples)})")
    return p50, p99


class Samples:
    def __init__(self) -> None:
        self.echo: list[float] = []
        self.send: list[float] = []
        self.trip: list[float] = []


async def chocobo_agent() -> None:
    """The chocobo's agent, a process of its own: wait_for_task -> report until shutdown.

    Prints "pending" each time its server has started a wait (its first progress notification), so the
    benchmark starts the clock only with the chocobo's wait_for_task already pending.
    """
    env = dict(os.environ)
    async with Client(orch_params(env, "chocobo", "--child-id", "1")) as chocobo:
        while True:
            told = False

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                nonlocal told
                if not told:
                    told = True
                    print("pending", flush=True)

            got = structured(await chocobo.call_tool("wait_for_task", {"timeout_s": 30}, progress_callback=on_progress))
            if got["status"] == "shutdown":
                return
            if got["status"] == "task":
                task = got["task"]
                structured(await chocobo.call_tool("report", {"task_id": task["task_id"], "result": task["prompt"]}))


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


async def iteration(echo: Client, moogle: Client, agent: Lines, i: int, samples: Samples | None) -> None:
    """With the chocobo's wait pending and nothing else going on: one echo call, one send_task, one round trip."""
    assert await agent.next() == "pending"
    start = time.perf_counter()
    answer = await echo.call_tool("echo", {"text": f"hello {i}"})
    echo_s = time.perf_counter() - start
    assert answer.structured_content == {"result": f"hello {i}"}, answer

    start = time.perf_counter()
    structured(await moogle.call_tool("send_task", {"child_id": 2, "prompt": f"queued {i}"}))
    send_s = time.perf_counter() - start

    start = time.perf_counter()
    sent = structured(await moogle.call_tool("send_task", {"child_id": 1, "prompt": f"task {i}"}))
    got = structured(await moogle.call_tool("wait_for_report", {"timeout_s": 30}))
    trip_s = time.perf_counter() - start
    assert got["status"] == "report" and got["report"]["task_id"] == sent["task_id"], got
    assert got["report"]["result"] == f"task {i}"
    if samples is not None:
        samples.echo.append(echo_s)
        samples.send.append(send_s)
        samples.trip.append(trip_s)


async def cold_start(params: StdioServerParameters) -> float:
    """Seconds from spawning the server to its first tools/list answer."""
    start = time.perf_counter()
    async with Client(params) as client:
        await client.list_tools()
        elapsed = time.perf_counter() - start
    return elapsed


async def run(url: str, args: argparse.Namespace) -> int:
    env = {**os.environ, "REDIS_URL": url, "ORCH_NAMESPACE": "bench"}
    for name in ("ORCH_SESSION_ID", "ORCH_ROLE", "ORCH_CHILD_ID", "ORCH_TRANSPORT"):
        env.pop(name, None)
    n, warmup = args.iterations, args.warmup
    print(f"orch-mcp over stdio: {n} iterations after {warmup} warm-up, redis-server {redis_version()}, "
          f"Python {sys.version.split()[0]}")  # fmt: skip

    samples = Samples()
    back_to_back: list[float] = []
    async with Client(echo_params(env)) as echo, Client(orch_params(env, "summoner")) as summoner:
        for i in range(warmup + n):  # for reference: the echo call in a tight loop, nothing else running
            start = time.perf_counter()
            await echo.call_tool("echo", {"text": f"hello {i}"})
            if i >= warmup:
                back_to_back.append(time.perf_counter() - start)
        session = structured(await summoner.call_tool("init_session", {"max_children": 2}))
        agent_command = [sys.executable, str(ROOT / "bench" / "bench_mcp.py"), "--chocobo-agent"]
        async with Client(orch_params(env, "moogle")) as moogle, \
                await anyio.open_process(agent_command, env=env, stderr=None) as agent:  # fmt: skip
            assert agent.stdout is not None
            lines = Lines(agent.stdout)
            for i in range(warmup + n):
                await iteration(echo, moogle, lines, i, samples if i >= warmup else None)
            structured(await moogle.call_tool("shutdown", {"child_id": 1}))
            await agent.wait()
        structured(await summoner.call_tool("cleanup_session", {"session_id": session["session_id"]}))
    echo_samples, send_samples, trip_samples = samples.echo, samples.send, samples.trip

    print("\nper call:")
    tight_p50, _ = report_line("echo, back to back (reference)", back_to_back)
    echo_p50, echo_p99 = report_line("echo (bare MCP tool)", echo_samples)
    report_line("send_task", send_samples)
    trip_p50, trip_p99 = report_line("round trip (send -> report -> wait)", trip_samples)
    ratio = trip_p50 / (3 * echo_p50)
    print(f"  round trip / (3 x echo): p50 {ratio:.2f}, p99 {trip_p99 / (3 * echo_p99):.2f}   "
          f"(target <= {ROUND_TRIP_TARGET}) {'OK' if ratio <= ROUND_TRIP_TARGET else 'MISSED'}")  # fmt: skip
    print(f"  round trip / (3 x echo back to back): p50 {trip_p50 / (3 * tight_p50):.2f}   (reference)")

    echo_starts: list[float] = []
    orch_starts: list[float] = []
    for _ in range(args.cold_starts):  # interleaved, so machine noise hits both alike
        echo_starts.append(await cold_start(echo_params(env)))
        orch_starts.append(await cold_start(orch_params(env, "moogle")))
    print("\ncold start, spawn -> first tools/list:")
    echo_cold, _ = report_line("echo server", echo_starts)
    orch_cold, _ = report_line("orch-mcp serve --role moogle", orch_starts)
    cold_ratio = orch_cold / echo_cold
    print(f"  orch-mcp / echo: p50 {cold_ratio:.2f}   (target <= {COLD_START_TARGET}) "
          f"{'OK' if cold_ratio <= COLD_START_TARGET else 'MISSED'}")  # fmt: skip
    return 0 if ratio <= ROUND_TRIP_TARGET and cold_ratio <= COLD_START_TARGET else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=200, help="timed calls per measurement (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first (default 20)")
    parser.add_argument("--cold-starts", type=int, default=10, help="server starts per kind (default 10)")
    parser.add_argument("--chocobo-agent", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.chocobo_agent:
        anyio.run(chocobo_agent)
        return 0
    with EmbeddedRedis() as redis:
        return anyio.run(run, redis.url, args)


if __name__ == "__main__":
    raise SystemExit(main())
