"""What every command shares: connection flags, one-line errors, exit codes, JSON output.

Exit codes: 0 ok, 1 runtime error (Redis unreachable, session not found, blpop timeout…), 2 usage
error. Errors are one line on stderr (`orch-mcp: <message>`), never a traceback for a user mistake
or an unreachable Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import redis.exceptions as rexc

from ..config import RedisConfig
from ..errors import ConfigError, InvalidIdentifierError, NoSessionError, OrchError
from ..redis_failures import translate
from ..sessions import SessionConfig
from .flags import EXIT_ERROR as EXIT_ERROR
from .flags import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from .flags import EXIT_OK as EXIT_OK
from .flags import EXIT_USAGE as EXIT_USAGE
from .flags import Parser as Parser
from .flags import add_connection_args as add_connection_args
from .flags import add_tls_args as add_tls_args
from .flags import int_range as int_range
from .flags import make_parser as make_parser
from .flags import namespace as namespace
from .flags import prog_name as prog_name
from .flags import redis_config as redis_config
from .flags import seconds as seconds


def usage_error(prog: str, message: str) -> int:
    """Print a usage error in argparse's one-line style and return exit code 2."""
    print(f"{prog}: {message} (see `{prog} --help`)", file=sys.stderr, flush=True)
    return EXIT_USAGE


def fail(message: str) -> int:
    """Print `orch-mcp: <message>` on stderr (one line) and return exit code 1."""
    print(f"orch-mcp: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return EXIT_ERROR


def note(message: str) -> None:
    """A progress or status line for people, on stderr (stdout stays for results)."""
    print(message, file=sys.stderr, flush=True)


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 child`, `3 children`, `2 tasks`."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def printer(*, quiet: bool) -> Callable[[str], None]:
    """A function printing a line to stdout, or doing nothing when `quiet` (e.g. with --json)."""

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    return say


def print_json(document: Any) -> None:
    """One JSON document on one line of stdout."""
    print(json.dumps(document, ensure_ascii=False, default=str), flush=True)


def run(
    parser: argparse.ArgumentParser,
    handler: Callable[[argparse.Namespace], int],
    argv: list[str] | None,
    *,
    interrupted: int = EXIT_INTERRUPTED,
) -> int:
    """Parse `argv`, call `handler(args)`, and turn every expected failure into an exit code and one line.

    `interrupted` is the exit code for Ctrl+C (0 for commands that run until interrupted).
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if hasattr(args, "url"):  # a command that connects: its settings, from flags and environment, must be usable
        try:
            redis_config(args)
            if hasattr(args, "namespace"):
                namespace(args)
        except (ConfigError, InvalidIdentifierError) as exc:
            return usage_error(parser.prog, str(exc))
    try:
        return handler(args)
    except (KeyboardInterrupt, asyncio.CancelledError):
        # On Python 3.10, Ctrl+C inside anyio.run/asyncio.run surfaces as the main task's CancelledError.
        return interrupted
    except NoSessionError as exc:  # the model-facing hint names a tool; a person at a shell gets commands too
        hint = "create one with `orch-mcp init` (or have the summoner call init_session)"
        return fail(f"{exc.situation}: {hint}, or name one with `{parser.prog} --session-id ID`")
    except OrchError as exc:
        return fail(str(exc))
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        _silence_stdout()
        return EXIT_OK
    except (rexc.RedisError, ConnectionError) as exc:
        try:
            cfg = redis_config(args)
        except OrchError:
            cfg = RedisConfig()
        mapped = translate(cfg, exc)
        return fail(str(mapped) if mapped is not None else f"Redis refused the command: {exc}")
    except OSError as exc:
        return fail(str(exc))


def _silence_stdout() -> None:
    # Python flushes stdout at exit; on a closed pipe that would print an error, so point it elsewhere.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def session_text(session: SessionConfig, heading: str) -> str:
    """A session for people: ids, queues, channels and streams, one per line."""
    width = 16
    lines = [heading]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<{width}}{value}")

    row("session id", session.session_id)
    row("mode", f"{session.mode} ({plural(session.max_children, 'child', 'children')}, TTL {session.ttl_s} s)")
    row("prefix", session.prefix)
    row("namespace", session.namespace)
    for n, queue in session.task_queues.items():
        row("task queues" if n == "1" else "", f"{n}: {queue}")
    reports = sorted(set(session.report_queues.values()))
    if len(reports) == 1:
        row("report queue", reports[0])
    else:
        for n, queue in session.report_queues.items():
            row("report queues" if n == "1" else "", f"{n}: {queue}")
    row("status stream", session.status_stream)
    if session.monitor_channel:
        row("monitor channel", session.monitor_channel)
    row("dead letters", session.dead_letters)
    row("created", session.created_at)
    return "\n".join(lines)


def next_steps(session: SessionConfig) -> str:
    """What to run after creating a session."""
    sid = session.session_id
    return "\n".join(
        [
            "next:",
            f"  orch-mcp scenario chocobo --session-id {sid} --child-id 1   (children 1..{session.max_children})",
            f'  orch-mcp scenario moogle --session-id {sid} --tasks "Task 1" "Task 2"',
            f"  orch-mcp watch {sid}",
        ]
    )
