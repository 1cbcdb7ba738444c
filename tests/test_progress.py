"""A client that asks for progress receives notifications every few seconds while a wait blocks."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client
from mcp_helpers import ok, serve_params, settings

from orch_mcp.agents import AsyncParent
from orch_mcp.config import OrchConfig
from orch_mcp.redis_client import Redis
from orch_mcp.server import PROGRESS_INTERVAL_S, create_server
from orch_mcp.sessions import init_session

Progress = tuple[float, float | None, str | None]


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Progress] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message))


@pytest.mark.parametrize(
    ("role", "tool", "what"), [("chocobo", "wait_for_task", "task"), ("moogle", "wait_for_report", "report")]
)
async def test_progress_while_a_wait_blocks(r: Redis, orch_config: OrchConfig, role: str, tool: str, what: str) -> None:
    cfg = await init_session(r, namespace="test", max_children=1)
    if role == "moogle":  # a task that is queued: its report can still come, so the wait blocks (not "idle")
        await AsyncParent(r, cfg).send_task(1, "for a chocobo that is not there")
    server = create_server(settings(orch_config, role, 1 if role == "chocobo" else None, progress_interval_s=0.2))
    recorder = Recorder()
    with anyio.fail_after(10):
        async with Client(server) as client:
            result = ok(await client.call_tool(tool, {"timeout_s": 1}, progress_callback=recorder))
    assert result["status"] == "timeout"
    assert len(recorder.seen) >= 4, recorder.seen
    values = [p for p, _, _ in recorder.seen]
    assert values == sorted(values) and values[0] < 0.2 and values[-1] <= 1
    assert {total for _, total, _ in recorder.seen} == {1.0}
    assert all(message and message.startswith(f"waiting for a {what}: ") for _, _, message in recorder.seen)


async def test_progress_over_stdio_at_the_default_interval(r: Redis, env_for: dict[str, str]) -> None:
    await init_session(r, namespace="test", max_children=1)
    recorder = Recorder()
    timeout = PROGRESS_INTERVAL_S + 0.5
    with anyio.fail_after(20):
        async with Client(serve_params("chocobo", env_for, "--child-id", "1")) as client:
            result = ok(await client.call_tool("wait_for_task", {"timeout_s": timeout}, progress_callback=recorder))
    assert result["status"] == "timeout"
    values = [p for p, _, _ in recorder.seen]
    assert len(values) >= 2 and values == sorted(values), recorder.seen
    assert values[1] >= PROGRESS_INTERVAL_S - 0.2
    assert recorder.seen[0][1] == timeout
