"""Cancelling a blocked wait right as a task or report arrives loses nothing: it comes back on the next wait.

Each round starts a wait, waits until the server reports (by a progress notification) that it is
blocked, delivers one task (or report) through the core, then cancels the call at once - after 0 to
3 scheduler turns, to hit the different moments of the hand-over. Whatever the cancelled call did,
the next wait must return that round's task (report), and no report may come twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from mcp import Client
from mcp_helpers import ok, serve_params, settings

from orch_mcp.agents import AsyncChild, AsyncParent
from orch_mcp.config import OrchConfig
from orch_mcp.redis_client import Redis
from orch_mcp.server import create_server
from orch_mcp.sessions import SessionConfig, init_session

ROUNDS = 30


@asynccontextmanager
async def chocobo_client(orch: OrchConfig, env: dict[str, str] | None) -> AsyncIterator[Client]:
    """Chocobo 1 in-process, or as an `orch-mcp serve` subprocess over stdio when `env` is given."""
    target: Any = (
        serve_params("chocobo", env, "--child-id", "1") if env else create_server(settings(orch, "chocobo", 1))
    )
    async with Client(target) as client:
        yield client


@asynccontextmanager
async def moogle_client(orch: OrchConfig, env: dict[str, str] | None) -> AsyncIterator[Client]:
    target: Any = serve_params("moogle", env) if env else create_server(settings(orch, "moogle"))
    async with Client(target) as client:
        yield client


async def cancel_as_it_arrives(client: Client, tool: str, deliver: Any, turns: int) -> dict[str, Any] | None:
    """Call `tool`, run `deliver()` once the server is blocked, cancel the call; return its result if it finished."""
    blocked = anyio.Event()
    finished: list[dict[str, Any]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        blocked.set()

    async def call() -> None:
        result = await client.call_tool(tool, {"timeout_s": 20}, progress_callback=on_progress)
        finished.append(ok(result))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        with anyio.fail_after(10):
            await blocked.wait()
        await deliver()
        for _ in range(turns):
            await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    return finished[0] if finished else None


@pytest.fixture
async def session(r: Redis) -> SessionConfig:
    return await init_session(r, namespace="test", max_children=1)


@pytest.mark.parametrize("over", ["in-process", "stdio"])
async def test_cancelled_wait_for_task_loses_no_task(
    over: str, r: Redis, session: SessionConfig, orch_config: OrchConfig, env_for: dict[str, str]
) -> None:
    parent = AsyncParent(r, session)
    sent: list[str] = []
    early = 0
    with anyio.fail_after(60):
        async with chocobo_client(orch_config, env_for if over == "stdio" else None) as chocobo:
            for i in range(ROUNDS):

                async def deliver(i: int = i) -> None:
                    sent.append((await parent.send_task(1, f"task {i}")).task_id)

                finished = await cancel_as_it_arrives(chocobo, "wait_for_task", deliver, i % 4)
                if finished is not None:
                    early += 1
                    assert finished["task"]["task_id"] == sent[-1]
                # Delivered or not, the task is still this child's (in flight or queued): the next wait has it.
                again = ok(await chocobo.call_tool("wait_for_task", {"timeout_s": 5}))
                assert again["status"] == "task" and again["task"]["task_id"] == sent[-1], f"round {i}: {again}"
                ok(await chocobo.call_tool("report", {"task_id": sent[-1], "result": f"done {i}"}))
            left = ok(await chocobo.call_tool("wait_for_task", {"timeout_s": 0}))
    assert left["status"] == "timeout"
    assert len(set(sent)) == ROUNDS
    states = [(await parent.get_task(t)).state for t in sent]
    assert states == ["done"] * ROUNDS
    assert 0 <= early <= ROUNDS  # how many cancelled waits had already returned their task: depends on timing


@pytest.mark.parametrize("over", ["in-process", "stdio"])
async def test_cancelled_wait_for_report_loses_no_report(
    over: str, r: Redis, session: SessionConfig, orch_config: OrchConfig, env_for: dict[str, str]
) -> None:
    parent = AsyncParent(r, session)
    child = AsyncChild(r, session, 1)
    received: list[str] = []
    sent: list[str] = []
    with anyio.fail_after(60):
        async with moogle_client(orch_config, env_for if over == "stdio" else None) as moogle:
            for i in range(ROUNDS):
                task = await parent.send_task(1, f"task {i}")
                assert await child.take(1) is not None

                async def deliver(i: int = i, task_id: str = task.task_id) -> None:
                    await child.report(task_id, f"result {i}")
                    sent.append(task_id)

                finished = await cancel_as_it_arrives(moogle, "wait_for_report", deliver, i % 4)
                if finished is not None:
                    assert finished["status"] == "report"
                    received.append(finished["report"]["task_id"])
                else:
                    again = ok(await moogle.call_tool("wait_for_report", {"timeout_s": 5}))
                    assert again["status"] == "report", f"round {i}: the report was lost ({again})"
                    assert again["report"]["result"] == f"result {i}"
                    received.append(again["report"]["task_id"])
            left = ok(await moogle.call_tool("wait_for_report", {"timeout_s": 0}))
    assert left["status"] == "idle", f"a report came twice: {left}"
    assert received == sent
    assert len(set(received)) == ROUNDS
