"""A whole team as real processes: summoner, moogle and three chocobos, each `orch-mcp serve` over stdio.

The moogle sends 9 tasks (3 per child), the chocobos loop wait_for_task -> report, the moogle collects
all 9 reports and shuts the children down. Every task must end done with its own result, none twice.
"""

from __future__ import annotations

import anyio
import pytest
from mcp import Client
from mcp_helpers import ok, serve_params

from orch_mcp.redis_client import Redis
from orch_mcp.sessions import current_session

CHILDREN = 3
TASKS = 9


async def chocobo(child_id: int, env: dict[str, str], done: dict[int, list[str]]) -> None:
    """One chocobo agent: its own server process, looping until it is told to shut down."""
    async with Client(serve_params("chocobo", env, "--child-id", str(child_id))) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert tools == {"wait_for_task", "heartbeat", "report"}
        while True:
            got = ok(await client.call_tool("wait_for_task", {"timeout_s": 10}))
            if got["status"] == "shutdown":
                return
            if got["status"] == "task":
                task = got["task"]
                result = f"chocobo {child_id} did: {task['prompt']}"
                outcome = ok(await client.call_tool("report", {"task_id": task["task_id"], "result": result}))
                assert outcome["accepted"] is True
                done[child_id].append(task["task_id"])


@pytest.mark.slow
async def test_a_team_of_processes_does_nine_tasks(r: Redis, env_for: dict[str, str]) -> None:
    await play_team(r, env_for)


async def play_team(r: Redis, env: dict[str, str]) -> None:
    """The whole team, each server started with `env` (namespace "test"); `r` reads that Redis after."""
    done: dict[int, list[str]] = {n: [] for n in range(1, CHILDREN + 1)}
    with anyio.fail_after(60):
        async with Client(serve_params("summoner", env)) as summoner:
            session = ok(await summoner.call_tool("init_session", {"max_children": CHILDREN}))
            async with anyio.create_task_group() as tg:
                for n in range(1, CHILDREN + 1):
                    tg.start_soon(chocobo, n, env, done)
                async with Client(serve_params("moogle", env)) as moogle:
                    sent: dict[str, tuple[int, str]] = {}
                    for i in range(TASKS):
                        child_id, prompt = i % CHILDREN + 1, f"task number {i}"
                        out = ok(await moogle.call_tool("send_task", {"child_id": child_id, "prompt": prompt}))
                        assert out["session_id"] == session["session_id"]
                        sent[out["task_id"]] = (child_id, prompt)
                    reports: list[dict[str, object]] = []
                    while len(reports) < TASKS:
                        got = ok(await moogle.call_tool("wait_for_report", {"timeout_s": 10}))
                        if got["status"] == "report":
                            reports.append(got["report"])
                    assert ok(await moogle.call_tool("wait_for_report", {"timeout_s": 0}))["status"] == "idle"
                    assert ok(await moogle.call_tool("shutdown", {}))["told"] == [1, 2, 3]
                    records = [ok(await moogle.call_tool("get_task", {"task_id": t})) for t in sent]
            status = ok(await summoner.call_tool("session_status", {}))

    assert sorted(str(rep["task_id"]) for rep in reports) == sorted(sent), "a report is missing or came twice"
    for rep in reports:
        child_id, prompt = sent[str(rep["task_id"])]
        assert rep["child_id"] == child_id and rep["status"] == "done"
        assert rep["result"] == f"chocobo {child_id} did: {prompt}"
    for rec in records:
        child_id, prompt = sent[rec["task_id"]]
        assert (rec["state"], rec["result"], rec["delivery_count"]) == ("done", f"chocobo {child_id} did: {prompt}", 1)
    for n, task_ids in done.items():
        assert sorted(task_ids) == sorted(t for t, (c, _) in sent.items() if c == n)
    assert status["tasks"]["done"] == TASKS
    # The chocobos stopped: each released its claim on the way out.
    cfg = await current_session(r, namespace="test")
    assert not any([await r.exists(cfg.keys.presence(n)) for n in range(1, CHILDREN + 1)])
