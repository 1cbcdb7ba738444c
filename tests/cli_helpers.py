"""Helpers for the command-line tests: run a command as a subprocess, read a live process's output with bounds."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import IO

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
