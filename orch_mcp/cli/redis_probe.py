"""What answers on a local Redis port, and whether `orch-mcp redis start` started it, asked of the server itself.

A daemon started by `orch-mcp redis start` keeps its pidfile and log in its data directory
(`<dir>/redis.pid`, `<dir>/redis.log`), and the server reports all three (CONFIG GET), so `redis
status` and `redis stop` recognise it whatever ORCH_STATE_DIR says in the shell that asks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

PIDFILE = "redis.pid"
LOGFILE = "redis.log"
#: How long a server that took the connection has to answer before it counts as not answering (hung).
ANSWER_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Found:
    """A server that answered on the port."""

    pid: int
    #: e.g. "Redis 6.2.14" or "Valkey 9.1.0".
    version: str
    #: Its data directory, pidfile and log, as the server reports them (None if it does not say).
    data_dir: str | None
    pidfile: str | None
    logfile: str | None
    #: True if `orch-mcp redis start` started it: its pidfile and log sit in its data directory, and
    #: the pidfile names this very process.
    ours: bool


def probe(host: str, port: int) -> Found | None:
    """The server answering on host:port, or None if nothing does (one attempt, a second at most)."""
    client = redis.Redis(
        host=host,
        port=port,
        socket_timeout=ANSWER_TIMEOUT_S,
        socket_connect_timeout=1,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),  # "nothing listens" is an answer here, not a failure to retry
    )
    try:
        info = client.info("server")
        settings: dict[str, str] = {}
        try:
            for name in ("dir", "pidfile", "logfile"):
                settings.update({str(k): str(v) for k, v in client.config_get(name).items()})
        except redis.RedisError:  # CONFIG refused or renamed: a server we cannot vouch for
            pass
    except redis.RedisError:
        return None
    finally:
        client.close()
    pid = int(info.get("process_id", -1))
    data_dir, pidfile, logfile = (settings.get(name) or None for name in ("dir", "pidfile", "logfile"))
    ours = (
        data_dir is not None
        and pidfile is not None
        and pidfile == str(Path(data_dir) / PIDFILE)
        and logfile == str(Path(data_dir) / LOGFILE)
        and read_pid(Path(pidfile)) == pid
    )
    if "valkey_version" in info:
        version = f"Valkey {info['valkey_version']}"
    else:
        version = f"Redis {info.get('redis_version', '?')}"
    return Found(pid, version, data_dir, pidfile, logfile, ours)


def read_pid(path: Path) -> int | None:
    """The pid in a pidfile, or None if there is none."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    """True if process `pid` exists and has not exited (a zombie, exited but not yet reaped, has)."""
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


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
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
