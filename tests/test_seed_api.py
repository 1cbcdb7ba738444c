"""The seed's synchronous API (orchestration, sender, receiver, Parent/Child) on a real Redis, and its equivalence
with the async core it drives."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio
from pydantic import BaseModel

from orch_mcp import delivery, queues, sessions
from orch_mcp.agents import AsyncChild, AsyncParent, Child, Parent
from orch_mcp.config import RedisConfig
from orch_mcp.embedded import EmbeddedRedis
from orch_mcp.errors import ConflictError, MessageError, NoSessionError, NotFoundError, RedisUnavailableError
from orch_mcp.messages import ReportMessage, ShutdownMessage, TaskMessage
from orch_mcp.orchestration import (
    cleanup_session,
    get_config,
    initialize_orchestration,
    initialize_summoner_orchestration,
)
from orch_mcp.receiver import MessageReceiver, receive_message, receive_report, receive_task
from orch_mcp.redis_client import create_async_client, create_client
from orch_mcp.sender import RedisSender, send_message, send_with_publish
from orch_mcp.sync import SyncBridge

NS = "test"


@pytest.fixture(autouse=True)
def namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's functions take the namespace from ORCH_NAMESPACE when not given."""
    monkeypatch.setenv("ORCH_NAMESPACE", NS)


@pytest.fixture
def host_port(redis_server: EmbeddedRedis, redis_url: str) -> dict[str, Any]:
    """The seed's way of naming the server: host= and port= (redis_url is asked for its per-test flush)."""
    return {"host": redis_server.host, "port": redis_server.port}


# ---------------------------------------------------------------- orchestration


def test_normal_mode_as_the_seed_shows_it(host_port: dict[str, Any]) -> None:
    config = initialize_orchestration(prefix="myproject-hostname", max_children=9, ttl=3600, **host_port)
    assert config.prefix == "{myproject-hostname-001}" and config.mode == "normal"
    assert re.fullmatch(rf"\d{{13}}-{os.getpid()}", config.session_id)
    assert config.max_children == 9 and config.ttl_s == 3600 and config.monitor_channel is None
    assert get_config(prefix="myproject-hostname-001", **host_port) == config
    assert get_config(session_id=config.session_id, **host_port) == config
    result = cleanup_session(config=config, **host_port)
    assert config.keys.config in result.removed_keys
    with pytest.raises(NotFoundError):
        get_config(prefix="myproject-hostname-001", **host_port)


def test_summoner_mode_as_the_seed_shows_it(redis_config: RedisConfig) -> None:
    config = initialize_summoner_orchestration(max_children=5, session_id=None, ttl=60, redis_config=redis_config)
    assert re.fullmatch(r"[0-9a-f]{32}", config.session_id) and config.prefix == f"summoner:{{{config.session_id}}}"
    assert config.monitor_channel == f"{config.prefix}:monitor" and len(set(config.report_queues.values())) == 1
    named = initialize_summoner_orchestration(session_id="named-1", url=redis_config.url)
    assert named.prefix == "summoner:{named-1}" and named.ttl_s == redis_config.default_ttl
    assert get_config(session_id="named-1", redis_config=redis_config) == named
    cleanup_session(session_id="named-1", redis_config=redis_config)
    with pytest.raises(NotFoundError):
        get_config(session_id="named-1", redis_config=redis_config)


def test_unreachable_redis_is_one_clear_error() -> None:
    with pytest.raises(RedisUnavailableError, match=r"unreachable.*orch-mcp redis start"):
        initialize_orchestration(host="127.0.0.1", port=1)


# ---------------------------------------------------------------- sender / receiver: plain RPUSH / BLPOP


def test_sender_and_receiver(redis_config: RedisConfig) -> None:
    task = TaskMessage.create("hello", "sid", 1)
    with RedisSender(redis_config=redis_config) as sender, MessageReceiver(redis_config=redis_config) as receiver:
        assert sender.send_message("q", "plain text").length == 1
        assert sender.send_message("q", task).length == 2
        assert sender.send_messages("q", ["a", "b"]).length == 4
        first = receiver.receive("q", timeout=1)
        assert first is not None and (first.raw_data, first.message, first.queue) == ("plain text", None, "q")
        assert first.parse_error and "not valid JSON" in first.parse_error
        second = receiver.receive(["empty", "q"], timeout=1)
        assert second is not None and second.message == task
        assert [m.raw_data for m in receiver.receive_iter("q", timeout=0.1)] == ["a", "b"]
        assert receiver.receive("q", timeout=0.1) is None
        for i in range(5):
            sender.send_message("q2", str(i))
        assert [m.raw_data for m in receiver.receive_iter("q2", timeout=1, max_messages=3)] == ["0", "1", "2"]


def test_send_with_publish_reaches_subscribers(redis_config: RedisConfig) -> None:
    async def scenario() -> tuple[int, str]:
        client = create_async_client(redis_config)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe("monitor-channel")
                result = await anyio.to_thread.run_sync(
                    lambda: send_with_publish("my-queue", "hi", "monitor-channel", redis_config=redis_config)
                )
                with anyio.fail_after(5):
                    while (msg := await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)) is None:
                        pass
                assert result.receivers == 1 and result.channel == "monitor-channel" and result.success
                return result.length, msg["data"]
        finally:
            await client.aclose()

    assert anyio.run(scenario) == (1, "hi")


def test_module_functions_keep_plain_blocking_pop_meaning(redis_config: RedisConfig) -> None:
    task = TaskMessage.create("t", "sid", 1)
    report = ReportMessage.create("t", "sid", 1, result="r")
    send_message("tasks", task, redis_config=redis_config)
    send_message("reports", report.to_json(), url=redis_config.url)
    send_message("reports", "not json", redis_config=redis_config)
    assert receive_task("tasks", timeout=1, redis_config=redis_config) == task
    assert receive_report("reports", timeout=1, redis_config=redis_config) == report
    with pytest.raises(MessageError, match=r"expected a ReportMessage .* 'not json'"):
        receive_report("reports", timeout=1, redis_config=redis_config)
    send_message("tasks", report, redis_config=redis_config)
    with pytest.raises(MessageError, match="got a report message"):
        receive_task("tasks", timeout=1, redis_config=redis_config)
    assert receive_message("tasks", timeout=0.1, redis_config=redis_config) is None
    assert receive_task("tasks", timeout=0.1, redis_config=redis_config) is None


# ---------------------------------------------------------------- Parent / Child


@pytest.mark.usefixtures("quick_renewal")
def test_parent_and_child(redis_config: RedisConfig) -> None:
    config = initialize_summoner_orchestration(max_children=2, redis_config=redis_config)
    with Parent(redis_config=redis_config) as parent, Child(child_id=2, redis_config=redis_config) as child:
        assert parent.session == child.session == config  # the namespace's current session by default
        task = parent.send_task(2, "sync work", {"k": "v"})
        got = child.take(2)
        assert got == task
        assert child.report(task.task_id, "sync result").accepted
        report = parent.wait_for_report(2)
        assert report is not None and (report.task_id, report.result) == (task.task_id, "sync result")
        assert parent.get_task(task.task_id).state == "done"
        assert parent.status().children[1].state == "idle"  # online, nothing in flight
        assert parent.shutdown() == [1, 2]
        assert isinstance(child.take(1), ShutdownMessage)
        with pytest.raises(ConflictError, match="held by another live orch-mcp server"):
            Child(config.session_id, 2, redis_config=redis_config)
        # claim=False: a second handle on the child id that does not take part in presence
        with Child(config.session_id, 2, redis_config=redis_config, claim=False) as watcher:
            assert isinstance(watcher.take(0.05), ShutdownMessage)  # sticky: it hears the shutdown again
    with Child(config.session_id, 2, redis_config=redis_config):  # closed means released: the id is free again
        pass


def test_agents_without_a_session(redis_config: RedisConfig) -> None:
    with pytest.raises(NoSessionError, match="init_session"):
        Parent(redis_config=redis_config)
    with pytest.raises(NotFoundError):
        Child("no-such-session", 1, redis_config=redis_config)


# ---------------------------------------------------------------- sync and async give the same results

IDS = re.compile(r"[0-9a-f]{32}|\d{13}-\d+")
VOLATILE = {"message_id", "created_at", "started_at", "finished_at", "last_seen", "last_seen_ago_s", "at", "token"}


def normalize(value: Any, names: dict[str, str]) -> Any:
    """Replace ids by their order of appearance and drop times, so two runs can be compared."""
    if isinstance(value, BaseModel):
        value = {"__class__": type(value).__name__, **value.model_dump(mode="json")}
    if isinstance(value, dict):
        return {k: normalize(v, names) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list | tuple):
        return [normalize(v, names) for v in value]
    if isinstance(value, set):
        return sorted(normalize(v, names) for v in value)
    if isinstance(value, str):
        return IDS.sub(lambda m: names.setdefault(m.group(), f"<id{len(names)}>"), value)
    return value


Ops = dict[str, Callable[..., Any]]


def scenario(ops: Ops) -> dict[str, Any]:
    """One sequence of operations, written once, run through either API; returns each step's result by name."""
    out: dict[str, Any] = {}
    session = out["init"] = ops["init"]()
    out["get_config"] = ops["get_config"](session)
    a = out["send a"] = ops["send"](1, "first", {"n": 1}, 0)
    out["send b"] = ops["send"](1, "urgent", {}, 5)
    out["send c"] = ops["send"](2, "second child", {}, 0)
    for i, child in enumerate((1, 1, 2)):
        task = out[f"take {i}"] = ops["take"](child)
        out[f"report {i}"] = ops["report"](child, task.task_id, f"did {task.prompt}")
    out["duplicate"] = ops["report"](1, a.task_id, "again")
    for i in range(4):
        out[f"wait {i}"] = ops["wait"]()
    out["get_task"] = ops["get_task"](a.task_id)
    out["status"] = ops["status"]()
    out["shutdown"] = ops["shutdown"](None)
    out["take shutdown"] = ops["take"](2)
    failing: list[tuple[str, Callable[[], Any]]] = [
        ("unknown", lambda: ops["report"](1, "unknown", "x")),
        ("bad child", lambda: ops["send"](9, "x", {}, 0)),
    ]
    for name, bad in failing:
        try:
            bad()
        except Exception as exc:
            out[name] = (type(exc).__name__, str(exc))
    out["cleanup"] = {k.split(":", 2)[-1] for k in ops["cleanup"](session).removed_keys}  # a set: order varies
    return out


def sync_ops(redis_config: RedisConfig, stack: list[Any]) -> Ops:
    state: dict[str, Any] = {}

    def init() -> Any:
        config = initialize_summoner_orchestration(max_children=2, ttl=300, redis_config=redis_config)
        state["parent"] = Parent(config.session_id, redis_config=redis_config)
        state["children"] = {n: Child(config.session_id, n, redis_config=redis_config) for n in (1, 2)}
        stack.extend([state["parent"], *state["children"].values()])
        return config

    def cleanup(config: Any) -> Any:
        for child in state["children"].values():
            child.close()  # releases its presence claim
        return cleanup_session(config=config, redis_config=redis_config)

    return {
        "init": init,
        "get_config": lambda s: get_config(session_id=s.session_id, redis_config=redis_config),
        "send": lambda n, p, ctx, prio: state["parent"].send_task(n, p, ctx, prio),
        "take": lambda n: state["children"][n].take(2),
        "report": lambda n, t, res: state["children"][n].report(t, res),
        "wait": lambda: state["parent"].wait_for_report(0.2),
        "get_task": lambda t: state["parent"].get_task(t),
        "status": lambda: state["parent"].status(),
        "shutdown": lambda n: state["parent"].shutdown(n),
        "cleanup": cleanup,
    }


async def async_results(redis_config: RedisConfig) -> dict[str, Any]:
    """The same scenario through the async core, with its calls made from a worker thread."""
    client = create_async_client(redis_config)
    state: dict[str, Any] = {}

    async def init() -> Any:
        config = await sessions.init_session(client, namespace=NS, mode="summoner", max_children=2, ttl_s=300)
        state["parent"] = AsyncParent(client, config)
        state["children"] = {n: AsyncChild(client, config, n) for n in (1, 2)}
        for child in state["children"].values():
            await child.claim()
        return config

    async def cleanup(config: Any) -> Any:
        for child in state["children"].values():
            await child.release()
        return await sessions.cleanup_session(client, config)

    coros: dict[str, Callable[..., Any]] = {
        "init": init,
        "get_config": lambda s: sessions.load_session(client, namespace=NS, session_id=s.session_id),
        "send": lambda n, p, ctx, prio: state["parent"].send_task(n, p, ctx, prio),
        "take": lambda n: state["children"][n].take(2),
        "report": lambda n, t, res: state["children"][n].report(t, res),
        "wait": lambda: state["parent"].wait_for_report(0.2),
        "get_task": lambda t: state["parent"].get_task(t),
        "status": lambda: state["parent"].status(),
        "shutdown": lambda n: state["parent"].shutdown(n),
        "cleanup": cleanup,
    }

    def blocking(name: str) -> Callable[..., Any]:
        return lambda *args: anyio.from_thread.run(coros[name], *args)

    try:
        return await anyio.to_thread.run_sync(scenario, {name: blocking(name) for name in coros})
    finally:
        await client.aclose()


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    stack: list[Any] = []
    yield stack
    for handle in reversed(stack):
        handle.close()


def test_sync_and_async_paths_give_the_same_results(redis_config: RedisConfig, closing: list[Any]) -> None:
    sync_out = scenario(sync_ops(redis_config, closing))
    async_out = anyio.run(async_results, redis_config)
    sync_norm, async_norm = normalize(sync_out, {}), normalize(async_out, {})
    assert list(sync_norm) == list(async_norm)
    for step in sync_norm:
        assert sync_norm[step] == async_norm[step], f"step {step!r} differs"
    # and the results are the expected ones, not just equal
    assert [sync_norm[f"take {i}"]["prompt"] for i in range(3)] == ["urgent", "first", "second child"]
    assert (sync_norm["duplicate"]["accepted"], sync_norm["duplicate"]["duplicate"]) == (False, True)
    assert sorted(sync_norm[f"wait {i}"]["result"] for i in range(3)) == ["did first", "did second child", "did urgent"]
    assert sync_norm["wait 3"] is None
    assert (sync_norm["get_task"]["state"], sync_norm["get_task"]["result"]) == ("done", "did first")
    assert sync_norm["shutdown"] == [1, 2] and sync_norm["take shutdown"]["__class__"] == "ShutdownMessage"
    assert sync_norm["unknown"][0] == "NotFoundError" and sync_norm["bad child"][0] == "InvalidIdentifierError"
    assert "config" in sync_norm["cleanup"] and "status" in sync_norm["cleanup"]


def test_sync_and_async_share_one_session(redis_config: RedisConfig) -> None:
    """A task sent through the async core is taken by the sync Child, and the other way round."""
    config = initialize_summoner_orchestration(max_children=1, redis_config=redis_config)

    async def async_side(phase: str) -> Any:
        client = create_async_client(redis_config)
        try:
            if phase == "send":
                return await delivery.send_task(client, config, 1, "from async", max_bytes=1 << 20)
            found = await delivery.take_report(client, config, 2)
            return None if found is None else found[0]
        finally:
            await client.aclose()

    sent = anyio.run(async_side, "send")
    with Child(config.session_id, 1, redis_config=redis_config) as child:
        assert child.take(2) == sent
        child.report(sent.task_id, "from sync")
    report = anyio.run(async_side, "take")
    assert report is not None and (report.task_id, report.result) == (sent.task_id, "from sync")


# ---------------------------------------------------------------- the seed's client and package root


def test_create_client_is_the_seeds_synchronous_client(host_port: dict[str, Any], redis_config: RedisConfig) -> None:
    with create_client(**host_port) as client:  # the seed's keywords; the environment decides without them
        assert isinstance(client, redis.Redis) and not isinstance(client, redis.asyncio.Redis)
        assert client.rpush("q", "one") == 1 and client.lpop("q") == "one"  # str replies, no await
    with create_client(redis_config) as client:
        assert client.ping() is True


async def test_the_async_client_has_its_own_name(redis_config: RedisConfig) -> None:
    client = create_async_client(redis_config)
    try:
        assert isinstance(client, redis.asyncio.Redis)
        assert await client.rpush("q", "one") == 1 and await client.lpop("q") == "one"
    finally:
        await client.aclose()


SEED_NAMES = [  # what the seed's app/__init__ and README expose
    "RedisConfig",
    "get_default_config",
    "create_client",
    "TaskMessage",
    "ReportMessage",
    "ShutdownMessage",
    "StatusMessage",
    "parse_message",
    "initialize_orchestration",
    "initialize_summoner_orchestration",
    "get_config",
    "cleanup_session",
    "RedisSender",
    "send_message",
    "send_with_publish",
    "MessageReceiver",
    "receive_message",
    "receive_task",
    "receive_report",
]


def test_the_package_root_exports_the_seeds_names() -> None:
    import orch_mcp
    from orch_mcp import TaskMessage as RootTaskMessage
    from orch_mcp import initialize_orchestration as root_init

    assert RootTaskMessage is TaskMessage and root_init is initialize_orchestration
    assert set(SEED_NAMES) <= set(orch_mcp.__all__) and {"Parent", "Child", "create_async_client"} <= set(
        orch_mcp.__all__
    )
    for name in orch_mcp.__all__:
        value = getattr(orch_mcp, name)
        assert name == "__version__" or getattr(value, "__name__", name) == name, name
    assert set(SEED_NAMES) <= set(dir(orch_mcp))
    with pytest.raises(AttributeError, match="has no attribute 'RespRedisClient'"):
        orch_mcp.RespRedisClient  # noqa: B018 - the seed's RESP client is not rebuilt


def test_importing_the_package_loads_nothing_until_a_name_is_used() -> None:
    code = (
        "import sys, orch_mcp; heavy = ('pydantic', 'redis', 'mcp', 'orch_mcp.messages')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "from orch_mcp import TaskMessage; print(TaskMessage.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "orch_mcp.messages"]
    # each exporting module imports first in a fresh interpreter (sync_agents and agents import each other)
    for module in ("orch_mcp.sync_agents", "orch_mcp.agents"):
        done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


def test_sync_bridge_runs_the_async_core_through_its_public_methods(redis_config: RedisConfig) -> None:
    with SyncBridge(redis_config) as bridge:
        assert bridge.call_with_client(queues.push, "q", "a", "b") == 2
        assert bridge.call(bridge.client.lrange, "q", 0, -1) == ["a", "b"]
        started = threading.Event()

        async def background() -> None:
            started.set()
            await anyio.sleep_forever()

        bridge.start_soon(background)
        assert started.wait(5) and not bridge.closed
    assert bridge.closed  # and the background task was cancelled with the loop
