"""A real crash: a child process SIGKILLed right after taking a task; restarted under the same id, it gets it back."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteReceiveStream, Process

from orch_mcp import delivery
from orch_mcp.errors import ConflictError
from orch_mcp.redis_client import Redis
from orch_mcp.sessions import SessionConfig, init_session

HELPER = Path(__file__).with_name("crash_child.py")
LIMIT = 1 << 20


class Lines:
    """Reads a child's stdout line by line; every read is bounded by a timeout, never a sleep."""

    def __init__(self, stream: ByteReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def expect(self, prefix: str, timeout: float = 20) -> str:
        with anyio.fail_after(timeout):
            while True:
                line, newline, rest = self.buffer.partition(b"\n")
                if newline:
                    self.buffer = rest
                    text = line.decode().strip()
                    assert text.startswith(prefix), f"expected {prefix!r}, the child said {text!r}"
                    return text[len(prefix) :].strip()
                self.buffer += await self.stream.receive()


async def start_child(cfg: SessionConfig, url: str, env: dict[str, str], action: str) -> Process:
    return await anyio.open_process(
        [sys.executable, str(HELPER), url, cfg.session_id, "1", action],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None,  # shown by pytest if the test fails
    )


@pytest.mark.parametrize("mode", ["summoner", "normal"])
async def test_sigkilled_child_gets_its_task_back(r: Redis, redis_url: str, env_for: dict[str, str], mode: str) -> None:
    cfg = await init_session(r, namespace="test", mode=mode, max_children=2)  # type: ignore[arg-type]
    task = await delivery.send_task(r, cfg, 1, "survive a crash", {"attempt": "any"}, max_bytes=LIMIT)
    later = await delivery.send_task(r, cfg, 1, "the next one", max_bytes=LIMIT)

    first = await start_child(cfg, redis_url, env_for, "hang")
    killed = False
    try:
        lines = Lines(first.stdout)  # type: ignore[arg-type]
        await lines.expect("CLAIMED")
        assert await lines.expect("TOOK") == task.task_id
        first.kill()  # SIGKILL: no cleanup of any kind runs in the child
        killed = True
    finally:
        with anyio.fail_after(10):
            # Once only: a second kill() of a child that died but is not reaped yet reaps it itself (Popen.send_signal
            # polls first), and asyncio's child watcher then reports exit status 255 instead of -SIGKILL.
            if not killed:
                first.kill()
            await first.wait()
        await first.aclose()
    assert first.returncode == -signal.SIGKILL

    record = await delivery.get_task(r, cfg, task.task_id)
    assert (record.state, record.delivery_count) == ("working", 1)
    assert await r.lrange(cfg.keys.inflight(1), 0, -1) == [task.to_json()]
    # A killed process cannot give up its presence claim: until it lapses, a new server for child 1 is refused.
    assert await r.exists(cfg.keys.presence(1))
    with pytest.raises(ConflictError, match="already served"):
        await delivery.claim_presence(r, cfg, 1, "an impatient restart")
    # The claim lapses PRESENCE_TTL_S (15 s) after the last renewal. Rather than wait that out, remove the key:
    # that is exactly the state Redis reaches by itself then, and the restarted child below claims the id the
    # normal way (claim=True), as a restarted `orch-mcp serve --role chocobo` would.
    await r.delete(cfg.keys.presence(1))

    second = await start_child(cfg, redis_url, env_for, "report")
    try:
        lines = Lines(second.stdout)  # type: ignore[arg-type]
        await lines.expect("CLAIMED")
        assert await lines.expect("TOOK") == task.task_id  # the in-flight task first, before `later`
        assert await lines.expect("REPORTED") == "True"
        with anyio.fail_after(20):
            assert await second.wait() == 0
    finally:
        if second.returncode is None:
            second.kill()
            with anyio.fail_after(10):
                await second.wait()
        await second.aclose()

    record = await delivery.get_task(r, cfg, task.task_id)
    assert (record.state, record.delivery_count) == ("done", 2)
    assert record.result is not None and record.result.startswith("done by pid ")
    assert await r.llen(cfg.keys.inflight(1)) == 0
    assert not await r.exists(cfg.keys.presence(1))  # the clean exit released it
    found = await delivery.take_report(r, cfg, 5)
    assert found is not None and (found[0].task_id, found[0].result) == (task.task_id, record.result)
    assert (await delivery.get_task(r, cfg, later.task_id)).state == "queued"  # still waiting its turn
