"""Server cold start (spawn → first tools/list answered) and idle RSS, `orch-mcp serve --role chocobo` against a
bare MCPServer with one echo tool (bench/echo_server.py), started alternately over stdio.

RSS is the server process's VmRSS (Linux /proc) right after its first tools/list.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from .harness import ROOT, Context, Figure, ms, p50

COLD_START_TARGET = 1.2
RSS_TARGET = 1.15


def echo_params(env: dict[str, str]) -> StdioServerParameters:
    """The bare echo server (the baseline)."""
    return StdioServerParameters(command=sys.executable, args=[str(ROOT / "bench" / "echo_server.py")], env=env)


def orch_params(env: dict[str, str], role: str, *extra: str) -> StdioServerParameters:
    """`orch-mcp serve --role ROLE`, through the console script users register."""
    script = Path(sys.executable).parent / "orch-mcp"
    if script.exists():
        return StdioServerParameters(command=str(script), args=["serve", "--role", role, *extra], env=env)
    return StdioServerParameters(
        command=sys.executable, args=["-m", "orch_mcp", "serve", "--role", role, *extra], env=env
    )


def _children() -> set[int]:
    """This process's child processes (Linux)."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            found.update(int(pid) for pid in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def _rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


async def start_once(params: StdioServerParameters) -> tuple[float, int | None]:
    """Seconds from spawning the server to its first tools/list answer, and its RSS then."""
    before = _children() if sys.platform.startswith("linux") else set()
    start = time.perf_counter()
    async with Client(params) as client:
        await client.list_tools()
        elapsed = time.perf_counter() - start
        new = _children() - before if sys.platform.startswith("linux") else set()
        rss = _rss_bytes(next(iter(new))) if len(new) == 1 else None
    return elapsed, rss


async def measure(url: str, ctx: Context) -> list[Figure]:
    env = ctx.env(url)
    chocobo = orch_params(env, "chocobo", "--child-id", "1")
    echo = echo_params(env)
    await start_once(echo)  # warm the file cache for both
    await start_once(chocobo)
    times: dict[str, list[float]] = {"echo": [], "orch": []}
    rss: dict[str, list[float]] = {"echo": [], "orch": []}
    for i in range(ctx.n(8, 2)):
        order = (("echo", echo), ("orch", chocobo)) if i % 2 == 0 else (("orch", chocobo), ("echo", echo))
        for name, params in order:
            seconds, resident = await start_once(params)
            times[name].append(seconds)
            if resident is not None:
                rss[name].append(resident)
    figures = [
        Figure(
            "server cold start, spawn -> first tools/list",
            ms(p50(times["orch"])),
            ms(p50(times["echo"])),
            "ms",
            "le",
            COLD_START_TARGET,
            "orch-mcp serve --role chocobo vs a bare MCPServer echo (medians)",
        ),
    ]
    if rss["orch"] and rss["echo"]:
        figures.append(
            Figure(
                "idle server RSS (after one tools/list)",
                p50(rss["orch"]) / 2**20,
                p50(rss["echo"]) / 2**20,
                "MiB",
                "le",
                RSS_TARGET,
                "VmRSS, orch-mcp serve --role chocobo vs the bare echo server",
            )
        )
    return figures


def run(ctx: Context) -> list[Figure]:
    """The start-up family's figures."""
    with ctx.redis() as url:
        return anyio.run(measure, url, ctx)
