"""Helpers for the command-line tests: run a command as a subprocess, read a live process's output with bounds."""

from __future__ import annotations

import importlib
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import IO

import pytest

from orch_mcp import sync

TIMEOUT_S = 60


def run_cli(
    args: Sequence[str], env: Mapping[str, str], *, input: str | None = None, timeout: float = TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run `python <args>` (e.g. ["-m", "orch_mcp.cli.rpush", ...]) and capture its output."""
    return subprocess.run(
        [sys.executable, *args], env=dict(env), input=input, capture_output=True, text=True, timeout=timeout
    )


def orch(*args: str, env: Mapping[str, str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m orch_mcp <args>` (the `orch-mcp` console script without needing it on PATH)."""
    return run_cli(["-m", "orch_mcp", *args], env, input=input)


def run_main(
    args: Sequence[str], env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> subprocess.CompletedProcess[str]:
    """Run `python -m <module> <rest>` in this process: `main(rest)` of that module, as its `__main__` would.

    `args` is what run_cli takes (["-m", module, ...]). The environment becomes `env` and sys.argv[0] the
    module's file (as `python -m` sets it: the prog names in messages depend on it); the exit code is main's
    return value or a SystemExit's code; stdout and stderr are captured at the file-descriptor level.
    """
    assert args[0] == "-m", args
    name, rest = args[1], list(args[2:])
    module = importlib.import_module("orch_mcp.cli.main" if name == "orch_mcp" else name)
    package_dir = os.path.dirname(importlib.import_module("orch_mcp").__file__ or "")
    main_file = os.path.join(package_dir, "__main__.py") if name == "orch_mcp" else None
    for key in set(os.environ) | set(env):
        if key not in env:
            monkeypatch.delenv(key)
        elif os.environ.get(key) != env[key]:
            monkeypatch.setenv(key, env[key])
    monkeypatch.setattr(sys, "argv", [main_file or module.__file__ or name, *rest])
    capfd.readouterr()
    bridges_before = set(sync._open_bridges)
    try:
        code = module.main(rest)
    except SystemExit as exc:  # as the interpreter ends on it: a message is printed and means exit code 1
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    finally:  # what the process's exit would do (sync.close_open_bridges at exit), for the bridges main opened
        opened = set(sync._open_bridges) - bridges_before
        for bridge in opened:
            bridge.close()
        for config in [config for config, bridge in sync._shared.items() if bridge in opened]:
            del sync._shared[config]
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess([sys.executable, *args], code, out, err)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserting it is one line and no traceback)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def finish(proc: subprocess.Popen[str]) -> None:
    """Kill `proc` if it still runs, reap it and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


class LineReader:
    """Reads a stream's lines on a thread so a test can wait for the next one with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._lines.put(line.rstrip("\n"))
        except (OSError, ValueError):  # the test closed the stream under us
            pass
        self._lines.put(None)

    def next(self, timeout: float = 15) -> str | None:
        """The next line (None at end of stream); raises queue.Empty after `timeout` s without one."""
        return self._lines.get(timeout=timeout)

    def until(self, predicate: object, timeout: float = 15) -> list[str]:
        """Lines read until one satisfies `predicate` (a callable on the line); fails at end of stream."""
        seen: list[str] = []
        while True:
            line = self.next(timeout)
            assert line is not None, f"the stream ended before the expected line; got {seen}"
            seen.append(line)
            if callable(predicate) and predicate(line):
                return seen
