"""The demo's team: one moogle and N chocobo `orch-mcp serve` processes, driven over MCP stdio by scripted agents."""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from ..config import RedisConfig
from ..errors import OrchError

SAMPLE_PROMPTS = [
    "Summarise the design notes in three bullet points",
    "List the open questions from the last review",
    "Draft the release checklist",
    "Translate the README introduction into Japanese",
    "Find the slowest test and explain why",
    "Write a haiku about message queues",
    "Check the compose file for a healthcheck",
    "Propose names for the next milestone",
    "Count the TODO comments in the code base",
]


class DemoError(OrchError):
    """The demo could not finish; the message says where it stopped."""


@dataclass
class TaskRow:
    """One task as the demo follows it."""

    n: int
    prompt: str
    child_id: int
    task_id: str | None = None
    state: str = "pending"
    sent_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result: str | None = None
    delivery_count: int | None = None

    @property
    def seconds(self) -> float | None:
        """From sending to the report, in seconds."""
        if self.sent_at is None or self.finished_at is None:
            return None
        return round(self.finished_at - self.sent_at, 3)

    def to_dict(self) -> dict[str, Any]:
        """The row for --json."""
        return {
            "n": self.n,
            "task_id": self.task_id,
            "prompt": self.prompt,
            "child_id": self.child_id,
            "state": self.state,
            "result": self.result,
            "seconds": self.seconds,
            "delivery_count": self.delivery_count,
        }


@dataclass
class Demo:
    """The run's shared state: what every scripted agent saw, and how to report progress."""

    children: int
    rows: list[TaskRow]
    work_seconds: float
    say: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    ready: set[str] = field(default_factory=set)
    failure: str | None = None
    told: list[int] = field(default_factory=list)

    def elapsed(self) -> float:
        """Seconds since the demo started."""
        return time.monotonic() - self.started

    def log(self, text: str) -> None:
        """A progress line, stamped with the elapsed time."""
        self.say(f"[{self.elapsed():5.2f} s] {text}")

    def count(self, *states: str) -> int:
        """How many tasks are in one of `states`."""
        return sum(1 for row in self.rows if row.state in states)


# ---------------------------------------------------------------- the scripted agents


def _text(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content).strip()


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call a tool as a model would; a tool error stops the demo with the text the model would have read."""
    result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        raise DemoError(f"{tool} failed: {_text(result) or 'no structured result'}")
    data: dict[str, Any] = result.structured_content
    return data


async def chocobo(demo: Demo, client: Client, child_id: int) -> None:
    """A chocobo agent: wait_for_task → do the work → report, until told to shut down."""
    demo.ready.add(f"chocobo {child_id}")
    while True:
        got = await call(client, "wait_for_task", {"timeout_s": 10})
        if got["status"] == "shutdown":
            demo.log(f"chocobo {child_id}: shutdown received, stopping")
            return
        if got["status"] != "task":
            continue
        task = got["task"]
        row = demo.rows[int(task["context"]["n"]) - 1]
        row.task_id = row.task_id or task["task_id"]
        row.state, row.started_at = "working", time.monotonic()
        demo.log(f"chocobo {child_id}: working on task {row.n} ({row.prompt})")
        await anyio.sleep(demo.work_seconds * random.uniform(0.5, 1.5))  # the simulated work itself
        result = f"chocobo {child_id} did {row.prompt!r}"
        outcome = await call(client, "report", {"task_id": task["task_id"], "result": result})
        if not outcome.get("accepted", False):
            raise DemoError(f"the report on task {row.n} was not accepted: {outcome}")


async def moogle(demo: Demo, client: Client) -> None:
    """The moogle agent: send every task round-robin, collect every report, shut the children down."""
    demo.ready.add("moogle")
    by_id: dict[str, TaskRow] = {}
    for row in demo.rows:
        row.sent_at = time.monotonic()
        sent = await call(
            client, "send_task", {"child_id": row.child_id, "prompt": row.prompt, "context": {"n": row.n}}
        )
        row.task_id = sent["task_id"]
        by_id[row.task_id] = row
        if row.state == "pending":
            row.state = "queued"
        demo.log(f"moogle: sent task {row.n} to chocobo {row.child_id}")
    reported = 0
    while reported < len(demo.rows):
        got = await call(client, "wait_for_report", {"timeout_s": 10})
        if got["status"] != "report":
            continue
        report = got["report"]
        row_or_none = by_id.get(report["task_id"])
        if row_or_none is None or row_or_none.finished_at is not None:
            continue
        row = row_or_none
        reported += 1
        row.state, row.result, row.finished_at = report["status"], report["result"], time.monotonic()
        demo.log(f"moogle: report {reported}/{len(demo.rows)}: task {row.n} {row.state} by chocobo {row.child_id}")
    demo.told = (await call(client, "shutdown", {}))["told"]
    demo.log(f"moogle: told chocobo {', '.join(map(str, demo.told))} to shut down")
    for row in demo.rows:  # the task records, as the moogle can read them at any time
        assert row.task_id is not None
        record = await call(client, "get_task", {"task_id": row.task_id})
        row.state, row.delivery_count = record["state"], record.get("delivery_count")


# ---------------------------------------------------------------- running the servers


@dataclass
class ServerLogs:
    """Where each server process writes its stderr (shown when something goes wrong)."""

    directory: Path
    files: dict[str, TextIO] = field(default_factory=dict)

    def open(self, name: str) -> TextIO:
        """A log file for server `name`."""
        handle = (self.directory / f"{name.replace(' ', '-')}.log").open("w+", encoding="utf-8")
        self.files[name] = handle
        return handle

    def tail(self, name: str, lines: int = 3) -> str:
        """The last lines a server wrote to stderr."""
        handle = self.files.get(name)
        if handle is None:
            return ""
        handle.flush()
        text = (self.directory / f"{name.replace(' ', '-')}.log").read_text(errors="replace")
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def close(self) -> None:
        """Close every log."""
        for handle in self.files.values():
            handle.close()


def server_params(role: str, redis: RedisConfig, namespace: str, session_id: str, *extra: str) -> StdioServerParameters:
    """`python -m orch_mcp serve --role <role> …` for this Python (works without the console script on PATH)."""
    env = {name: os.environ[name] for name in ("PYTHONPATH", "ORCH_REDIS_SERVER") if os.environ.get(name)}
    env |= redis.tls_env()
    env["REDIS_URL"] = redis.redis_url  # in the environment, not the command line, which `ps` shows with a password
    args = ["-m", "orch_mcp", "serve", "--role", role, "--namespace", namespace]
    return StdioServerParameters(
        command=sys.executable, args=[*args, "--session-id", session_id, *extra], env=env, cwd=os.getcwd()
    )


async def run_agent(
    demo: Demo, logs: ServerLogs, name: str, params: StdioServerParameters, agent: Any, *agent_args: Any
) -> None:
    """Start one server, connect as its agent and play the agent; a failure is recorded, not raised."""
    try:
        async with Client(stdio_client(params, errlog=logs.open(name))) as client:
            await agent(demo, client, *agent_args)
    except Exception as exc:
        if demo.failure is None:
            detail = str(exc) or type(exc).__name__
            tail = logs.tail(name)
            demo.failure = f"{name}: {detail}" + (f" (server log: {tail})" if tail else "")
        raise


async def run_team(demo: Demo, redis: RedisConfig, namespace: str, session_id: str, logs: ServerLogs) -> None:
    """One moogle and N chocobos, each its own server process, all at once."""
    async with anyio.create_task_group() as tg:
        for n in range(1, demo.children + 1):
            params = server_params("chocobo", redis, namespace, session_id, "--child-id", str(n))
            tg.start_soon(run_agent, demo, logs, f"chocobo {n}", params, chocobo, n)
        tg.start_soon(run_agent, demo, logs, "moogle", server_params("moogle", redis, namespace, session_id), moogle)


# ---------------------------------------------------------------- output
