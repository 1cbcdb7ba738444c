"""The scenarios as separate processes on a real Redis: summoner creates, chocobos work, the moogle collects."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping

import pytest
from cli_helpers import LineReader, finish, one_error_line, orch, run_cli

from orch_mcp.agents import Parent
from orch_mcp.config import RedisConfig
from orch_mcp.orchestration import initialize_summoner_orchestration

SUMMONER = ["-m", "orch_mcp.scenarios.summoner_scenario"]
MOOGLE = ["-m", "orch_mcp.scenarios.moogle_scenario"]
CHOCOBO = ["-m", "orch_mcp.scenarios.chocobo_scenario"]


def start(args: list[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start a scenario process with piped output."""
    return subprocess.Popen(
        [sys.executable, *args], env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at the end is killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        finish(proc)


def summon(env: Mapping[str, str], children: int) -> str:
    """A session made by the summoner scenario, a process of its own."""
    proc = run_cli([*SUMMONER, "--max-children", str(children), "--json"], env)
    assert proc.returncode == 0, proc.stderr
    session = json.loads(proc.stdout)
    assert session["mode"] == "summoner" and session["max_children"] == children
    sid: str = session["session_id"]
    return sid


def session(redis_url: str, children: int) -> str:
    """A session made in this process, as the summoner scenario makes it, for the tests of the other scenarios.

    (The summoner scenario's own process is tested above and end to end; a process less per test here.)
    """
    return initialize_summoner_orchestration(
        max_children=children, namespace="test", redis_config=RedisConfig(url=redis_url)
    ).session_id


def test_summoner_prints_the_session_and_next_steps(env_for: dict[str, str]) -> None:
    proc = orch("scenario", "summoner", "--max-children", "5", env=env_for)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("summoner: created session ")
    sid = first.rsplit(" ", 1)[1]
    assert f"summoner:{{{sid}}}:tasks:5" in proc.stdout
    assert f"orch-mcp scenario moogle --session-id {sid}" in proc.stdout


def test_summoner_then_moogle_and_chocobos_end_to_end(
    env_for: dict[str, str], procs: list[subprocess.Popen[str]]
) -> None:
    sid = summon(env_for, 2)
    procs.append(start([*CHOCOBO, "--session-id", sid, "--child-id", "1", "--work-seconds", "0.05"], env_for))
    procs.append(
        start(["-m", "orch_mcp", "scenario", "chocobo", "--child-id", "2", "--work-seconds", "0.05", "--json"], env_for)
    )
    moogle = run_cli([*MOOGLE, "--session-id", sid, "--tasks", "T1", "T2", "T3", "T 4", "--json"], env_for)
    assert moogle.returncode == 0, moogle.stderr
    outcome = json.loads(moogle.stdout)
    assert outcome["complete"] is True and outcome["shutdown_sent_to"] == [1, 2]
    assert [(t["prompt"], t["child_id"], t["status"]) for t in outcome["tasks"]] == [
        ("T1", 1, "done"),
        ("T2", 2, "done"),
        ("T3", 1, "done"),
        ("T 4", 2, "done"),
    ]
    for task in outcome["tasks"]:
        assert task["result"] == f"chocobo {task['child_id']} did {task['prompt']!r}"

    one, two = procs
    out1, err1 = one.communicate(timeout=30)
    out2, err2 = two.communicate(timeout=30)
    assert one.returncode == 0 and two.returncode == 0, (err1, err2)
    assert "chocobo 1: shutdown received (moogle scenario finished)" in out1
    assert out1.splitlines()[-1] == "chocobo 1: 2 tasks done (shutdown)"
    report2 = json.loads(out2)
    assert report2["stopped_by"] == "shutdown" and [t["prompt"] for t in report2["tasks"]] == ["T2", "T 4"]


def test_moogle_text_output(env_for: dict[str, str], redis_url: str, procs: list[subprocess.Popen[str]]) -> None:
    sid = session(redis_url, 1)
    procs.append(start([*CHOCOBO, "--session-id", sid, "--work-seconds", "0"], env_for))
    moogle = orch("scenario", "moogle", "--tasks", "Only task", env=env_for)
    assert moogle.returncode == 0, moogle.stderr
    lines = moogle.stdout.splitlines()
    assert lines[0] == f"moogle: session {sid} (summoner mode, 1 child)"
    assert lines[1].startswith("sent task 1/1 to chocobo 1: Only task  [")
    assert lines[2] == "report 1/1 from chocobo 1 on task 1: done: chocobo 1 did 'Only task'"
    assert lines[3].startswith("all 1 reports in after ") and lines[3].endswith("told chocobo 1 to shut down")
    assert procs[0].wait(timeout=30) == 0
    finish(procs[0])


def test_chocobo_stops_after_max_tasks_and_when_idle(env_for: dict[str, str], redis_url: str) -> None:
    sid = session(redis_url, 1)
    with Parent(sid, namespace="test", redis_config=RedisConfig(url=redis_url)) as parent:
        first = parent.send_task(1, "first")
        second = parent.send_task(1, "second")
    one = run_cli([*CHOCOBO, "--session-id", sid, "--max-tasks", "1", "--work-seconds", "0", "--json"], env_for)
    assert one.returncode == 0, one.stderr
    done = json.loads(one.stdout)
    assert done["stopped_by"] == "max_tasks" and [t["task_id"] for t in done["tasks"]] == [first.task_id]
    rest = run_cli([*CHOCOBO, "--session-id", sid, "--idle-timeout", "0.3", "--work-seconds", "0"], env_for)
    assert rest.returncode == 0, rest.stderr
    assert f"working on 'second'  [{second.task_id[:8]}]" in rest.stdout
    assert "chocobo 1: no task for 0.3 s; stopping" in rest.stdout
    assert rest.stdout.splitlines()[-1] == "chocobo 1: 1 task done (idle_timeout)"


def test_a_second_chocobo_for_a_live_child_id_is_refused(
    env_for: dict[str, str], redis_url: str, procs: list[subprocess.Popen[str]]
) -> None:
    sid = session(redis_url, 2)
    first = start([*CHOCOBO, "--session-id", sid, "--child-id", "2"], env_for)
    procs.append(first)
    LineReader(first.stdout).until(lambda line: "waiting for tasks" in line)  # type: ignore[arg-type]
    second = run_cli([*CHOCOBO, "--session-id", sid, "--child-id", "2"], env_for)
    assert second.returncode == 1
    assert "child 2 of session" in one_error_line(second) and "held by another live orch-mcp server" in second.stderr
    bad = run_cli([*CHOCOBO, "--session-id", sid, "--child-id", "3"], env_for)
    assert bad.returncode == 1 and "children 1..2" in one_error_line(bad)


def test_chocobo_ctrl_c_exits_cleanly(
    env_for: dict[str, str], redis_url: str, procs: list[subprocess.Popen[str]]
) -> None:
    session(redis_url, 1)
    proc = start([*CHOCOBO], env_for)
    procs.append(proc)
    LineReader(proc.stdout).until(lambda line: "waiting for tasks" in line)  # type: ignore[arg-type]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert "Traceback" not in err and "stopped by Ctrl+C" in err


def test_moogle_without_a_session_says_what_to_do(env_for: dict[str, str]) -> None:
    proc = run_cli([*MOOGLE, "--tasks", "x"], env_for)
    assert proc.returncode == 1
    assert one_error_line(proc) == (
        "orch-mcp: no session exists yet in namespace 'test': create one with `orch-mcp init` (or have the summoner "
        "call init_session), or name one with `python -m orch_mcp.scenarios.moogle_scenario --session-id ID`"
    )


def test_moogle_gives_up_after_its_timeout(env_for: dict[str, str], redis_url: str) -> None:
    session(redis_url, 1)
    proc = run_cli([*MOOGLE, "--tasks", "nobody will do this", "--timeout", "0.5"], env_for)
    assert proc.returncode == 1
    assert "only 0 of 1 reports arrived within 0.5 s" in proc.stdout
    # stderr: the note that chocobo 1 is not running, then the one-line error.
    note, error = proc.stderr.strip().splitlines()
    assert note.startswith("moogle: chocobo 1 is not running yet; its tasks wait in its queue")
    assert error.startswith("orch-mcp: 1 task(s) unreported; are their chocobos running?")
