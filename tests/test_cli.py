"""The seed's command-line tools (rpush, blpop, init_orch) as subprocesses against a real Redis.

Each is run the way the seed shows (`python -m orch_mcp.cli.<tool>`) and through `orch-mcp <command>`;
outputs and exit codes are checked: 0 ok, 1 runtime error (and blpop timing out empty), 2 bad flags;
errors are one line on stderr without a traceback, including when Redis is unreachable. The two tables of
usage errors and of an unreachable Redis run most cases through the command's `main(argv)` in the test process
(see AS_PROCESSES).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
from cli_helpers import LineReader, finish, one_error_line, orch, run_cli, run_main

from orch_mcp.embedded import free_port
from orch_mcp.messages import TaskMessage
from orch_mcp.utils import short_hostname

RPUSH = ["-m", "orch_mcp.cli.rpush"]
BLPOP = ["-m", "orch_mcp.cli.blpop"]
INIT = ["-m", "orch_mcp.cli.init_orch"]


@pytest.fixture
def rc(redis_url: str) -> Iterator[redis.Redis]:
    """A plain sync client on the test server, to look at what the commands did."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


# ---------------------------------------------------------------- rpush


def test_rpush_one_message(env_for: dict[str, str], rc: redis.Redis) -> None:
    proc = run_cli([*RPUSH, "my-queue", "Hello, World!"], env_for)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "pushed 1 message onto my-queue (length now 1)\n"
    assert rc.lrange("my-queue", 0, -1) == ["Hello, World!"]


def test_rpush_several_messages_as_json(env_for: dict[str, str], rc: redis.Redis) -> None:
    proc = run_cli([*RPUSH, "my-queue", "msg1", "msg2", "msg3", "--json"], env_for)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "queue": "my-queue",
        "pushed": 3,
        "length": 3,
        "channel": None,
        "receivers": None,
    }
    assert rc.lrange("my-queue", 0, -1) == ["msg1", "msg2", "msg3"]


def test_rpush_from_stdin(env_for: dict[str, str], rc: redis.Redis) -> None:
    proc = run_cli([*RPUSH, "--stdin", "my-queue"], env_for, input="msg1\nmsg2\n\n")
    assert proc.returncode == 0, proc.stderr
    assert "pushed 2 messages" in proc.stdout
    assert rc.lrange("my-queue", 0, -1) == ["msg1", "msg2"]


def test_rpush_empty_stdin_is_an_error(env_for: dict[str, str]) -> None:
    proc = run_cli([*RPUSH, "--stdin", "my-queue"], env_for, input="")
    assert proc.returncode == 1
    assert "nothing to push" in one_error_line(proc)


def test_rpush_with_channel_publishes(env_for: dict[str, str], rc: redis.Redis) -> None:
    pubsub = rc.pubsub()
    pubsub.subscribe("monitor-channel")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    proc = run_cli([*RPUSH, "--channel", "monitor-channel", "my-queue", '{"type":"task"}'], env_for)
    assert proc.returncode == 0, proc.stderr
    assert "published on monitor-channel to 1 subscriber" in proc.stdout
    message = pubsub.get_message(timeout=5)
    assert message is not None and message["data"] == '{"type":"task"}'
    assert rc.lrange("my-queue", 0, -1) == ['{"type":"task"}']
    pubsub.close()


def test_rpush_channel_counts_each_publish_once(env_for: dict[str, str], rc: redis.Redis) -> None:
    """Three messages to two subscribers: each publish reaches 2, and 2 is the count (not 6, a sum over publishes)."""
    listeners = [rc.pubsub() for _ in range(2)]
    for pubsub in listeners:
        pubsub.subscribe("monitor-channel")
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    proc = run_cli([*RPUSH, "--channel", "monitor-channel", "my-queue", "a", "b", "c", "--json"], env_for)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "queue": "my-queue",
        "pushed": 3,
        "length": 3,
        "channel": "monitor-channel",
        "receivers": 2,
    }
    proc = run_cli([*RPUSH, "--channel", "monitor-channel", "my-queue", "d", "e"], env_for)
    assert (
        proc.stdout
        == "pushed 2 messages onto my-queue (length now 5); published each on monitor-channel to 2 subscribers\n"
    )
    for pubsub in listeners:
        heard = [pubsub.get_message(timeout=5) for _ in range(5)]
        assert [m["data"] for m in heard if m is not None] == ["a", "b", "c", "d", "e"]
        pubsub.close()


def test_rpush_with_host_and_port(env_for: dict[str, str], redis_url: str, rc: redis.Redis) -> None:
    env = {k: v for k, v in env_for.items() if k != "REDIS_URL"}
    host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proc = run_cli([*RPUSH, "--host", host, "--port", port, "my-queue", "message"], env)
    assert proc.returncode == 0, proc.stderr
    assert rc.lrange("my-queue", 0, -1) == ["message"]


def test_rpush_url_flag_wins_over_environment(env_for: dict[str, str], redis_url: str, rc: redis.Redis) -> None:
    env = {**env_for, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    proc = orch("rpush", "--url", redis_url, "q", "via-flag", env=env)
    assert proc.returncode == 0, proc.stderr
    assert rc.lrange("q", 0, -1) == ["via-flag"]


# ---------------------------------------------------------------- blpop


def test_blpop_one_message(env_for: dict[str, str], rc: redis.Redis) -> None:
    rc.rpush("my-queue", "first", "second")
    proc = run_cli([*BLPOP, "my-queue"], env_for)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "first\n"
    assert rc.lrange("my-queue", 0, -1) == ["second"]


def test_blpop_count_stops_at_timeout_with_what_it_got(env_for: dict[str, str], rc: redis.Redis) -> None:
    rc.rpush("my-queue", "a", "b", "c")
    proc = run_cli([*BLPOP, "my-queue", "--count", "5", "--timeout", "0.3"], env_for)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["a", "b", "c"]


def test_blpop_count_stops_at_count(env_for: dict[str, str], rc: redis.Redis) -> None:
    rc.rpush("my-queue", "a", "b", "c")
    proc = orch("blpop", "my-queue", "--count", "2", env=env_for)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["a", "b"]
    assert rc.lrange("my-queue", 0, -1) == ["c"]


def test_blpop_timeout_with_nothing_is_exit_1(env_for: dict[str, str]) -> None:
    proc = run_cli([*BLPOP, "empty-queue", "--timeout", "0.2"], env_for)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert one_error_line(proc) == "orch-mcp: no message on empty-queue within 0.2 s"


def test_blpop_parse_shows_fields_and_bad_messages(env_for: dict[str, str], rc: redis.Redis) -> None:
    task = TaskMessage.create("Summarise the notes", "s1", 2, context={"k": "v"})
    rc.rpush("my-queue", task.to_json(), "not json")
    proc = run_cli([*BLPOP, "my-queue", "--parse", "--count", "2"], env_for)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "my-queue: task message"
    assert f"  task_id: {task.task_id}" in lines
    assert "  prompt: Summarise the notes" in lines
    assert "  child_id: 2" in lines
    assert '  context: {"k": "v"}' in lines
    assert any(line.startswith("my-queue: not a valid message (message is not valid JSON") for line in lines)
    assert "  raw: not json" in lines


def test_blpop_json_is_one_document_per_message(env_for: dict[str, str], rc: redis.Redis) -> None:
    task = TaskMessage.create("p", "s1", 1)
    rc.rpush("my-queue", task.to_json(), "plain")
    proc = orch("blpop", "my-queue", "--count", "2", "--json", env=env_for)
    assert proc.returncode == 0, proc.stderr
    first, second = (json.loads(line) for line in proc.stdout.splitlines())
    assert first["queue"] == "my-queue" and first["data"] == task.to_json()
    assert first["message"]["task_id"] == task.task_id and first["parse_error"] is None
    assert second["data"] == "plain" and second["message"] is None and "not valid JSON" in second["parse_error"]


def test_blpop_several_queues(env_for: dict[str, str], rc: redis.Redis) -> None:
    rc.rpush("q2", "from-q2")
    proc = run_cli([*BLPOP, "q1", "q2", "--timeout", "1"], env_for)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "q2: from-q2\n"


def test_blpop_continuous_until_ctrl_c(env_for: dict[str, str], rc: redis.Redis) -> None:
    proc = subprocess.Popen(
        [sys.executable, *BLPOP, "live-queue", "--continuous", "--timeout", "0.3"],
        env=env_for,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out = LineReader(proc.stdout)  # type: ignore[arg-type]
        rc.rpush("live-queue", "one")
        assert out.next() == "one"
        rc.rpush("live-queue", "two", "three")
        assert [out.next(), out.next()] == ["two", "three"]
        # Several timeouts may pass: continuous mode keeps waiting until interrupted.
        rc.rpush("live-queue", "four")
        assert out.next() == "four"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        finish(proc)
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert err.strip() == "stopped after 4 messages"


# ---------------------------------------------------------------- init_orch


def test_init_normal_mode(env_for: dict[str, str], rc: redis.Redis) -> None:
    proc = run_cli(INIT, env_for)
    assert proc.returncode == 0, proc.stderr
    prefix = f"{{test-{short_hostname()}-001}}"
    assert f"  prefix          {prefix}" in proc.stdout.splitlines()
    assert f"{prefix}:tasks:3" in proc.stdout and f"{prefix}:reports:1" in proc.stdout
    assert "orch-mcp scenario chocobo --session-id" in proc.stdout
    assert rc.exists(f"{prefix}:config")


def test_init_with_prefix_and_get_by_prefix(env_for: dict[str, str]) -> None:
    made = run_cli([*INIT, "--max-children", "5", "--prefix", "myproject", "--ttl", "120", "--json"], env_for)
    assert made.returncode == 0, made.stderr
    session = json.loads(made.stdout)
    assert (session["prefix"], session["mode"], session["max_children"], session["ttl_s"]) == (
        "{myproject-001}",
        "normal",
        5,
        120,
    )
    got = run_cli([*INIT, "get", "--prefix", "myproject-001", "--json"], env_for)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["session_id"] == session["session_id"]


def test_init_summoner_mode_json_get_list_cleanup(env_for: dict[str, str], rc: redis.Redis) -> None:
    made = run_cli([*INIT, "--summoner-mode", "--max-children", "3", "--json"], env_for)
    assert made.returncode == 0, made.stderr
    session = json.loads(made.stdout)
    sid = session["session_id"]
    assert session["mode"] == "summoner" and session["prefix"] == f"summoner:{{{sid}}}"
    assert session["monitor_channel"] == f"summoner:{{{sid}}}:monitor"
    assert set(session["report_queues"].values()) == {f"summoner:{{{sid}}}:reports"}

    got = orch("init", "get", "--session-id", sid, env=env_for)
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith(f"session {sid}\n") and "monitor channel" in got.stdout

    listed = orch("init", "list", "--json", env=env_for)
    assert [s["session_id"] for s in json.loads(listed.stdout)["sessions"]] == [sid]

    gone = run_cli([*INIT, "cleanup", "--session-id", sid], env_for)
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.startswith(f"removed session {sid} (summoner:{{{sid}}}): ")
    assert not rc.exists(f"summoner:{{{sid}}}:config")

    again = run_cli([*INIT, "get", "--session-id", sid], env_for)
    assert again.returncode == 1
    assert one_error_line(again).startswith(f"orch-mcp: session '{sid}' not found in namespace 'test'")


def test_init_namespace_flag(env_for: dict[str, str]) -> None:
    made = orch("init", "--summoner-mode", "--namespace", "team-b", "--json", env=env_for)
    assert json.loads(made.stdout)["namespace"] == "team-b"
    assert json.loads(orch("init", "list", "--json", env=env_for).stdout)["sessions"] == []
    listed = orch("init", "list", "--namespace", "team-b", "--json", env=env_for)
    assert len(json.loads(listed.stdout)["sessions"]) == 1


def test_init_bad_session_id_is_one_line(env_for: dict[str, str]) -> None:
    proc = run_cli([*INIT, "get", "--session-id", "a*b"], env_for)
    assert proc.returncode == 1
    assert one_error_line(proc).startswith("orch-mcp: invalid session id 'a*b'")


# ---------------------------------------------------------------- usage errors and an unreachable Redis

# The two tables below run each case in this process, through the module's `main(argv)` (what its `__main__`
# runs), except these cases: one per kind of entry point (`python -m orch_mcp`, the `orch-mcp` console script's
# module; `python -m orch_mcp.cli.<tool>`; a scenario module), run as real processes, so that what a process
# does with main's result (exit code, stderr, no traceback) is proven too.
AS_PROCESSES = {
    "-m orch_mcp nosuchcommand",
    "-m orch_mcp.cli.rpush my-queue --bogus",
    "-m orch_mcp.scenarios.summoner_scenario --bogus",
    "-m orch_mcp status",
    "-m orch_mcp.cli.rpush q m",
    "-m orch_mcp.scenarios.summoner_scenario",
}


def run_case(
    args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> subprocess.CompletedProcess[str]:
    """A table's case: as a process if it is one of AS_PROCESSES, else in this process."""
    if " ".join(args) in AS_PROCESSES:
        return run_cli(args, env)
    return run_main(args, env, monkeypatch, capfd)


def test_each_kind_of_entry_point_runs_as_a_process_in_the_tables() -> None:
    assert {" ".join(a) for a in BAD_FLAGS + UNREACHABLE if " ".join(a) in AS_PROCESSES} == AS_PROCESSES


BAD_FLAGS = [
    [*RPUSH, "my-queue", "--bogus"],
    [*RPUSH],
    [*RPUSH, "my-queue"],
    [*RPUSH, "--port", "99999", "q", "m"],
    [*BLPOP],
    [*BLPOP, "q", "--count", "0"],
    [*BLPOP, "q", "--timeout", "soon"],
    [*INIT, "--max-children", "0"],
    [*INIT, "--summoner-mode", "--prefix", "x"],
    [*INIT, "get"],
    [*INIT, "cleanup", "--session-id", "a", "--prefix", "b"],
    ["-m", "orch_mcp", "nosuchcommand"],
    ["-m", "orch_mcp", "scenario", "dragon"],
    ["-m", "orch_mcp", "status", "--events", "many"],
    ["-m", "orch_mcp", "watch", "--bogus"],
    ["-m", "orch_mcp", "redis", "restart"],
    ["-m", "orch_mcp", "demo", "--children", "0"],
    ["-m", "orch_mcp"],
    ["-m", "orch_mcp.cli.main"],
    ["-m", "orch_mcp", "scenario"],
    ["-m", "orch_mcp.scenarios.moogle_scenario", "--tasks"],
    ["-m", "orch_mcp.scenarios.chocobo_scenario", "--child-id", "0"],
    ["-m", "orch_mcp.scenarios.summoner_scenario", "--bogus"],
    ["-m", "orch_mcp", "serve", "--role", "moogle", "--child-id", "2"],
    ["-m", "orch_mcp.serve", "--bogus"],
    ["-m", "orch_mcp", "status", "one", "--prefix", "two"],
    ["-m", "orch_mcp", "redis", "status", "--url", "redis://127.0.0.1:6379/0"],
    ["-m", "orch_mcp.cli.redis_cmd", "stop", "--port", "0"],
    [*RPUSH, "--url", "http://localhost", "q", "m"],
    [*INIT, "--url", "redis://127.0.0.1:6379/0", "--port", "6380"],
    [*INIT, "list", "--namespace", "a b"],
    ["-m", "orch_mcp.cli.watch", "--session-id"],
]


@pytest.mark.parametrize("args", BAD_FLAGS, ids=lambda a: " ".join(a[1:]))
def test_bad_flags_exit_2_with_one_line(
    args: list[str], env_for: dict[str, str], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    proc = run_case(args, env_for, monkeypatch, capfd)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    line = one_error_line(proc)
    assert line.startswith(("python -m orch_mcp", "orch-mcp")), line
    assert proc.stdout == ""


UNREACHABLE = [
    [*RPUSH, "q", "m"],
    [*BLPOP, "q", "--timeout", "1"],
    [*INIT],
    [*INIT, "--summoner-mode"],
    [*INIT, "get", "--session-id", "abc"],
    [*INIT, "cleanup", "--session-id", "abc"],
    ["-m", "orch_mcp", "status"],
    ["-m", "orch_mcp", "watch"],
    ["-m", "orch_mcp.scenarios.summoner_scenario"],
    ["-m", "orch_mcp.scenarios.moogle_scenario", "--session-id", "abc"],
    ["-m", "orch_mcp.scenarios.chocobo_scenario", "--session-id", "abc", "--child-id", "1"],
    ["-m", "orch_mcp", "demo", "--json", "--url"],
    [*INIT, "list"],
    ["-m", "orch_mcp", "init", "list", "--json"],
    ["-m", "orch_mcp", "status", "--session-id", "abc"],
    ["-m", "orch_mcp.cli.status", "abc"],
    ["-m", "orch_mcp.cli.watch"],
    ["-m", "orch_mcp", "scenario", "chocobo", "--child-id", "1"],
]


@pytest.mark.parametrize("args", UNREACHABLE, ids=lambda a: " ".join(a[1:]))
def test_unreachable_redis_exit_1_with_one_line(
    args: list[str], env_for: dict[str, str], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    env = {**env_for, "REDIS_URL": closed}
    proc = run_case([*args, closed] if args[-1] == "--url" else args, env, monkeypatch, capfd)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    line = one_error_line(proc)
    assert line.startswith(f"orch-mcp: Redis at {closed} is unreachable"), line
    assert "orch-mcp redis start" in line


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("REDIS_URL", "http://nope", "REDIS_URL='http://nope' has an unsupported scheme"),
        ("REDIS_PORT", "lots", "REDIS_PORT='lots' is not a whole number"),
        ("ORCH_NAMESPACE", "a b", "ORCH_NAMESPACE: invalid namespace 'a b'"),
    ],
)
def test_a_bad_setting_in_the_environment_is_a_usage_error(
    env_for: dict[str, str], variable: str, value: str, message: str
) -> None:
    env = {k: v for k, v in env_for.items() if k != "REDIS_URL"}
    for args in ([*INIT, "list"], ["-m", "orch_mcp", "status"]):
        proc = run_cli(args, {**env, variable: value})
        assert proc.returncode == 2, (args, proc.stderr)
        line = one_error_line(proc)
        assert message in line and line.endswith("--help`)"), line


def test_a_flag_shadows_a_bad_variable_it_replaces(env_for: dict[str, str], redis_url: str, rc: redis.Redis) -> None:
    env = {**env_for, "REDIS_URL": "not a url", "ORCH_NAMESPACE": "a b"}
    proc = run_cli([*RPUSH, "--url", redis_url, "q", "m"], env)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli([*INIT, "list", "--url", redis_url, "--namespace", "fine"], env)
    assert proc.returncode == 0 and proc.stdout == "no live sessions in namespace fine\n", proc.stderr


def test_init_help_shows_the_subcommand_as_optional(env_for: dict[str, str]) -> None:
    for args, prog in ([INIT, "python -m orch_mcp.cli.init_orch"], [["-m", "orch_mcp", "init"], "orch-mcp init"]):
        proc = run_cli([*args, "--help"], env_for)
        assert proc.returncode == 0, proc.stderr
        usage = proc.stdout.split("\n\n", 1)[0].splitlines()
        assert usage[0].startswith(f"usage: {prog} [options] ") and usage[0].endswith("   create a session")
        assert usage[1].strip().startswith(f"{prog} {{get,list,cleanup}} [options]")
        assert "subcommands (optional: without one, init creates a session):" in proc.stdout


def test_help_exits_0(env_for: dict[str, str]) -> None:
    for args in ([*RPUSH, "--help"], [*BLPOP, "--help"], [*INIT, "--help"], ["-m", "orch_mcp", "--help"]):
        proc = run_cli(args, env_for)
        assert proc.returncode == 0 and proc.stdout.startswith("usage:"), (args, proc.stderr)
    top = orch("--help", env=env_for).stdout
    for command in ("serve", "init", "rpush", "blpop", "scenario", "demo", "watch", "status", "redis"):
        assert f"  {command} " in top
