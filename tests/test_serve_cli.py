"""`orch-mcp serve`: flags and their environment twins, one-line usage errors, stdio and streamable HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from cli_helpers import run_main
from mcp import Client
from mcp_helpers import error, ok, serve_params

from orch_mcp.embedded import free_port
from orch_mcp.redis_client import Redis
from orch_mcp.serve import UsageError, load_settings, parse_settings
from orch_mcp.server.app import ROLE_TOOLS
from orch_mcp.sessions import init_session

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "REDIS_"))}


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orch_mcp", "serve", *args],
        env={**CLEAN_ENV, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "no role given: pass --role summoner, --role moogle or --role chocobo (or set ORCH_ROLE)"),
        (["--role", "wizard"], {}, "unknown role 'wizard': use --role summoner, moogle or chocobo"),
        (["--role", "chocobo"], {}, "a chocobo needs its child id: pass --child-id N (or set ORCH_CHILD_ID)"),
        ([], {"ORCH_ROLE": "chocobo"}, "a chocobo needs its child id"),
        (
            ["--role", "chocobo", "--child-id", "two"],
            {},
            "argument --child-id: 'two' is not a whole number; use 1 or more",
        ),
        (["--role", "chocobo"], {"ORCH_CHILD_ID": "0"}, "ORCH_CHILD_ID='0' is out of range; use 1 or more"),
        (
            ["--role", "moogle", "--url", "http://localhost"],
            {},
            "argument --url: 'http://localhost' has an unsupported",
        ),
        (["--role", "moogle"], {"REDIS_URL": "localhost:6379"}, "REDIS_URL='localhost:6379' has an unsupported scheme"),
        (["--role", "moogle", "--redis-url", "redis://:x"], {}, "is not a valid URL"),
        (
            ["--role", "moogle", "--transport", "http", "--http-port", "70000"],
            {},
            "argument --http-port: 70000 is out of range; use 1..65535",
        ),
        (["--role", "moogle"], {"ORCH_TRANSPORT": "carrier-pigeon"}, "unknown transport 'carrier-pigeon'"),
        (["--role", "moogle", "--namespace", "a b"], {}, "invalid namespace 'a b'"),
        (["--role", "moogle", "--session-id", "*"], {}, "invalid session id '*'"),
        (["--role", "moogle"], {"REDIS_PORT": "lots"}, "REDIS_PORT='lots' is not a whole number"),
        (["--role", "moogle", "--verbose"], {}, "unrecognized arguments: --verbose"),
        (["--role"], {}, "argument --role: expected one argument"),
        # combinations that make no sense
        (["--role", "moogle", "--child-id", "2"], {}, "--child-id is for a chocobo only, and this is a moogle"),
        (["--child-id", "1"], {"ORCH_ROLE": "summoner"}, "--child-id is for a chocobo only, and this is a summoner"),
        (["--role", "moogle", "--http-port", "9000"], {}, "--http-port applies to --transport http only"),
        (
            ["--role", "chocobo", "--child-id", "1", "--http-host", "0.0.0.0", "--http-port", "9000"],
            {"ORCH_TRANSPORT": "stdio"},
            "--http-host and --http-port apply to --transport http only: add --transport http, or drop them",
        ),
        (["--role", "moogle", "--url", "redis://db:6379/0", "--port", "6380"], {}, "--url names the whole server"),
        (["--role", "moogle", "--port", "0"], {}, "argument --port: 0 is out of range; use 1..65535"),
        (
            ["--role", "moogle"],
            {"ORCH_LOG_LEVEL": "LOUD"},
            "ORCH_LOG_LEVEL: unknown log level 'LOUD': use DEBUG, INFO, WARNING, ERROR or CRITICAL",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    args: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    if not args and not env:  # the first case as a real process, the others through serve's main in this one
        done = run_serve(*args, env=env)
    else:
        done = run_main(["-m", "orch_mcp", "serve", *args], {**CLEAN_ENV, **env}, monkeypatch, capfd)
    assert done.returncode == 2, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("orch-mcp serve: ") and message in lines[0], lines[0]
    assert lines[0].endswith("(see `orch-mcp serve --help`)")


def test_help_lists_every_flag_its_variable_the_choices_and_examples() -> None:
    done = run_serve("--help")
    assert done.returncode == 0 and done.stderr == ""
    for flag, var in [
        ("--role", "ORCH_ROLE"),
        ("--session-id", "ORCH_SESSION_ID"),
        ("--child-id", "ORCH_CHILD_ID"),
        ("--namespace", "ORCH_NAMESPACE"),
        ("--redis-url", "REDIS_URL"),
        ("--transport", "ORCH_TRANSPORT"),
        ("--http-host", "ORCH_HTTP_HOST"),
        ("--http-port", "ORCH_HTTP_PORT"),
        ("--host", "REDIS_HOST"),
        ("--port", "REDIS_PORT"),
        ("--db", "REDIS_DB"),
        ("--password", "REDIS_PASSWORD"),
    ]:
        assert flag in done.stdout and var in done.stdout
    assert "--url" in done.stdout
    assert "{summoner,moogle,chocobo}" in done.stdout and "{stdio,http}" in done.stdout
    assert "examples:\n  orch-mcp serve --role summoner\n" in done.stdout
    assert "http://127.0.0.1:8001/mcp" in done.stdout


def test_every_connection_flag_of_the_other_commands_and_flags_shadow_their_variables() -> None:
    env = {"ORCH_ROLE": "moogle", "REDIS_URL": "not a url", "REDIS_HOST": "far", "REDIS_PORT": "lots"}
    s = parse_settings(["--host", "near", "--port", "7001", "--db", "2", "--password", "pw"], env)
    assert s.orch.redis.redis_url == "redis://:pw@near:7001/2"
    s = parse_settings(["--port", "7002"], {**env, "REDIS_PORT": "lots", "REDIS_HOST": "cache"})
    assert s.orch.redis.redis_url == "redis://cache:7002/0"  # REDIS_URL is replaced by any connection flag
    # ORCH_CHILD_ID in an environment a team shares does not stop a moogle; the flag would
    assert parse_settings([], {"ORCH_ROLE": "moogle", "ORCH_CHILD_ID": "2"}).child_id is None


def test_environment_twins_and_defaults() -> None:
    s = parse_settings([], {"ORCH_ROLE": "chocobo", "ORCH_CHILD_ID": "3", "REDIS_URL": "redis://db:6380/2"})
    assert (s.role, s.child_id, s.session_id, s.namespace) == ("chocobo", 3, "current", "orch")
    assert (s.transport, s.http_host, s.http_port) == ("stdio", "127.0.0.1", 8000)
    assert s.orch.redis.redis_url == "redis://db:6380/2"
    env = {
        "ORCH_ROLE": "moogle",
        "ORCH_SESSION_ID": "s1",
        "ORCH_NAMESPACE": "team-a",
        "ORCH_TRANSPORT": "http",
        "ORCH_HTTP_HOST": "0.0.0.0",
        "ORCH_HTTP_PORT": "9000",
        "ORCH_HTTP_TOKEN": "a-token-of-16-chars-or-more",  # a host other machines can reach needs one
        "ORCH_HTTP_ALLOWED_HOSTS": "orch.lan, 10.0.0.5",
        "ORCH_MAX_MESSAGE_BYTES": "2048",
        "REDIS_HOST": "cache",
        "REDIS_PORT": "7000",
    }
    s = parse_settings([], env)
    assert (s.role, s.session_id, s.namespace, s.transport, s.http_host, s.http_port) == (
        "moogle",
        "s1",
        "team-a",
        "http",
        "0.0.0.0",
        9000,
    )
    assert s.orch.redis.redis_url == "redis://cache:7000/0" and s.orch.max_message_bytes == 2048
    assert (s.http_token, s.http_allowed_hosts) == ("a-token-of-16-chars-or-more", ("orch.lan", "10.0.0.5"))
    assert "a-token-of" not in repr(s)
    assert s.child_id is None  # a child id only matters to a chocobo


def test_the_log_level_is_a_setting_of_any_case() -> None:
    assert load_settings(["--role", "moogle"], {"ORCH_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    assert load_settings(["--role", "moogle"], {"ORCH_LOG_LEVEL": ""}).log_level == "WARNING"  # empty = unset


def test_flags_win_over_the_environment() -> None:
    env = {
        "ORCH_ROLE": "summoner",
        "ORCH_NAMESPACE": "bad namespace",  # never read: the flag replaces it
        "REDIS_URL": "not a url",  # never read either
        "ORCH_CHILD_ID": "1",
        "ORCH_HTTP_PORT": "1234",
    }
    argv = ["--role", "chocobo", "--child-id", "2", "--namespace", "ns", "--url", "unix:///tmp/r.sock"]
    argv += ["--transport", "streamable-http", "--http-port", "4321", "--session-id", "abc"]
    s = parse_settings(argv, env)
    assert (s.role, s.child_id, s.namespace, s.session_id) == ("chocobo", 2, "ns", "abc")
    assert s.orch.redis.redis_url == "unix:///tmp/r.sock"
    assert (s.transport, s.http_port) == ("http", 4321)
    with pytest.raises(UsageError, match="invalid namespace 'bad namespace'"):
        parse_settings(["--role", "moogle"], {"ORCH_NAMESPACE": "bad namespace"})


async def test_stdio_server_from_environment_only(env_for: dict[str, str]) -> None:
    env = {**env_for, "ORCH_ROLE": "chocobo", "ORCH_CHILD_ID": "2"}
    params = serve_params("chocobo", env)
    params.args = ["-m", "orch_mcp", "serve"]  # no flags at all
    with anyio.fail_after(20):
        async with Client(params) as client:
            assert client.server_info is not None and client.server_info.name == "orch-mcp chocobo 2"
            assert {t.name for t in (await client.list_tools()).tools} == {"wait_for_task", "heartbeat", "report"}
            assert client.instructions is not None and "You are chocobo 2" in client.instructions


async def test_a_server_whose_redis_is_down_starts_and_says_how_to_fix_it(env_for: dict[str, str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with anyio.fail_after(20):
        async with Client(serve_params("moogle", env_for, "--url", url)) as client:
            assert len((await client.list_tools()).tools) == len(ROLE_TOOLS["moogle"])
            calls: list[tuple[str, dict[str, Any]]] = [
                ("send_task", {"child_id": 1, "prompt": "x"}),
                ("wait_for_report", {"timeout_s": 1}),  # tries again while Redis is down, then says so once
            ]
            for tool, args in calls:
                with anyio.fail_after(5):
                    message = error(await client.call_tool(tool, args))
                assert (
                    f"Redis at {url} is unreachable:" in message and "start it with `orch-mcp redis start`" in message
                )


ACCESS_LINE = '"POST /mcp HTTP/1.1"'  # what uvicorn's access log writes for each MCP call


@pytest.mark.parametrize("level", ["WARNING", "INFO"])
async def test_streamable_http_transport(env_for: dict[str, str], level: str) -> None:
    port = free_port()
    script = Path(sys.executable).parent / "orch-mcp"  # the console script, when installed next to this Python
    command = [str(script)] if script.exists() else [sys.executable, "-m", "orch_mcp"]
    command += ["serve", "--role", "summoner", "--transport", "http", "--http-port", str(port)]
    started = f"orch-mcp serve: summoner serving MCP at http://127.0.0.1:{port}/mcp (Ctrl+C to stop)"
    env = {**env_for, "ORCH_LOG_LEVEL": level}
    with anyio.fail_after(30):
        async with await anyio.open_process(command, env=env, stdin=subprocess.DEVNULL) as process:
            assert process.stderr is not None and process.stdout is not None
            err = TextReceiveStream(process.stderr)
            log = ""
            async for chunk in err:
                log += chunk
                if started in log:
                    break
            else:
                pytest.fail(f"the HTTP server did not start: {log}")
            try:
                async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                    assert {t.name for t in (await client.list_tools()).tools} == {
                        "init_session",
                        "get_session",
                        "list_sessions",
                        "cleanup_session",
                        "session_status",
                    }
                    assert ok(await client.call_tool("init_session", {"max_children": 2}))["max_children"] == 2
                    assert ok(await client.call_tool("list_sessions", {}))["current"] is not None
            finally:
                process.terminate()
                assert await process.wait() == 0
            async for chunk in err:
                log += chunk
            out = "".join([chunk async for chunk in TextReceiveStream(process.stdout)])
    calls = 4  # initialize, tools/list and two tools/call: one POST each, at least
    if level == "WARNING":
        assert log.splitlines() == [started], log  # the one line saying where, and nothing per request
    else:
        assert log.count(ACCESS_LINE) >= calls and "uvicorn.access" in log, log
    assert out == ""


def test_a_port_in_use_is_one_line_and_exit_1(env_for: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_serve("--role", "moogle", "--transport", "http", "--http-port", str(port), env=env_for)
    assert done.returncode == 1, done
    assert done.stderr.splitlines() == [
        f"orch-mcp serve: port {port} on 127.0.0.1 is in use: pick another with --http-port (or ORCH_HTTP_PORT)"
    ]
    unknown = run_serve(
        "--role",
        "moogle",
        "--transport",
        "http",
        "--http-host",
        "no-such-host.invalid",
        env={**env_for, "ORCH_HTTP_TOKEN": "a-token-of-16-chars-or-more"},
    )
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert len(unknown.stderr.splitlines()) == 1
    assert unknown.stderr.startswith("orch-mcp serve: cannot listen on 'no-such-host.invalid' (")


async def test_sigterm_stops_a_stdio_chocobo_and_releases_its_claim(r: Redis, env_for: dict[str, str]) -> None:
    session = await init_session(r, namespace="test", max_children=1)
    command = [sys.executable, "-m", "orch_mcp", "serve", "--role", "chocobo", "--child-id", "1"]
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "wait_for_task", "arguments": {"timeout_s": 0}}},
    ]  # fmt: skip
    with anyio.fail_after(30):
        async with await anyio.open_process(command, env=env_for) as process:
            assert process.stdin is not None and process.stdout is not None
            await process.stdin.send("".join(json.dumps(m) + "\n" for m in messages).encode())
            replies = TextReceiveStream(process.stdout)
            received = ""
            async for chunk in replies:
                received += chunk
                if '"id":2' in received.replace(" ", "") and received.endswith("\n"):
                    break
            assert '"status":"timeout"' in received.replace(" ", ""), received
            assert await r.exists(session.keys.presence(1))
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    assert not await r.exists(session.keys.presence(1))


def test_the_example_client_config_is_a_ready_team() -> None:
    config = json.loads((Path(__file__).resolve().parents[1] / "claude_config.example.json").read_text())
    servers = config["mcpServers"]
    team = []
    for entry in servers.values():
        assert entry["command"] == "orch-mcp" and entry["args"][0] == "serve"
        s = parse_settings(entry["args"][1:], entry["env"])
        team.append((s.role, s.child_id, s.orch.redis.redis_url))
    assert sorted(team, key=str) == sorted(
        [("summoner", None, "redis://localhost:6379/0"), ("moogle", None, "redis://localhost:6379/0")]
        + [("chocobo", n, "redis://localhost:6379/0") for n in (1, 2, 3)],
        key=str,
    )


# One interpreter loads the module three times, once per environment (mcp's import is most of its cost); the
# last, a bad role, is left to end the process the way `mcp dev` would see it end.
DEV_MODULE_THRICE = """
import importlib, os, sys
base = dict(os.environ)
for extra in ({}, {"ORCH_ROLE": "chocobo"}, {"ORCH_ROLE": "bard"}):
    os.environ.clear()
    os.environ.update(base, **extra)
    sys.modules.pop("orch_mcp.dev", None)
    d = importlib.import_module("orch_mcp.dev")
    print(d.server.name, len(d.server._tool_manager.list_tools()), flush=True)
"""


def test_the_dev_module_builds_its_server_from_the_environment() -> None:
    done = subprocess.run(
        [sys.executable, "-c", DEV_MODULE_THRICE], env=CLEAN_ENV, capture_output=True, text=True, timeout=60
    )
    moogle, chocobo = len(ROLE_TOOLS["moogle"]), len(ROLE_TOOLS["chocobo"])
    assert done.stdout.splitlines() == [f"orch-mcp moogle {moogle}", f"orch-mcp chocobo 1 {chocobo}"], done.stderr
    assert done.returncode == 1
    assert done.stderr.startswith("orch_mcp/dev.py: ORCH_ROLE: unknown role 'bard'"), done.stderr
