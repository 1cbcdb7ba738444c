"""`orch-mcp status` and `orch-mcp watch`: the snapshot data layer on a real Redis, the commands as processes,
and the live view in a real terminal (tmux)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from cli_helpers import LineReader, finish, one_error_line, orch, run_main

from orch_mcp import delivery
from orch_mcp.agents import AsyncChild, AsyncParent, Child, Parent
from orch_mcp.config import RedisConfig
from orch_mcp.errors import NoSessionError, NotFoundError
from orch_mcp.redis_client import Redis
from orch_mcp.sessions import SessionConfig, cleanup_session, init_session, resolve_session
from orch_mcp.snapshot import take_snapshot, wait_for_events

NS = "test"


@pytest.fixture
async def session(r: Redis) -> SessionConfig:
    return await init_session(r, namespace=NS, mode="summoner", max_children=3, ttl_s=600)


# ---------------------------------------------------------------- the data layer


async def test_a_fresh_session(r: Redis, session: SessionConfig) -> None:
    snap = await take_snapshot(r, session)
    assert (snap.session_id, snap.mode, snap.max_children, snap.alive) == (session.session_id, "summoner", 3, True)
    assert 0 < (snap.ttl_left_s or 0) <= 600
    assert [(c.child_id, c.state, c.description, c.queue_depth) for c in snap.children] == [
        (1, "offline", "offline", 0),
        (2, "offline", "offline", 0),
        (3, "offline", "offline", 0),
    ]
    assert (snap.queued, snap.in_flight, snap.finished, snap.dead_letters) == (0, 0, 0, 0)
    assert snap.events == [] and snap.last_event_id is None


async def test_children_queues_counts_and_events(r: Redis, session: SessionConfig) -> None:
    parent = AsyncParent(r, session)
    first = await parent.send_task(1, "Paint the fence")
    await parent.send_task(1, "Wash the car")
    await parent.send_task(2, "Walk the dog")
    one, two = AsyncChild(r, session, 1), AsyncChild(r, session, 2)
    await one.claim()
    await two.claim()
    taken = await one.take(1)
    assert isinstance(taken, type(first)) and taken.task_id == first.task_id

    snap = await take_snapshot(r, session, events=3)
    c1, c2, c3 = snap.children
    assert (c1.state, c1.in_flight_task, c1.in_flight_prompt, c1.queue_depth) == (
        "working",
        first.task_id,
        "Paint the fence",
        1,
    )
    assert c1.working_for_s is not None and 0 <= c1.working_for_s < 30
    assert c1.description == f"working on {first.task_id[:8]} for {c1.working_for_s:.0f} s"
    assert (c2.state, c2.queue_depth, c2.description) == ("idle", 1, "idle")
    assert (c3.state, c3.last_seen) == ("offline", None)
    assert (snap.queued, snap.in_flight, snap.finished) == (2, 1, 0)
    assert [e.state for e in snap.events] == ["working", "queued", "queued"]  # newest first
    assert snap.events[0].child_id == 1 and snap.events[0].task_id == first.task_id
    assert snap.last_event_id == snap.events[0].id

    await one.report(first.task_id, "painted")
    snap = await take_snapshot(r, session)
    assert snap.children[0].state == "idle" and snap.children[0].finished == 1
    assert (snap.tasks["done"], snap.finished, snap.report_queue_depth) == (1, 1, 1)
    assert snap.events[0].state == "done"


async def test_an_offline_child_keeps_its_task_in_flight(r: Redis, session: SessionConfig) -> None:
    task = await AsyncParent(r, session).send_task(3, "Fix the roof")
    child = AsyncChild(r, session, 3)
    await child.claim()
    await child.take(1)
    await child.release()  # the process went away without reporting
    snap = await take_snapshot(r, session)
    assert snap.children[2].state == "offline"
    assert snap.children[2].description == f"offline, {task.task_id[:8]} in flight"


async def test_a_removed_session_is_not_alive(r: Redis, session: SessionConfig) -> None:
    await cleanup_session(r, session)
    assert (await take_snapshot(r, session)).alive is False


async def test_resolve_session_by_id_prefix_or_current(r: Redis, session: SessionConfig) -> None:
    normal = await init_session(r, namespace=NS, mode="normal", max_children=1, prefix="proj")
    assert (await resolve_session(r, NS, session.session_id)).prefix == session.prefix
    assert (await resolve_session(r, NS, "proj-001")).session_id == normal.session_id
    assert (await resolve_session(r, NS, session.prefix)).session_id == session.session_id
    assert (await resolve_session(r, NS)).session_id == normal.session_id  # the current one
    assert (await resolve_session(r, NS, "current")).session_id == normal.session_id
    with pytest.raises(NotFoundError, match="session 'nope' not found"):
        await resolve_session(r, NS, "nope")
    with pytest.raises(NoSessionError):
        await resolve_session(r, "empty-namespace")


async def test_wait_for_events_returns_what_is_new(r: Redis, session: SessionConfig) -> None:
    assert await wait_for_events(r, session, None, 20) == []
    await delivery.send_shutdown(r, session, 2, now=True)
    first = await wait_for_events(r, session, None, 20)
    assert [(e.state, e.child_id, e.detail) for e in first] == [("shutdown_sent", 2, "now")]
    assert await wait_for_events(r, session, first[-1].id, 20) == []
    await AsyncParent(r, session).send_task(1, "x")
    after = await wait_for_events(r, session, first[-1].id, 1000)
    assert [e.state for e in after] == ["queued"]


# ---------------------------------------------------------------- status


def test_status_json_and_text(env_for: dict[str, str], redis_url: str) -> None:
    cfg = RedisConfig(url=redis_url)
    made = orch("init", "--summoner-mode", "--max-children", "2", "--json", env=env_for)
    sid = json.loads(made.stdout)["session_id"]
    with Parent(sid, namespace=NS, redis_config=cfg) as parent, Child(sid, 2, namespace=NS, redis_config=cfg) as child:
        task = parent.send_task(2, "Count the stars")
        assert child.take(2) is not None
        data = orch("status", "--json", env=env_for)
        assert data.returncode == 0, data.stderr
        snap = json.loads(data.stdout)
        assert snap["session_id"] == sid and snap["tasks"]["working"] == 1
        assert [c["state"] for c in snap["children"]] == ["offline", "working"]
        assert snap["children"][1]["in_flight_task"] == task.task_id
        text = orch("status", sid, "--events", "2", env={**env_for, "COLUMNS": "120"})
        assert text.returncode == 0, text.stderr
        assert f"session {sid} · summoner mode · 2 children" in text.stdout
        assert f"working on {task.task_id[:8]} for " in text.stdout and "Count the stars" in text.stdout
        assert "latest events" in text.stdout
        # piped: plain lines, no padding to the console's width (rich pads table cells and rows)
        lines = text.stdout.splitlines()
        assert len(lines) > 10 and "" in lines and "\x1b" not in text.stdout
        assert [line for line in lines if line != line.rstrip()] == []
        # the session named as in the other commands: --session-id or --prefix
        for args in (["--session-id", sid], ["--prefix", f"summoner:{{{sid}}}"]):
            same = orch("status", *args, "--json", env=env_for)
            assert same.returncode == 0 and json.loads(same.stdout)["session_id"] == sid, same.stderr


@pytest.mark.parametrize("command", ["status", "watch"])
def test_without_a_session_says_what_to_run(
    env_for: dict[str, str], command: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    proc = orch(command, env=env_for)  # a real process; the other cases run the command's main in this one
    assert proc.returncode == 1
    assert one_error_line(proc) == (
        "orch-mcp: no session exists yet in namespace 'test': create one with `orch-mcp init` (or have the "
        f"summoner call init_session), or name one with `orch-mcp {command} --session-id ID`"
    )
    for args in (["no-such-session"], ["--session-id", "no-such-session"]):
        proc = run_main(["-m", "orch_mcp", command, *args], env_for, monkeypatch, capfd)
        assert proc.returncode == 1
        assert "session 'no-such-session' not found" in one_error_line(proc)
    proc = run_main(["-m", "orch_mcp", command, "one", "--session-id", "other"], env_for, monkeypatch, capfd)
    assert proc.returncode == 2
    assert one_error_line(proc).startswith(f"orch-mcp {command}: argument --session-id: not allowed with argument")


# ---------------------------------------------------------------- watch without a terminal: one line per event


def test_watch_prints_events_as_they_happen(env_for: dict[str, str], redis_url: str) -> None:
    cfg = RedisConfig(url=redis_url)
    sid = json.loads(orch("init", "--summoner-mode", "--max-children", "1", "--json", env=env_for).stdout)["session_id"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "orch_mcp", "watch", sid],
        env=env_for,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out = LineReader(proc.stdout)  # type: ignore[arg-type]
        assert out.next() == f"watching session {sid} (summoner mode); Ctrl+C to stop"
        with Parent(sid, namespace=NS, redis_config=cfg) as parent:
            task = parent.send_task(1, "Feed the cat")
            assert out.next().endswith(f" queued child 1 task {task.task_id[:8]}")  # type: ignore[union-attr]
            with Child(sid, 1, namespace=NS, redis_config=cfg) as child:
                child.take(2)
                assert out.next().endswith(f" working child 1 task {task.task_id[:8]}")  # type: ignore[union-attr]
                child.report(task.task_id, "fed")
                assert out.next().endswith(f" done child 1 task {task.task_id[:8]}")  # type: ignore[union-attr]
        assert orch("init", "cleanup", "--session-id", sid, env=env_for).returncode == 0
        _, err = proc.communicate(timeout=15)
    finally:
        finish(proc)
    assert proc.returncode == 0
    assert err.strip() == f"session {sid} ended (cleaned up or expired)"


# ---------------------------------------------------------------- the live view in a real terminal


class Tmux:
    """A private tmux server (its own socket) running one command in a fixed-size pane."""

    def __init__(self, command: str, width: int = 120, height: int = 45) -> None:
        self.socket = f"orch-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._tmux("new-session", "-d", "-x", str(width), "-y", str(height), command)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def capture(self) -> str:
        """What the pane shows now."""
        return self._tmux("capture-pane", "-p")

    def wait_for(self, check: Callable[[str], bool], timeout: float = 15) -> str:
        """Capture the pane until `check(screen)` holds (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if check(screen):
                return screen
            time.sleep(0.05)  # between two captures; the wait itself is bounded by the deadline
        raise AssertionError(f"the terminal never showed what was expected; last screen:\n{screen}")

    def keys(self, *keys: str) -> None:
        """Type keys into the pane."""
        self._tmux("send-keys", *keys)

    def close(self) -> None:
        """Stop this tmux server (and the command in it)."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def tmux_watch(env_for: dict[str, str]) -> Iterator[Callable[[str], Tmux]]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed: the live view needs a real terminal to be tested")
    started: list[Tmux] = []

    def start(session_id: str) -> Tmux:
        env = " ".join(f"{k}={env_for[k]}" for k in ("REDIS_URL", "ORCH_NAMESPACE"))
        # -u COLUMNS -u LINES: a stale size in the environment (tmux may pass 80x24 to a pane started without a
        # client terminal) would win over the pane's real size in rich.
        command = (
            f"env -u COLUMNS -u LINES {env} {sys.executable} -m orch_mcp watch {session_id}; echo EXIT=$?; sleep 60"
        )
        started.append(Tmux(command))
        return started[-1]

    yield start
    for tmux in started:
        tmux.close()


def test_watch_live_view_in_a_terminal(
    tmux_watch: Callable[[str], Tmux], env_for: dict[str, str], redis_url: str
) -> None:
    cfg = RedisConfig(url=redis_url)
    sid = json.loads(orch("init", "--summoner-mode", "--max-children", "3", "--json", env=env_for).stdout)["session_id"]
    term = tmux_watch(sid)
    screen = term.wait_for(lambda s: f"session {sid}" in s and "Ctrl+C to quit" in s)
    assert screen.count("offline") == 3 and "no events yet" in screen

    with Parent(sid, namespace=NS, redis_config=cfg) as parent, Child(sid, 1, namespace=NS, redis_config=cfg) as c1:
        first = parent.send_task(1, "Paint the fence")
        parent.send_task(2, "Walk the dog")
        assert c1.take(2) is not None
        # The view redraws on the events: child 1 works on the task, child 2 has one queued, 3 is offline.
        screen = term.wait_for(lambda s: f"working on {first.task_id[:8]} for" in s and "Paint the fence" in s)
        assert "queued 1" in screen and "working 1" in screen and "in flight 1" in screen
        assert screen.count("offline") == 2
        c1.report(first.task_id, "painted")
        screen = term.wait_for(lambda s: "done 1" in s and "finished 1" in s)
        assert "working on" not in screen and "reports waiting 1" in screen

    term.keys("C-c")
    screen = term.wait_for(lambda s: "EXIT=" in s)
    assert "EXIT=0" in screen and "Traceback" not in screen
