"""Bad input, then good work: a table of bad calls and bad bytes, each followed by a task that must still go through.

Every bad call through a real tool (in-process MCP servers of every role) must be a tool error whose
text says what was wrong and what to do. Every bad message pushed raw onto a queue (RPUSH, as
redis-cli or a buggy agent would) must land in the session's dead letters by its exact bytes, with
the reason, and leave no trace on any list. After each case a good task must reach chocobo 1 and
its report must reach the moogle, in that order, as if nothing had happened; `session_status` and
`orch-mcp status --json` keep working with garbage on every queue. Both session modes (argument
checks, which no queue sees, in one).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import pytest
import pytest_asyncio
from cli_helpers import orch
from mcp import Client
from mcp_helpers import ok, settings, text
from mcp_types import CallToolResult

from orch_mcp import delivery
from orch_mcp.config import OrchConfig, RedisConfig
from orch_mcp.embedded import EmbeddedRedis
from orch_mcp.messages import ReportMessage, ShutdownMessage, StatusMessage, TaskMessage
from orch_mcp.redis_client import Redis, create_async_client
from orch_mcp.server import create_server
from orch_mcp.sessions import (
    SessionConfig,
    cleanup_session,
    current_session,
    init_session,
    list_sessions,
    session_keys,
)

NS = "test"
#: ORCH_MAX_MESSAGE_BYTES for these servers: small, so oversized messages are cheap to make.
LIMIT = 4096
Mode = Literal["summoner", "normal"]
BOTH: tuple[Mode, ...] = ("summoner", "normal")
ONE: tuple[Mode, ...] = (
    "summoner",
)  # argument checks that happen before any queue is touched: the mode changes nothing
#: A bound on every wait: a case that wedges a queue fails here instead of hanging.
WAIT_S = 5


# ---------------------------------------------------------------- the team

#: Every test of this module runs on one event loop, so the servers below live across the tests.
pytestmark = pytest.mark.asyncio(loop_scope="module")


async def cleanup_everything(r: Redis) -> None:
    """No session left in the test's namespaces (as before the summoner's first init_session)."""
    for ns in (NS, "other"):
        for cfg in await list_sessions(r, namespace=ns):
            await cleanup_session(r, cfg)
    await r.delete(f"{NS}:current")


@dataclass
class Servers:
    """A summoner, a moogle and chocobos 1 and 2: in-process servers shared by the tests of this module."""

    r: Redis
    clients: dict[str, Client]

    @asynccontextmanager
    async def team(self, mode: Mode) -> AsyncIterator[Team]:
        """The servers on a fresh session of `mode` (they move to it at their next call); removed afterwards."""
        with anyio.fail_after(30):
            ok(await self.clients["summoner"].call_tool("init_session", {"max_children": 2, "mode": mode}))
            team = Team(self.r, mode, self.clients, await current_session(self.r, namespace=NS))
            try:
                yield team
            finally:
                with anyio.CancelScope(shield=True):
                    await cleanup_everything(self.r)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def servers(redis_server: EmbeddedRedis) -> AsyncIterator[Servers]:
    """The servers, opened and closed by one task of their own (pytest-asyncio sets a module fixture up and tears it
    down in different tasks, and the clients' cancel scopes must be left in the task that entered them)."""
    orch = OrchConfig(redis=RedisConfig(url=redis_server.url), namespace=NS, max_message_bytes=LIMIT)
    roles = {"summoner": ("summoner", None), "moogle": ("moogle", None), "one": ("chocobo", 1), "two": ("chocobo", 2)}
    ready: asyncio.Future[Servers] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    async def own() -> None:
        try:
            async with AsyncExitStack() as stack:
                r = create_async_client(orch.redis)
                stack.push_async_callback(r.aclose)
                clients = {
                    who: await stack.enter_async_context(
                        Client(create_server(settings(orch, role, child, session_check_s=0)))
                    )
                    for who, (role, child) in roles.items()
                }
                ready.set_result(Servers(r, clients))
                await stop.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    owner = asyncio.create_task(own())
    try:
        with anyio.fail_after(30):
            found = await ready
        yield found
    finally:
        stop.set()
        await owner


@dataclass
class Team:
    """The shared servers on one session of `mode`."""

    r: Redis
    mode: Mode
    clients: dict[str, Client]
    cfg: SessionConfig
    #: Tasks a case left on child 1's queue on purpose: they come before the good task, in this order.
    pending: list[str] = field(default_factory=list)

    async def call(self, who: str, tool: str, args: dict[str, Any]) -> CallToolResult:
        with anyio.fail_after(WAIT_S + 5):
            return await self.clients[who].call_tool(tool, args)

    async def send(self, child_id: int, prompt: str = "setup task") -> str:
        tid: str = ok(await self.call("moogle", "send_task", {"child_id": child_id, "prompt": prompt}))["task_id"]
        return tid

    async def take(self, who: str, expected: str) -> None:
        got = ok(await self.call(who, "wait_for_task", {"timeout_s": WAIT_S}))
        assert got["status"] == "task" and got["task"]["task_id"] == expected, got

    async def working(self, child_id: int) -> str:
        tid = await self.send(child_id)
        await self.take("one" if child_id == 1 else "two", tid)
        return tid

    async def done(self, child_id: int) -> str:
        """A task sent, taken, reported and its report collected by the moogle."""
        tid = await self.working(child_id)
        ok(await self.call("one" if child_id == 1 else "two", "report", {"task_id": tid, "result": "setup result"}))
        got = ok(await self.call("moogle", "wait_for_report", {"timeout_s": WAIT_S}))
        assert got["status"] == "report" and got["report"]["task_id"] == tid, got
        return tid

    async def settle(self) -> None:
        """Every server resolves the session now (a session created later in the namespace is not theirs)."""
        ok(await self.call("moogle", "session_status", {}))
        for who in ("one", "two"):  # a report of an unknown task: an error, once the session is resolved
            assert "no task" in text(await self.call(who, "report", {"task_id": "f" * 32, "result": "r"}))

    async def record_msg(self, task_id: str) -> str:
        """The task message its record holds, exactly."""
        child = await delivery.find_child(self.r, self.cfg, task_id)
        raw = await self.r.hget(self.cfg.keys.records(child), task_id)
        assert raw is not None
        msg: str = json.loads(raw)["msg"]
        return msg

    async def new_session(self) -> None:
        """The summoner starts a new session (the servers move to it at their next call)."""
        ok(await self.call("summoner", "init_session", {"max_children": 2, "mode": self.mode}))
        self.cfg = await current_session(self.r, namespace=NS)
        self.pending.clear()


async def round_trip(team: Team, label: str) -> None:
    """A good task reaches chocobo 1 (after the tasks a case left on purpose) and its report reaches the moogle."""
    good = await team.send(1, f"good task after {label}")
    expected = [*team.pending, good]
    for tid in expected:
        got = ok(await team.call("one", "wait_for_task", {"timeout_s": WAIT_S}))
        assert got["status"] == "task", f"after {label}, chocobo 1 got no task: {got}"
        assert got["task"]["task_id"] == tid, f"after {label}, chocobo 1 got {got['task']}, not {tid}"
        ok(await team.call("one", "report", {"task_id": tid, "result": f"result of {tid}"}))
    for tid in expected:
        got = ok(await team.call("moogle", "wait_for_report", {"timeout_s": WAIT_S}))
        assert got["status"] == "report", f"after {label}, the moogle got no report: {got}"
        assert got["report"]["task_id"] == tid and got["report"]["result"] == f"result of {tid}", got
    team.pending.clear()


def refused(result: CallToolResult, tool: str, words: tuple[str, ...]) -> str:
    """The text of a tool error that says what was wrong (the words), never a crash or a traceback."""
    body = text(result)
    assert result.is_error, f"{tool} accepted it: {result.structured_content}"
    detail = body.removeprefix(f"Error executing tool {tool}").removeprefix(":").strip()
    assert detail, f"{tool} crashed: the model reads only {body!r}"
    assert "Error executing tool" not in detail and "Traceback" not in body, body
    assert len(body) < 2000, f"an answer of {len(body)} characters: {body[:300]!r}"
    for word in words:
        assert word.lower() in body.lower(), f"{word!r} is not in {body!r}"
    return body


# ---------------------------------------------------------------- bad calls

Args = dict[str, Any] | Callable[[Team], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Call:
    """A bad tool call: who makes it, with what, and the words its error must hold."""

    who: str
    tool: str
    args: Args
    words: tuple[str, ...]
    modes: tuple[Mode, ...] = BOTH
    #: "new_session": the case ends the session; the good work runs in a new one.
    then: str = "same"


def _task_of_child_2(state: str) -> Callable[[Team], Awaitable[str]]:
    async def make(team: Team) -> str:
        if state == "queued":
            return await team.send(2)
        if state == "working":
            return await team.working(2)
        return await team.done(2)

    return make


async def _other_namespace(team: Team) -> tuple[SessionConfig, str]:
    """A session of another namespace with a task in it."""
    other = await init_session(team.r, namespace="other", mode=team.mode, max_children=2)
    task = await delivery.send_task(team.r, other, 1, "theirs", max_bytes=LIMIT)
    return other, task.task_id


async def _older_session_task(team: Team) -> str:
    """A task of another session of this namespace."""
    await team.settle()
    other = await init_session(team.r, namespace=NS, mode=team.mode, max_children=2)
    return (await delivery.send_task(team.r, other, 1, "another session's", max_bytes=LIMIT)).task_id


def with_task(state: str, key: str = "task_id", **rest: Any) -> Args:
    async def args(team: Team) -> dict[str, Any]:
        return {key: await _task_of_child_2(state)(team), **rest}

    return args


def with_cancelled_task(**rest: Any) -> Args:
    async def args(team: Team) -> dict[str, Any]:
        tid = await team.working(2)
        ok(await team.call("moogle", "cancel_task", {"task_id": tid}))
        return {"task_id": tid, **rest}

    return args


def with_other_namespace(key: str, what: str, **rest: Any) -> Args:
    async def args(team: Team) -> dict[str, Any]:
        other, tid = await _other_namespace(team)
        value = {"session": other.session_id, "prefix": other.prefix, "task": tid}[what]
        return {key: value, **rest}

    return args


def with_older_session_task(**rest: Any) -> Args:
    async def args(team: Team) -> dict[str, Any]:
        return {"task_id": await _older_session_task(team), **rest}

    return args


def after_cleanup(args: dict[str, Any], *, working: bool = False, session: bool = False) -> Args:
    """The summoner removes the session first (chocobo 1 holding a task in flight, if `working`); `session` adds
    the removed session's id to the arguments."""

    async def make(team: Team) -> dict[str, Any]:
        tid = await team.working(1) if working else None
        ok(await team.call("summoner", "cleanup_session", {"session_id": team.cfg.session_id}))
        extra = {"task_id": tid} if working else {}
        return {**args, **extra, **({"session_id": team.cfg.session_id} if session else {})}

    return make


def after_expiry(args: dict[str, Any]) -> Args:
    """Every key of the session disappears, as when its TTL runs out."""

    async def make(team: Team) -> dict[str, Any]:
        await team.send(1, "lost with the session")
        await team.r.delete(*session_keys(team.cfg))
        return args

    return make


def the_session(key: str = "session_id") -> Args:
    async def args(team: Team) -> dict[str, Any]:
        return {key: team.cfg.session_id}

    return args


def done_task_of_child_1() -> Args:
    async def args(team: Team) -> dict[str, Any]:
        return {"task_id": await team.done(1)}

    return args


BIG = "x" * (LIMIT + 1)
GONE = ("no longer exists", "ask the summoner")
INVALID_TASK_ID = ("invalid task id", "1-128 characters", "letters, digits")
INVALID_SESSION_ID = ("invalid session id", "1-128 characters")

CALLS: dict[str, Call] = {
    # ---- send_task: child ids
    "send_task child_id 0": Call(
        "moogle", "send_task", {"child_id": 0, "prompt": "x"}, ("child_id", "must be at least 1", "you sent 0"), ONE
    ),
    "send_task child_id -1": Call(
        "moogle", "send_task", {"child_id": -1, "prompt": "x"}, ("child_id", "must be at least 1"), ONE
    ),
    "send_task child_id beyond the session": Call(
        "moogle", "send_task", {"child_id": 3, "prompt": "x"}, ("invalid child id 3", "children 1..2", "pick one")
    ),
    "send_task child_id 10**30": Call(
        "moogle", "send_task", {"child_id": 10**30, "prompt": "x"}, ("invalid child id", "children 1..2")
    ),
    "send_task child_id 1.5": Call(
        "moogle", "send_task", {"child_id": 1.5, "prompt": "x"}, ("child_id", "must be an integer"), ONE
    ),
    "send_task child_id 'one'": Call(
        "moogle", "send_task", {"child_id": "one", "prompt": "x"}, ("child_id", "must be an integer"), ONE
    ),
    "send_task child_id null": Call(
        "moogle", "send_task", {"child_id": None, "prompt": "x"}, ("child_id", "must be an integer"), ONE
    ),
    # ---- send_task: prompt, context, priority
    "send_task empty prompt": Call(
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": ""},
        ("prompt", "at least 1 character", "you sent an empty string"),
        ONE,
    ),
    "send_task no prompt": Call("moogle", "send_task", {"child_id": 1}, ("prompt", "required"), ONE),
    "send_task prompt a list": Call(
        "moogle", "send_task", {"child_id": 1, "prompt": ["x"]}, ("prompt", "must be a string"), ONE
    ),
    "send_task prompt lone surrogate": Call(
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": "a\ud800b"},
        ("prompt", "valid Unicode text", "lone surrogate"),
        ONE,
    ),
    "send_task prompt over the limit": Call(
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": BIG},
        (f"over the limit of {LIMIT} bytes", "ORCH_MAX_MESSAGE_BYTES", "by reference"),
    ),
    "send_task context over the limit": Call(
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": "x", "context": {"blob": BIG}},
        (f"over the limit of {LIMIT} bytes", "by reference"),
    ),
    "send_task context a list": Call(
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": "x", "context": [1, 2]},
        ("context", "must be a JSON object"),
        ONE,
    ),
    "send_task context a string": Call(
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": "x", "context": "not an object"},
        ("context", "must be a JSON object"),
        ONE,
    ),
    "send_task context lone surrogate": Call(
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": "x", "context": {"k": ["\udfff"]}},
        ("context.k[0]", "lone surrogate", "UTF-8"),
        ONE,
    ),
    "send_task priority 10**30": Call(
        "moogle", "send_task", {"child_id": 1, "prompt": "x", "priority": 10**30}, ("priority", "1000000")
    ),
    "send_task priority -10**30": Call(
        "moogle", "send_task", {"child_id": 1, "prompt": "x", "priority": -(10**30)}, ("priority", "-1000000")
    ),
    "send_task priority 'high'": Call(
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": "x", "priority": "high"},
        ("priority", "must be an integer"),
        ONE,
    ),
    # ---- get_task, cancel_task: ids
    "get_task empty id": Call("moogle", "get_task", {"task_id": ""}, INVALID_TASK_ID, ONE),
    "get_task 10 kB id": Call(
        "moogle", "get_task", {"task_id": "a" * 10_000}, (*INVALID_TASK_ID, "10000 characters"), ONE
    ),
    "get_task glob id": Call("moogle", "get_task", {"task_id": "t*"}, (*INVALID_TASK_ID, "glob"), ONE),
    "get_task braces id": Call("moogle", "get_task", {"task_id": "{t}"}, (*INVALID_TASK_ID, "braces"), ONE),
    "get_task NUL in id": Call("moogle", "get_task", {"task_id": "a\x00b"}, INVALID_TASK_ID, ONE),
    "get_task newline in id": Call("moogle", "get_task", {"task_id": "a\nb"}, INVALID_TASK_ID, ONE),
    "get_task unknown id": Call("moogle", "get_task", {"task_id": "f" * 32}, ("no task", "check the id")),
    "get_task another namespace's task": Call(
        "moogle", "get_task", with_other_namespace("task_id", "task"), ("no task",)
    ),
    "get_task another session's task": Call("moogle", "get_task", with_older_session_task(), ("no task",)),
    "cancel_task unknown id": Call("moogle", "cancel_task", {"task_id": "f" * 32}, ("no task",)),
    "cancel_task glob id": Call("moogle", "cancel_task", {"task_id": "?"}, INVALID_TASK_ID, ONE),
    "cancel_task a done task": Call(
        "moogle", "cancel_task", done_task_of_child_1(), ("already done", "can no longer be cancelled")
    ),
    # ---- shutdown, waits
    "shutdown child_id 0": Call("moogle", "shutdown", {"child_id": 0}, ("child_id", "must be at least 1"), ONE),
    "shutdown child_id beyond the session": Call(
        "moogle", "shutdown", {"child_id": 3}, ("invalid child id 3", "children 1..2")
    ),
    "shutdown child_id 10**30": Call("moogle", "shutdown", {"child_id": 10**30}, ("invalid child id", "children 1..2")),
    "shutdown now 'maybe'": Call("moogle", "shutdown", {"now": "maybe"}, ("now", "must be true or false"), ONE),
    "wait_for_report timeout -1": Call(
        "moogle", "wait_for_report", {"timeout_s": -1}, ("timeout_s", "must be at least 0"), ONE
    ),
    "wait_for_report timeout 51": Call(
        "moogle", "wait_for_report", {"timeout_s": 51}, ("timeout_s", "must be at most 50"), ONE
    ),
    "wait_for_report timeout 10**30": Call(
        "moogle", "wait_for_report", {"timeout_s": 10**30}, ("timeout_s", "must be at most 50"), ONE
    ),
    "wait_for_report timeout 'soon'": Call(
        "moogle", "wait_for_report", {"timeout_s": "soon"}, ("timeout_s", "must be a number"), ONE
    ),
    "wait_for_task timeout -1": Call(
        "one", "wait_for_task", {"timeout_s": -1}, ("timeout_s", "must be at least 0"), ONE
    ),
    "wait_for_task timeout 10**9": Call(
        "one", "wait_for_task", {"timeout_s": 10**9}, ("timeout_s", "must be at most 50"), ONE
    ),
    "wait_for_task timeout a list": Call(
        "one", "wait_for_task", {"timeout_s": []}, ("timeout_s", "must be a number"), ONE
    ),
    # ---- session ids (moogle and summoner)
    "moogle session_status empty id": Call("moogle", "session_status", {"session_id": ""}, ("session_id",)),
    "moogle session_status id with a space": Call(
        "moogle", "session_status", {"session_id": "a b"}, INVALID_SESSION_ID, ONE
    ),
    "moogle session_status another namespace's id": Call(
        "moogle",
        "session_status",
        with_other_namespace("session_id", "session"),
        ("not found in namespace 'test'", "list_sessions"),
    ),
    "moogle session_status another namespace's prefix": Call(
        "moogle",
        "session_status",
        with_other_namespace("session_id", "prefix"),
        ("belongs to namespace 'other'", "list_sessions"),
    ),
    "get_session empty id": Call("summoner", "get_session", {"session_id": ""}, ("session_id",)),
    "cleanup_session empty id": Call("summoner", "cleanup_session", {"session_id": ""}, ("session_id",)),
    "summoner session_status empty id": Call("summoner", "session_status", {"session_id": ""}, ("session_id",)),
    "get_session 10 kB id": Call(
        "summoner", "get_session", {"session_id": "s" * 10_000}, (*INVALID_SESSION_ID, "10000 characters"), ONE
    ),
    "get_session glob id": Call("summoner", "get_session", {"session_id": "*"}, (*INVALID_SESSION_ID, "glob"), ONE),
    "get_session NUL id": Call("summoner", "get_session", {"session_id": "\x00"}, INVALID_SESSION_ID, ONE),
    "cleanup_session glob id": Call("summoner", "cleanup_session", {"session_id": "*"}, INVALID_SESSION_ID),
    "cleanup_session glob in braces": Call(
        "summoner", "cleanup_session", {"session_id": "{*}"}, ("invalid prefix", "glob")
    ),
    "cleanup_session glob prefix": Call(
        "summoner", "cleanup_session", {"session_id": "summoner:{*}"}, ("invalid prefix", "glob")
    ),
    "cleanup_session empty braces": Call("summoner", "cleanup_session", {"session_id": "{}"}, ("invalid prefix",)),
    "get_session another namespace's id": Call(
        "summoner",
        "get_session",
        with_other_namespace("session_id", "session"),
        ("not found in namespace 'test'", "list_sessions"),
    ),
    "cleanup_session another namespace's prefix": Call(
        "summoner",
        "cleanup_session",
        with_other_namespace("session_id", "prefix"),
        ("belongs to namespace 'other'", "list_sessions"),
    ),
    "get_session unknown id": Call(
        "summoner", "get_session", {"session_id": "nope"}, ("not found", "list_sessions", "init_session")
    ),
    # ---- init_session
    "init_session max_children 0": Call(
        "summoner", "init_session", {"max_children": 0}, ("max_children", "must be at least 1"), ONE
    ),
    "init_session max_children 10**30": Call(
        "summoner", "init_session", {"max_children": 10**30}, ("max_children", "must be at most"), ONE
    ),
    "init_session mode 'fast'": Call(
        "summoner", "init_session", {"mode": "fast"}, ("mode", "'summoner' or 'normal'"), ONE
    ),
    "init_session ttl_s 0": Call("summoner", "init_session", {"ttl_s": 0}, ("ttl_s", "must be at least 1"), ONE),
    "init_session ttl_s 10**30": Call("summoner", "init_session", {"ttl_s": 10**30}, ("ttl_s",), ONE),
    # ---- report
    "report unknown task": Call(
        "one",
        "report",
        {"task_id": "f" * 32, "result": "r"},
        ("no task", "report only task ids you got from wait_for_task"),
    ),
    "report another child's task": Call(
        "one",
        "report",
        with_task("working", result="r"),
        ("belongs to child 2", "not to you (child 1)", "only your own tasks"),
    ),
    "report a task still queued": Call(
        "two", "report", with_task("queued", result="r"), ("not in flight for you", "queued", "call wait_for_task")
    ),
    "report a cancelled task": Call(
        "two", "report", with_cancelled_task(result="r"), ("cancelled", "call wait_for_task")
    ),
    "report another namespace's task": Call(
        "one", "report", with_other_namespace("task_id", "task", result="r"), ("no task",)
    ),
    "report another session's task": Call("one", "report", with_older_session_task(result="r"), ("no task",)),
    "report empty id": Call("one", "report", {"task_id": "", "result": "r"}, INVALID_TASK_ID, ONE),
    "report 10 kB id": Call(
        "one", "report", {"task_id": "t" * 10_000, "result": "r"}, (*INVALID_TASK_ID, "10000 characters"), ONE
    ),
    "report glob id": Call("one", "report", {"task_id": "t?", "result": "r"}, INVALID_TASK_ID, ONE),
    "report braces id": Call("one", "report", {"task_id": "{t}", "result": "r"}, INVALID_TASK_ID, ONE),
    "report NUL in id": Call("one", "report", {"task_id": "t\x00", "result": "r"}, INVALID_TASK_ID, ONE),
    "report result over the limit": Call(
        "one",
        "report",
        {"task_id": "f" * 32, "result": BIG},
        (f"over the limit of {LIMIT} bytes", "write it to a file"),
    ),
    "report result lone surrogate": Call(
        "one", "report", {"task_id": "f" * 32, "result": "\ud83d"}, ("result", "lone surrogate", "UTF-8"), ONE
    ),
    "report result a number": Call(
        "one", "report", {"task_id": "f" * 32, "result": 5}, ("result", "must be a string", "you sent 5"), ONE
    ),
    "report no result": Call("one", "report", {"task_id": "f" * 32}, ("result", "required"), ONE),
    "report status 'ok'": Call(
        "one", "report", {"task_id": "f" * 32, "result": "r", "status": "ok"}, ("status", "'done' or 'failed'"), ONE
    ),
    # ---- an argument the tool does not take (the SDK would drop it and run the call without it)
    "send_task unknown argument": Call(
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": "x", "child": 2},
        ("unknown argument 'child'", "send_task takes child_id, prompt"),
        ONE,
    ),
    "shutdown unknown arguments": Call(
        "moogle", "shutdown", {"child_id": 1, "when": "now", "why": "done"}, ("unknown arguments 'when', 'why'",), ONE
    ),
    # ---- a tool the role does not list
    "moogle calls init_session": Call("moogle", "init_session", {}, ("init_session",), ONE),
    "moogle calls report": Call("moogle", "report", {"task_id": "t", "result": "r"}, ("report",), ONE),
    "chocobo calls send_task": Call("one", "send_task", {"child_id": 1, "prompt": "x"}, ("send_task",), ONE),
    "chocobo calls session_status": Call("one", "session_status", {}, ("session_status",), ONE),
    "summoner calls wait_for_report": Call("summoner", "wait_for_report", {"timeout_s": 0}, ("wait_for_report",), ONE),
    "summoner calls send_task": Call("summoner", "send_task", {"child_id": 1, "prompt": "x"}, ("send_task",), ONE),
    # ---- sessions that are gone
    "send_task after cleanup": Call(
        "moogle", "send_task", after_cleanup({"child_id": 1, "prompt": "x"}), GONE, then="new_session"
    ),
    "wait_for_report after cleanup": Call(
        "moogle", "wait_for_report", after_cleanup({"timeout_s": 0}), GONE, then="new_session"
    ),
    "get_task after cleanup": Call(
        "moogle", "get_task", after_cleanup({"task_id": "f" * 32}), GONE, then="new_session"
    ),
    "moogle session_status after cleanup": Call(
        "moogle", "session_status", after_cleanup({}), GONE, then="new_session"
    ),
    "wait_for_task after cleanup": Call(
        "one", "wait_for_task", after_cleanup({"timeout_s": 0}), GONE, then="new_session"
    ),
    "report after cleanup": Call(
        "one", "report", after_cleanup({"result": "r"}, working=True), GONE, then="new_session"
    ),
    "get_session after cleanup": Call(
        "summoner",
        "get_session",
        after_cleanup({"session_id": "current"}),
        ("was cleaned up", "create a new one with init_session"),
        then="new_session",
    ),
    "send_task after expiry": Call(
        "moogle",
        "send_task",
        after_expiry({"child_id": 1, "prompt": "x"}),
        GONE,
        then="new_session",
    ),
    "wait_for_task after expiry": Call(
        "one", "wait_for_task", after_expiry({"timeout_s": 0}), GONE, then="new_session"
    ),
    "cleanup_session twice": Call(
        "summoner",
        "cleanup_session",
        after_cleanup({}, session=True),
        ("not found", "list_sessions"),
        then="new_session",
    ),
}


XFAIL_CALLS: dict[str, str] = {}


def _call_params() -> list[Any]:
    params: list[Any] = []
    for name, case in CALLS.items():
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL_CALLS[name])] if name in XFAIL_CALLS else []
        params.extend(pytest.param(mode, name, id=f"{mode}-{name}", marks=marks) for mode in case.modes)
    return params


@pytest.mark.parametrize(("mode", "name"), _call_params())
async def test_a_bad_call_is_a_tool_error_then_good_work_goes_through(servers: Servers, mode: Mode, name: str) -> None:
    case = CALLS[name]
    async with servers.team(mode) as team:
        r = team.r
        session = team.cfg
        args = case.args if isinstance(case.args, dict) else await case.args(team)
        refused(await team.call(case.who, case.tool, args), case.tool, case.words)
        if case.then == "new_session":
            assert await keys_of(r, session) == [], "a server re-created keys of a session that is gone"
            await team.new_session()
        else:
            assert await r.exists(session.keys.config), "a refused call removed the session"
        await round_trip(team, name)
        if case.then == "new_session":
            assert await keys_of(r, session) == [], "a server re-created keys of a session that is gone"


async def keys_of(r: Redis, cfg: SessionConfig) -> list[str]:
    """The keys under the session's prefix (its braces are no glob characters; nothing else in it is)."""
    return [key async for key in r.scan_iter(match=f"{cfg.prefix}:*")]


# ---------------------------------------------------------------- bad bytes on the queues


@dataclass(frozen=True)
class Raw:
    """Bytes pushed raw onto a list of the session, and the words the dead letter's reason must hold."""

    where: str  # tasks | task_inflight | reports | reports_inflight | doorbell
    data: bytes | Callable[[Team], Awaitable[bytes]]
    reason: tuple[str, ...]
    modes: tuple[Mode, ...] = BOTH


def task_json(team: Team, **changes: Any) -> dict[str, Any]:
    data = TaskMessage.create("raw task", team.cfg.session_id, 1).to_dict()
    data.update(changes)
    return data


def task_with(**changes: Any) -> Callable[[Team], Awaitable[bytes]]:
    async def make(team: Team) -> bytes:
        return json.dumps(task_json(team, **changes)).encode()

    return make


def task_encoded(encoding: str) -> Callable[[Team], Awaitable[bytes]]:
    async def make(team: Team) -> bytes:
        return json.dumps(task_json(team), ensure_ascii=False).encode(encoding)

    return make


def task_text(edit: Callable[[str], str]) -> Callable[[Team], Awaitable[bytes]]:
    """A task message as JSON text, edited as text (for what json.dumps cannot write)."""

    async def make(team: Team) -> bytes:
        return edit(json.dumps(task_json(team))).encode()

    return make


def report_with(state: str | None, **changes: Any) -> Callable[[Team], Awaitable[bytes]]:
    """A report of child 1 (or as changed) on a task of child 2 in `state`, or on an unknown task."""

    async def make(team: Team) -> bytes:
        tid = await _task_of_child_2(state)(team) if state else "f" * 32
        data = ReportMessage.create(tid, team.cfg.session_id, 1, result="raw result").to_dict()
        data.update(changes)
        return json.dumps(data).encode()

    return make


def own_report(encoding: str = "utf-8", **changes: Any) -> Callable[[Team], Awaitable[bytes]]:
    """A report on a task of child 2 that is done (its real report already collected), as changed."""

    async def make(team: Team) -> bytes:
        tid = await _task_of_child_2("done")(team)
        data = ReportMessage.create(tid, team.cfg.session_id, 2, result="setup result").to_dict()
        data.update(changes)
        return json.dumps(data).encode(encoding)

    return make


def misrouted(team_state: str) -> Callable[[Team], Awaitable[bytes]]:
    async def make(team: Team) -> bytes:
        tid = await _task_of_child_2(team_state)(team)
        return json.dumps(task_json(team, task_id=tid)).encode()

    return make


async def _other_session_task(team: Team) -> bytes:
    other, _ = await _other_namespace(team)
    return TaskMessage.create("theirs", other.session_id, 1).to_json().encode()


async def _other_session_report(team: Team) -> bytes:
    other, tid = await _other_namespace(team)
    return ReportMessage.create(tid, other.session_id, 1, result="theirs").to_json().encode()


async def _finished_copy(team: Team) -> bytes:
    """The exact message of a task of child 1 that is done, pushed again."""
    return (await team.record_msg(await team.done(1))).encode()


async def _forged_copy(team: Team) -> bytes:
    """A task of child 1 waits in its queue; a message with its id but another prompt is pushed."""
    tid = await team.send(1, "the genuine task")
    team.pending.append(tid)
    return json.dumps({**json.loads(await team.record_msg(tid)), "prompt": "a forged prompt"}).encode()


async def _forged_report(team: Team) -> bytes:
    """A task of child 2 was reported "setup result"; a report of it with another result is pushed."""
    tid = await _task_of_child_2("done")(team)
    return ReportMessage.create(tid, team.cfg.session_id, 2, result="a forged result").to_json().encode()


async def _oversized_result(team: Team) -> bytes:
    tid = await _task_of_child_2("done")(team)
    return ReportMessage.create(tid, team.cfg.session_id, 2, result=BIG).to_json().encode()


async def _latin1_task(team: Team) -> bytes:
    return json.dumps(task_json(team, prompt="café crème"), ensure_ascii=False).encode("latin-1")


async def _status(team: Team) -> bytes:
    return StatusMessage.create(team.cfg.session_id, "working", child_id=1).to_json().encode()


async def _shutdown(team: Team, session_id: str, child_id: int | None) -> bytes:
    return ShutdownMessage.create(session_id, child_id=child_id).to_json().encode()


def _shutdown_of(session_id: str | None, child_id: int | None) -> Callable[[Team], Awaitable[bytes]]:
    async def make(team: Team) -> bytes:
        return await _shutdown(team, session_id or team.cfg.session_id, child_id)

    return make


NOT_UTF8 = ("not valid JSON", "not UTF-8")
EDGE_OF_TIME = "9999-12-31T23:59:59-05:00"

RAWS: dict[str, Raw] = {
    # ---- task queue: bytes that are not UTF-8
    "task: one Latin-1 byte": Raw("tasks", b"\xe9", (*NOT_UTF8, "0xe9")),
    "task: truncated multibyte": Raw("tasks", b"caf\xc3", (*NOT_UTF8, "0xc3")),
    "task: byte 0xff": Raw("tasks", b"\xff", (*NOT_UTF8, "0xff")),
    "task: overlong encoding": Raw("tasks", b'{"type": "\xc0\xaf"}', NOT_UTF8),
    "task: encoded surrogate": Raw("tasks", b'{"type": "\xed\xa0\x80"}', NOT_UTF8),
    "task: valid task in UTF-16": Raw("tasks", task_encoded("utf-16"), NOT_UTF8),
    "task: valid task in UTF-32": Raw("tasks", task_encoded("utf-32"), NOT_UTF8),
    "task: valid task in Latin-1": Raw("tasks", _latin1_task, NOT_UTF8),
    "task: UTF-8 byte order mark": Raw("tasks", task_encoded("utf-8-sig"), ("not valid JSON", "BOM")),
    # ---- task queue: not JSON, not an object, not a task
    "task: empty": Raw("tasks", b"", ("not valid JSON",)),
    "task: not JSON": Raw("tasks", b"not json", ("not valid JSON",)),
    "task: truncated JSON": Raw("tasks", b'{"type": "task", ', ("not valid JSON",)),
    "task: JSON array": Raw("tasks", b"[1, 2]", ("must be a JSON object", "list")),
    "task: JSON string": Raw("tasks", b'"task"', ("must be a JSON object", "str")),
    "task: JSON null": Raw("tasks", b"null", ("must be a JSON object",)),
    "task: type alone": Raw("tasks", b'{"type": "task"}', ("invalid task message", "missing field 'task_id'")),
    "task: unknown type": Raw("tasks", b'{"type": "tsak"}', ("unknown message type 'tsak'",)),
    "task: no type": Raw("tasks", b'{"prompt": "x"}', ("no 'type' field",)),
    "task: child_id a string": Raw("tasks", task_with(child_id="1"), ("child_id",)),
    "task: prompt a number": Raw("tasks", task_with(prompt=7), ("prompt",)),
    "task: context a list": Raw("tasks", task_with(context=[]), ("context",)),
    "task: priority 10**30": Raw("tasks", task_with(priority=10**30), ("priority", "1000000")),
    "task: priority of 5000 digits": Raw(
        "tasks", task_text(lambda t: t.replace('"priority": 0', '"priority": ' + "9" * 5000)), ("not valid JSON",)
    ),
    "task: child_id 0": Raw("tasks", task_with(child_id=0), ("child_id",)),
    "task: child_id -3": Raw("tasks", task_with(child_id=-3), ("child_id",)),
    "task: child_id 10**30": Raw(
        "tasks", task_with(child_id=10**30), ("addressed to child 1000000000000000000000000000000, not 1",)
    ),
    "task: for child 2 on child 1's queue": Raw("tasks", task_with(child_id=2), ("addressed to child 2, not 1",)),
    "task: another child's task id": Raw("tasks", misrouted("queued"), ("belongs to child 2, not 1",)),
    "task: another session's task": Raw("tasks", _other_session_task, ("belongs to session",)),
    "task: glob task id": Raw("tasks", task_with(task_id="t*"), ("invalid task id",)),
    "task: braces in task id": Raw("tasks", task_with(task_id="{t}"), ("invalid task id",)),
    "task: 10 kB task id": Raw("tasks", task_with(task_id="t" * 10_000), ("invalid task id", "10000 characters")),
    "task: NUL in task id": Raw("tasks", task_with(task_id="t\x00"), ("invalid task id",)),
    "task: escape in task id": Raw("tasks", task_with(task_id="t\x1b[2J"), ("invalid task id",)),
    "task: lone surrogate in prompt": Raw("tasks", task_with(prompt="a\ud800"), ("prompt", "lone surrogate")),
    "task: NaN in context": Raw(
        "tasks", task_text(lambda t: t.replace('"context": {}', '"context": {"x": NaN}')), ("not valid JSON", "NaN")
    ),
    "task: 1e999 in context": Raw(
        "tasks",
        task_text(lambda t: t.replace('"context": {}', '"context": {"x": 1e999}')),
        ("context.x", "JSON cannot carry"),
    ),
    "task: nested 100,000 deep": Raw(
        "tasks",
        task_text(lambda t: t.replace('"context": {}', '"context": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}")),
        ("not valid JSON",),
    ),
    "task: created_at past the end of time": Raw(
        "tasks", task_with(created_at=EDGE_OF_TIME), ("created_at", "out of range")
    ),
    "task: a report on a task queue": Raw(
        "tasks", report_with(None), ("a report message does not belong on a task queue",)
    ),
    "task: a status message on a task queue": Raw(
        "tasks", _status, ("a status message does not belong on a task queue",)
    ),
    "task: shutdown for child 2": Raw(
        "tasks", _shutdown_of(None, 2), ("a shutdown for child 2 does not belong on child 1's queue",)
    ),
    "task: another session's shutdown": Raw(
        "tasks", _shutdown_of("someone-else", None), ("a shutdown of session 'someone-else' does not belong",)
    ),
    "task: copy of a finished task": Raw("tasks", _finished_copy, ("is already done",)),
    "task: forged copy of a queued task": Raw("tasks", _forged_copy, ("differs from the task recorded",)),
    "task: prompt over the limit": Raw("tasks", task_with(prompt=BIG), ("ORCH_MAX_MESSAGE_BYTES",)),
    "task: garbage on the in-flight list": Raw("task_inflight", b"\xfe\xfe", NOT_UTF8),
    # ---- report queues
    "report: one Latin-1 byte": Raw("reports", b"\xe9", (*NOT_UTF8, "0xe9")),
    "report: truncated multibyte": Raw("reports", b"\xe2\x82", (*NOT_UTF8, "0xe2")),
    "report: byte 0xff": Raw("reports", b"\xff", NOT_UTF8),
    "report: valid report in UTF-16": Raw("reports", own_report("utf-16"), NOT_UTF8),
    "report: truncated JSON": Raw("reports", b"{", ("not valid JSON",)),
    "report: JSON array": Raw("reports", b"[]", ("must be a JSON object",)),
    "report: type alone": Raw("reports", b'{"type": "report"}', ("invalid report message", "missing field")),
    "report: unknown task": Raw("reports", report_with(None), ("never had",)),
    "report: task still queued": Raw("reports", report_with("queued", child_id=2), ("which is queued, not reported",)),
    "report: task still working": Raw(
        "reports", report_with("working", child_id=2), ("which is working, not reported",)
    ),
    "report: another child's task": Raw("reports", report_with("done"), ("which child 1 never had",)),
    "report: another session's report": Raw("reports", _other_session_report, ("belongs to session",)),
    "report: status 'maybe'": Raw("reports", report_with(None, status="maybe"), ("status",)),
    "report: child_id 10**30": Raw("reports", report_with(None, child_id=10**30), ("children 1..2",)),
    "report: child_id 0": Raw("reports", report_with(None, child_id=0), ("child_id",)),
    "report: glob task id": Raw("reports", report_with(None, task_id="t*"), ("invalid task id",)),
    "report: lone surrogate in result": Raw(
        "reports", report_with(None, result="\udc80"), ("result", "lone surrogate")
    ),
    "report: a task on a report queue": Raw(
        "reports", task_with(), ("a task message does not belong on a report queue",)
    ),
    "report: result differs from the record": Raw("reports", _forged_report, ("differs",)),
    "report: result over the limit": Raw("reports", _oversized_result, ("ORCH_MAX_MESSAGE_BYTES",)),
    "report: garbage on the in-flight list": Raw("reports_inflight", b"\xc3\x28", NOT_UTF8),
    "doorbell: not a number": Raw("doorbell", b"abc", ("doorbell",), ("normal",)),
    "doorbell: child 0": Raw("doorbell", b"0", ("doorbell",), ("normal",)),
    "doorbell: child 99": Raw("doorbell", b"99", ("doorbell",), ("normal",)),
    "doorbell: byte 0xff": Raw("doorbell", b"\xff", ("doorbell",), ("normal",)),
}


XFAIL_RAWS: dict[str, str] = {}


def _raw_params() -> list[Any]:
    params: list[Any] = []
    for name, case in RAWS.items():
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL_RAWS[name])] if name in XFAIL_RAWS else []
        params.extend(pytest.param(mode, name, id=f"{mode}-{name}", marks=marks) for mode in case.modes)
    return params


def raw_key(cfg: SessionConfig, where: str) -> str:
    if where == "tasks":
        return cfg.keys.tasks(1)
    if where == "task_inflight":
        return cfg.keys.inflight(1)
    if where == "reports":
        return cfg.report_queue(1)
    if where == "reports_inflight":
        return cfg.keys.reports_inflight
    assert where == "doorbell", where
    return cfg.keys.doorbell


def all_lists(cfg: SessionConfig) -> list[str]:
    """Every list of the session a message can sit on."""
    per_child = [key for n in cfg.child_ids for key in (cfg.keys.tasks(n), cfg.keys.inflight(n), cfg.report_queue(n))]
    doorbell = [cfg.keys.doorbell] if cfg.mode == "normal" else []
    return sorted({*per_child, cfg.keys.reports_inflight, *doorbell})


def exact_bytes(letter: delivery.DeadLetter) -> bytes:
    return base64.b64decode(letter.raw_base64) if letter.raw_base64 is not None else letter.raw.encode("utf-8")


async def assert_buried(team: Team, raw: bytes, reason: tuple[str, ...], name: str) -> None:
    """`raw` is in the dead letters, by its exact bytes, with the reason; no list of the session holds it."""
    letters = [d for d in await delivery.dead_letters(team.r, team.cfg) if exact_bytes(d) == raw]
    assert letters, f"{name}: not in the dead letters: {await delivery.dead_letters(team.r, team.cfg)}"
    for word in reason:
        assert word.lower() in letters[0].reason.lower(), f"{name}: {word!r} not in the reason {letters[0].reason!r}"
    assert (letters[0].raw_base64 is None) == _is_utf8(raw)
    holding = [key for key in all_lists(team.cfg) if await team.r.lpos(key, raw) is not None]
    assert not holding, f"{name}: still on {holding}"


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize(("mode", "name"), _raw_params())
async def test_bad_bytes_on_a_queue_are_dead_lettered_then_good_work_goes_through(
    servers: Servers, mode: Mode, name: str
) -> None:
    case = RAWS[name]
    async with servers.team(mode) as team:
        r = team.r
        raw = case.data if isinstance(case.data, bytes) else await case.data(team)
        await r.rpush(raw_key(team.cfg, case.where), raw)
        status = await team.call("moogle", "session_status", {})
        assert ok(status)["session_id"] == team.cfg.session_id  # garbage on the lists does not break it
        await round_trip(team, name)
        await assert_buried(team, raw, case.reason, name)
        assert ok(await team.call("summoner", "session_status", {}))["dead_letters"] >= 1


# ---------------------------------------------------------------- garbage everywhere at once


@pytest.mark.parametrize("mode", BOTH)
async def test_status_tool_and_cli_keep_working_with_garbage_on_every_list(
    servers: Servers, env_for: dict[str, str], mode: Mode
) -> None:
    garbage = [b"\xe9", b"\xff\xfe", b"{", b'{"type": "task"}', b"\x00", "é".encode("utf-16")]
    async with servers.team(mode) as team:
        r = team.r
        lists = all_lists(team.cfg)
        for key in lists:
            await r.rpush(key, *garbage)
        for who in ("summoner", "moogle"):
            st = ok(await team.call(who, "session_status", {}))
            assert [c["queue_depth"] for c in st["children"]] == [len(garbage), len(garbage)]
            assert all(c["in_flight_task"] is None for c in st["children"])
        proc = await anyio.to_thread.run_sync(lambda: orch("status", "--json", env=env_for))
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        snap = json.loads(proc.stdout)
        assert snap["session_id"] == team.cfg.session_id
        await round_trip(team, "garbage on every list")
        for who in ("one", "two"):  # chocobo 2 clears its own lists too
            got = ok(await team.call(who, "wait_for_task", {"timeout_s": 0}))
            assert got["status"] == "timeout", got
        assert ok(await team.call("moogle", "wait_for_report", {"timeout_s": 0}))["status"] == "idle"
        letters = await delivery.dead_letters(r, team.cfg)
        buried = sorted(exact_bytes(d) for d in letters)
        assert buried == sorted(garbage * len(lists)), [d.queue for d in letters]
        for key in lists:
            assert await r.llen(key) == 0, key


# ---------------------------------------------------------------- what is not bad input


@pytest.mark.parametrize("mode", BOTH)
async def test_nul_and_control_characters_in_a_prompt_and_a_result_are_carried_exactly(
    servers: Servers, mode: Mode
) -> None:
    odd = "a\x00b\x01\x1b[31mred\x1b[0m\r\n\t\u2028\ufeff\U0001f600 \\ud800 ' \" {*}"
    async with servers.team(mode) as team:
        r = team.r
        sent = ok(await team.call("moogle", "send_task", {"child_id": 1, "prompt": odd, "context": {odd: [odd]}}))
        got = ok(await team.call("one", "wait_for_task", {"timeout_s": WAIT_S}))
        assert got["task"]["prompt"] == odd and got["task"]["context"] == {odd: [odd]}
        ok(await team.call("one", "report", {"task_id": sent["task_id"], "result": odd}))
        rep = ok(await team.call("moogle", "wait_for_report", {"timeout_s": WAIT_S}))
        assert rep["report"]["result"] == odd
        assert ok(await team.call("moogle", "get_task", {"task_id": sent["task_id"]}))["result"] == odd
        assert await delivery.dead_letters(r, team.cfg) == []


@pytest.mark.parametrize("mode", BOTH)
async def test_a_valid_task_pushed_raw_is_delivered_and_a_duplicate_report_changes_nothing(
    servers: Servers, mode: Mode
) -> None:
    async with servers.team(mode) as team:
        r = team.r
        raw = TaskMessage.create("pushed by hand", team.cfg.session_id, 1, priority=3)
        await r.rpush(team.cfg.keys.tasks(1), raw.to_json())
        got = ok(await team.call("one", "wait_for_task", {"timeout_s": WAIT_S}))
        assert got["task"]["task_id"] == raw.task_id and got["task"]["prompt"] == "pushed by hand"
        ok(await team.call("one", "report", {"task_id": raw.task_id, "result": "first"}))
        again = ok(await team.call("one", "report", {"task_id": raw.task_id, "result": "second"}))
        assert again == {"task_id": raw.task_id, "accepted": False, "duplicate": True, "state": "done"}
        rep = ok(await team.call("moogle", "wait_for_report", {"timeout_s": WAIT_S}))
        assert rep["report"]["task_id"] == raw.task_id and rep["report"]["result"] == "first"
        assert ok(await team.call("moogle", "get_task", {"task_id": raw.task_id}))["result"] == "first"
        await round_trip(team, "a duplicate report")  # the duplicate queued no second report
        assert await delivery.dead_letters(r, team.cfg) == []


# ---------------------------------------------------------------- what the texts must not be

FLAG_FREE = "DESIGN.md: every answer's text names no server flag (a model cannot set one)"
NAMES_FLAGS = (
    "the texts of sessions.current_session, of the chocobo's presence conflict and of its child-range error name "
    "--session-id and --child-id"
)


@pytest.mark.usefixtures("quick_renewal")
async def test_tool_errors_name_no_server_flag(servers: Servers, redis_server: EmbeddedRedis) -> None:
    orch = OrchConfig(redis=RedisConfig(url=redis_server.url), namespace=NS, max_message_bytes=LIMIT)
    texts = []
    async with Client(create_server(settings(orch, "moogle", session_check_s=0))) as early:
        await cleanup_everything(servers.r)
        texts.append(text(await early.call_tool("send_task", {"child_id": 1, "prompt": "x"})))  # no session yet
    async with servers.team("summoner") as team:
        await team.settle()
        async with Client(create_server(settings(orch, "chocobo", 1, session_check_s=0))) as second:
            # child 1 is served: the newcomer waits for the claim to lapse, sees it renewed, and is refused
            texts.append(text(await second.call_tool("wait_for_task", {"timeout_s": 10})))
        async with Client(create_server(settings(orch, "chocobo", 3, session_check_s=0))) as third:
            texts.append(text(await third.call_tool("wait_for_task", {"timeout_s": 0})))  # beyond the children
    assert all(body.startswith("Error executing tool ") for body in texts), texts
    assert [body for body in texts if " --" in body] == [], FLAG_FREE


@pytest.mark.parametrize(("who", "tool", "own"), [("moogle", "report", "send_task"), ("one", "send_task", "report")])
async def test_a_tool_of_another_role_is_refused_with_the_tools_this_role_has(
    servers: Servers, who: str, tool: str, own: str
) -> None:
    async with servers.team("summoner") as team:
        body = refused(await team.call(who, tool, {}), tool, (tool,))
        assert own in body, f"the model is not told which tools it has: {body}"
        other = "chocobo" if who == "moogle" else "moogle"
        assert f"belongs to the {other}" in body, f"the model is not told which role has {tool}: {body}"


async def test_argument_errors_read_as_sentences(servers: Servers) -> None:
    async with servers.team("summoner") as team:
        body = refused(await team.call("moogle", "send_task", {"child_id": 0, "prompt": "x"}), "send_task", ())
        assert "child_id" in body and "errors.pydantic.dev" not in body and "input_value=" not in body, body
        assert "\n" not in body and body.endswith("child_id must be at least 1 (you sent 0)"), body


async def test_the_table_is_large_enough() -> None:
    kinds = len(CALLS) + len(RAWS)
    runs = len(_call_params()) + len(_raw_params())
    assert kinds >= 60 and runs >= 2 * 60, (kinds, runs)
