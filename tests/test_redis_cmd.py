"""`orch-mcp redis start|stop|status`: a real redis-server daemon with AOF under a (temporary) state directory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cli_helpers import one_error_line, orch, run_main

from orch_mcp.cli import redis_cmd, redis_probe
from orch_mcp.embedded import free_port


@pytest.fixture
def daemon_env(tmp_path: Path, env_for: dict[str, str]) -> Iterator[tuple[dict[str, str], int]]:
    """An environment with a private state dir, and a free port; whatever was started there is stopped after."""
    env = {**env_for, "ORCH_STATE_DIR": str(tmp_path / "state")}
    port = free_port()
    yield env, port
    orch("redis", "stop", "--port", str(port), env=env)
    pidfile = tmp_path / "state" / f"redis-{port}" / "redis.pid"
    if pidfile.exists():  # stop failed: do not leave a daemon behind
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_start_status_stop_and_data_survives_a_restart(daemon_env: tuple[dict[str, str], int], tmp_path: Path) -> None:
    env, port = daemon_env
    data_dir = tmp_path / "state" / f"redis-{port}"
    url = f"redis://127.0.0.1:{port}/0"

    before = orch("redis", "status", "--port", str(port), env=env)
    assert before.returncode == 1
    assert before.stdout.strip() == f"not running (start it with `orch-mcp redis start --port {port}`)"

    started = orch("redis", "start", "--port", str(port), env=env)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith(f"Redis started at {url} (pid ")
    assert f"AOF on, data in {data_dir})" in started.stdout and f"REDIS_URL={url}" in started.stdout

    again = orch("redis", "start", "--port", str(port), env=env)
    assert again.returncode == 0 and again.stdout.startswith(f"Redis already running at {url}")

    status = orch("redis", "status", "--port", str(port), "--json", env=env)
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert (info["running"], info["url"], info["data_dir"]) == (True, url, str(data_dir))
    assert Path(data_dir / "redis.pid").read_text().strip() == str(info["pid"])
    text = orch("redis", "status", "--port", str(port), env=env).stdout
    assert text.startswith(f"running at {url}\n") and f"pid       {info['pid']}" in text

    with redis.Redis.from_url(url, decode_responses=True) as client:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("dir") == {"dir": str(data_dir)}
        client.set("survives", "a restart")

    stopped = orch("redis", "stop", "--port", str(port), env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"Redis at {url} stopped (pid {info['pid']}); data kept in {data_dir}"
    assert not (data_dir / "redis.pid").exists()
    assert orch("redis", "status", "--port", str(port), env=env).returncode == 1

    assert orch("redis", "start", "--port", str(port), env=env).returncode == 0
    with redis.Redis.from_url(url, decode_responses=True) as client:
        assert client.get("survives") == "a restart"  # replayed from the AOF


def test_stop_when_nothing_runs(daemon_env: tuple[dict[str, str], int]) -> None:
    env, port = daemon_env
    proc = orch("redis", "stop", "--port", str(port), env=env)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"no orch-mcp Redis runs on port {port}; nothing to stop"


def test_a_foreign_redis_on_the_port_is_left_alone(daemon_env: tuple[dict[str, str], int], redis_url: str) -> None:
    env, _ = daemon_env
    port = redis_url.rsplit(":", 1)[1].split("/")[0]  # the test server: not started by `orch-mcp redis`
    start = orch("redis", "start", "--port", port, env=env)
    assert start.returncode == 1
    assert one_error_line(start).startswith(
        f"orch-mcp: another Redis (not started by orch-mcp) already listens on 127.0.0.1:{port}"
    )
    status = orch("redis", "status", "--port", port, env=env)
    assert status.returncode == 1 and "another Redis, not started by orch-mcp" in status.stdout
    stop = orch("redis", "stop", "--port", port, env=env)
    assert stop.returncode == 0 and "nothing to stop" in stop.stdout
    with redis.Redis.from_url(redis_url) as client:
        assert client.ping()


def test_status_and_stop_find_it_from_another_state_dir_and_stop_waits_for_the_exit(
    daemon_env: tuple[dict[str, str], int], tmp_path: Path
) -> None:
    env, port = daemon_env
    url = f"redis://127.0.0.1:{port}/0"
    # started from tmp_path with a relative state dir: the server gets absolute paths (it changes into its dir)
    started = subprocess.run(
        [sys.executable, "-m", "orch_mcp", "redis", "start", "--port", str(port)],
        env={**env, "ORCH_STATE_DIR": "state"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    data_dir = tmp_path / "state" / f"redis-{port}"
    assert started.returncode == 0, started.stderr
    assert f"data in {data_dir})" in started.stdout
    pid = int((data_dir / "redis.pid").read_text())

    other = {**env, "ORCH_STATE_DIR": str(tmp_path / "elsewhere")}
    status = orch("redis", "status", "--port", str(port), env=other)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == f"running at {url}" and f"  pid       {pid}" in lines
    assert f"  data dir  {data_dir} (AOF on)" in lines
    assert lines[-1].startswith(f"  note      started with another state dir than this shell's ({tmp_path}/elsewhere/")
    info = json.loads(orch("redis", "status", "--port", str(port), "--json", env=other).stdout)
    assert (info["running"], info["elsewhere"], info["data_dir"], info["pid"]) == (True, True, str(data_dir), pid)
    assert info["version"].split()[0] in ("Redis", "Valkey")

    stopped = orch("redis", "stop", "--port", str(port), env=other)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"Redis at {url} stopped (pid {pid}); data kept in {data_dir}"
    # "stopped" means exited: the process is gone (or a zombie its parent has not reaped) and the port is closed
    assert not redis_probe.alive(pid)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert not (data_dir / "redis.pid").exists()


def test_a_server_that_does_not_answer_is_reported_with_its_pid(
    daemon_env: tuple[dict[str, str], int], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    env, port = daemon_env
    assert orch("redis", "start", "--port", str(port), env=env).returncode == 0
    pidfile = Path(env["ORCH_STATE_DIR"]) / f"redis-{port}" / "redis.pid"
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGSTOP)  # hung: it accepts connections (the kernel does) but answers nothing
    # `redis status` in this process, so that the hung server is given 0.2 s to answer instead of 2 s: it never will.
    monkeypatch.setattr(redis_probe, "ANSWER_TIMEOUT_S", 0.2)
    try:
        status = run_main(["-m", "orch_mcp", "redis", "status", "--port", str(port)], env, monkeypatch, capfd)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert status.returncode == 1
    assert status.stdout.strip() == (
        f"not answering at redis://127.0.0.1:{port}/0, but redis-server pid {pid} (from {pidfile}) is alive: "
        f"stop it with `kill {pid}`"
    )


def test_state_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ORCH_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert redis_cmd.data_dir(6379) == tmp_path / "xdg" / "orch-mcp" / "redis"
    assert redis_cmd.data_dir(7000) == tmp_path / "xdg" / "orch-mcp" / "redis-7000"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert redis_cmd.data_dir(6379) == tmp_path / "home" / ".local" / "state" / "orch-mcp" / "redis"
    monkeypatch.setenv("ORCH_STATE_DIR", str(tmp_path / "mine"))
    assert redis_cmd.pidfile(6379) == tmp_path / "mine" / "redis" / "redis.pid"
