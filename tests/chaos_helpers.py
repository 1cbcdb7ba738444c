"""Helpers of the chaos tests: real `orch-mcp serve` processes to kill -9, stop and continue, and agent loops.

An `Agent` drives one chocobo server the way an agent's MCP client does: wait_for_task -> work -> report ->
repeat until "shutdown"; when its server dies under it (a kill -9 by the test), it starts the server again
with the same child id. Everything it sees is kept (calls, tasks taken, reports accepted or refused, the
time from a restart to the in-flight task handed back) for the test to count and assert.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp_helpers import serve_params, text

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

#: Runs `python -m orch_mcp ARGS` in the same process after writing its pid, so the test can signal the server.
PID_SHIM = (
    "import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); "
    "os.execv(sys.executable, [sys.executable, '-m', 'orch_mcp', *sys.argv[2:]])"
)


@dataclass
class Served:
    """One running server process and the MCP client connected to it over stdio."""

    name: str
    client: Client
    pid: int
    log: Path
    stopped: bool = False

    def kill(self) -> None:
        """kill -9: nothing of the server's cleanup runs."""
        os.kill(self.pid, signal.SIGKILL)

    def stop(self) -> None:
        """SIGSTOP: the server stalls (its presence renewals too) until `cont`."""
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped = True

    def cont(self) -> None:
        """SIGCONT after `stop`."""
        os.kill(self.pid, signal.SIGCONT)
        self.stopped = False

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's stderr (all its incarnations)."""
        return self.log.read_text(errors="replace")[-chars:]


@asynccontextmanager
async def serve(role: str, env: Mapping[str, str], workdir: Path, name: str, *extra: str) -> AsyncIterator[Served]:
    """Start `orch-mcp serve --role <role> [extra]` as a stdio subprocess and connect a client to it.

    Its stderr goes to `<workdir>/<name>.log` (appended over restarts), its pid to `<name>.pid`.
    """
    pid_file = workdir / f"{name}.pid"
    pid_file.unlink(missing_ok=True)
    params = serve_params(role, env, *extra)
    params.args = ["-c", PID_SHIM, str(pid_file), *params.args[2:]]  # ["-m", "orch_mcp", "serve", ...] -> shim
    log_path = workdir / f"{name}.log"
    with log_path.open("a") as log:
        log.write(f"---- {name} starts\n")
        log.flush()
        try:
            async with Client(stdio_client(params, errlog=log)) as client:
                served = Served(name, client, int(pid_file.read_text()), log_path)
                try:
                    yield served
                finally:
                    if served.stopped:  # a stopped process would not exit when its stdin closes
                        served.cont()
        except BaseExceptionGroup as group:  # the client's task groups wrap what the test raised: show it plainly
            lone = _lone(group)
            if lone is group:
                raise
            raise lone from None


def _lone(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside nested single-exception groups (the group itself if there are several)."""
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup) and len(found.exceptions) == 1:
        found = found.exceptions[0]
    return found if isinstance(found, Exception) else group


def connection_closed(exc: MCPError) -> bool:
    """True if the error is the client's "the server went away" (its process died)."""
    return "connection closed" in str(exc).lower()


def unreachable(message: str | None) -> bool:
    """True if a tool error says Redis cannot be reached (DESIGN decision 9)."""
    return message is not None and "unreachable" in message.lower()


@dataclass
class Call:
    """One tool call an agent made, and its answer."""

    tool: str
    args: dict[str, Any]
    started: float
    ended: float = 0.0
    data: dict[str, Any] | None = None
    #: The text the model reads (of an answer or an error).
    text: str = ""
    error: str | None = None
    #: The server died during the call (the client saw its connection close).
    crashed: bool = False

    @property
    def took_s(self) -> float:
        return self.ended - self.started


async def call(client: Client, tool: str, args: dict[str, Any]) -> Call:
    """Call `tool`; an error answer or a dead server is recorded in the Call, never raised."""
    made = Call(tool, args, anyio.current_time())
    try:
        result = await client.call_tool(tool, args)
    except MCPError as exc:
        if not connection_closed(exc):
            raise
        made.crashed, made.error = True, str(exc)
    else:
        made.text = text(result)
        if result.is_error:
            made.error = made.text
        else:
            made.data = result.structured_content
    made.ended = anyio.current_time()
    return made


@dataclass
class Kill:
    """A kill -9 of an agent's server while it held a task."""

    child_id: int
    task_id: str
    at: float
    #: What the task's record said right after the kill (state, delivery_count), read by the test.
    record: tuple[str, int] | None = None


@dataclass
class Agent:
    """One chocobo agent: its server process and the loop its MCP client drives (see the module docstring)."""

    child_id: int
    env: Mapping[str, str]
    workdir: Path
    session_id: str
    #: Seconds of simulated work per task (uniform in this range): the window a kill -9 lands in.
    work_s: tuple[float, float] = (0.05, 0.2)
    wait_s: float = 15.0
    #: Start the server again after a kill -9 (False: the child is gone for good).
    restart: bool = True
    rng: random.Random = field(default_factory=random.Random)
    #: Told (agent, task_id) each time the agent takes a task, before it starts working on it.
    on_took: Callable[[Agent, str], None] | None = None
    #: Told each call as it is answered.
    on_call: Callable[[Agent, Call], None] | None = None

    served: Served | None = None
    incarnations: int = 0
    #: The task taken and not yet reported (None between tasks): kill -9 only lands while this is set.
    holding: str | None = None
    calls: list[Call] = field(default_factory=list)
    taken: list[tuple[str, int | None]] = field(default_factory=list)
    #: Task id -> times the agent finished working on it (and went on to report it).
    completed: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    refused: list[tuple[str, str]] = field(default_factory=list)
    wait_errors: list[str] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    #: Seconds from starting the server again to its first wait_for_task handing back the task held at the kill.
    handbacks: list[float] = field(default_factory=list)
    #: What the first wait after a restart answered, when it was not the task held at the kill.
    handback_misses: list[str] = field(default_factory=list)
    #: Set once the server restarted after the latest kill has answered its first wait_for_task.
    back: anyio.Event = field(default_factory=anyio.Event)
    finished: anyio.Event = field(default_factory=anyio.Event)
    _work: anyio.CancelScope | None = None
    _killed: Kill | None = None

    @property
    def name(self) -> str:
        return f"chocobo{self.child_id}"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    async def run(self) -> None:
        """Serve until a shutdown; after a kill -9, start the server again (if `restart`) as an agent's client would."""
        try:
            while True:
                started = anyio.current_time()
                expect = self._killed.task_id if self._killed is not None else None
                self._killed = None
                async with serve(
                    "chocobo",
                    self.env,
                    self.workdir,
                    self.name,
                    "--child-id",
                    str(self.child_id),
                    "--session-id",
                    self.session_id,
                ) as served:
                    self.served = served
                    self.incarnations += 1
                    try:
                        outcome = await self._loop(served, expect, started)
                    finally:
                        self.served = None
                if outcome == "shutdown" or not self.restart:
                    return
        finally:
            self.finished.set()

    def kill(self) -> Kill | None:
        """kill -9 the server if it holds a task right now (and cut the agent's work short); None if it holds none."""
        if self.served is None or self.holding is None or self._killed is not None:
            return None
        killed = Kill(self.child_id, self.holding, anyio.current_time())
        self._killed = killed
        self.back = anyio.Event()
        self.served.kill()
        if self._work is not None:
            self._work.cancel()
        self.kills.append(killed)
        return killed

    async def _call(self, served: Served, tool: str, args: dict[str, Any]) -> Call:
        made = await call(served.client, tool, args)
        self.calls.append(made)
        if self.on_call is not None:
            self.on_call(self, made)
        if made.crashed and self._killed is None:
            raise AssertionError(f"{self.name}'s server died by itself during {tool}:\n{served.log_tail()}")
        return made

    async def _loop(self, served: Served, expect: str | None, started: float) -> str:
        """One incarnation: "shutdown" when told to stop, "killed" after a kill -9."""
        first = expect is not None
        while True:
            made = await self._call(served, "wait_for_task", {"timeout_s": self.wait_s})
            if made.crashed:
                return "killed"
            if first and (made.error is not None or made.data is None or made.data["status"] != "task"):
                self.handback_misses.append(f"first wait after the restart answered {made.error or made.data}")
                first = False
                self.back.set()
            if made.error is not None:
                self.wait_errors.append(made.error)
                await anyio.sleep(0.25)  # an agent's back-off before it calls again after an error
                continue
            assert made.data is not None
            if made.data["status"] == "shutdown":
                return "shutdown"
            if made.data["status"] != "task":
                continue
            task = made.data["task"]
            task_id: str = task["task_id"]
            self.taken.append((task_id, task.get("delivery_count")))
            if first:
                first = False
                if task_id == expect:
                    self.handbacks.append(anyio.current_time() - started)
                else:
                    self.handback_misses.append(f"first task after the restart was {task_id}, not {expect}")
                self.back.set()
            self.holding = task_id
            if self.on_took is not None:
                self.on_took(self, task_id)
            with anyio.CancelScope() as self._work:
                # The agent's work on the task (simulated by its duration): the window a kill -9 lands in.
                await anyio.sleep(self.rng.uniform(*self.work_s))
            self._work = None
            self.holding = None
            if self._killed is not None:
                return "killed"
            self.completed[task_id] += 1
            if await self._report(served, task_id) == "killed":
                return "killed"

    async def _report(self, served: Served, task_id: str) -> str:
        while True:
            args = {"task_id": task_id, "result": f"{task_id} done by {self.name}#{self.incarnations}"}
            made = await self._call(served, "report", args)
            if made.crashed:
                return "killed"
            if made.error is None:
                assert made.data is not None
                if made.data["accepted"]:
                    self.accepted[task_id] += 1
                elif made.data.get("duplicate"):
                    self.duplicates[task_id] += 1
                return "reported"
            if unreachable(made.error):
                await anyio.sleep(0.25)  # retry back-off of an agent whose tool says Redis is down
                continue
            self.refused.append((task_id, made.error))
            return "refused"


def offline_children(answer: dict[str, Any]) -> set[int]:
    """The child ids a wait_for_report answer says have been offline a while with work queued or in flight."""
    found: set[int] = set()
    for entry in answer.get("offline") or []:
        found.add(int(entry["child_id"]) if isinstance(entry, dict) else int(entry))
    return found


def p50_max(values: list[float]) -> str:
    """'p50 X s, max Y s' of some durations (or 'none')."""
    if not values:
        return "none"
    return f"p50 {statistics.median(values):.2f} s, max {max(values):.2f} s"
