"""`orch-mcp serve --role {summoner|moogle|chocobo}`: run one role's MCP server over stdio or streamable HTTP.

The only place the server reads the environment: every flag has a twin variable, and flags win; both
are checked by one settings model (orch_mcp.config.ServeSettings), which also names them in --help.
A bad or missing setting exits with status 2 and one line on stderr saying what to fix; an
unreachable Redis does not stop the server (each tool says so when called). Stdout carries the
protocol in stdio mode, so logs go to stderr. Flags are checked before the MCP SDK is imported, so a
usage error answers at once; the server module is imported only when there is a server to run.
Serving HTTP (binding the port, uvicorn, its logs) is serve_http.py's part.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NoReturn

from .cli import flags
from .errors import OrchError
from .settings import ServeSettings, twin

if TYPE_CHECKING:
    import anyio

    from .server import ServerSettings

PROG = "orch-mcp serve"
#: Settings that only mean something with --transport http.
HTTP_FLAGS = ("http_host", "http_port", "http_token", "http_token_file", "http_allowed_hosts")
#: Seconds a stdio server may take to wind down after SIGTERM/SIGINT/SIGHUP before it exits regardless
#: (a thread blocked reading stdin cannot be interrupted).
SIGNAL_EXIT_GRACE_S = 5.0
EXAMPLES = f"""examples:
  {PROG} --role summoner
  {PROG} --role moogle --url redis://localhost:6379/0
  {PROG} --role chocobo --child-id 2
  {PROG} --role moogle --transport http --http-port 8001    MCP endpoint http://127.0.0.1:8001/mcp
  {PROG} --role moogle --transport http --http-host 0.0.0.0 --http-token-file ~/.orch-token \\
      --http-allowed-host orch.example.com    other machines: every request needs the bearer token
  ORCH_ROLE=chocobo ORCH_CHILD_ID=1 {PROG}

An MCP client starts it (stdio), or connects to http://HOST:PORT/mcp (http). Logs go to stderr at
ORCH_LOG_LEVEL: DEBUG, INFO, WARNING (the default), ERROR or CRITICAL; INFO adds a line per HTTP request."""

log = logging.getLogger("orch_mcp.serve")


class UsageError(Exception):
    """A flag or variable that cannot be used; the message says what to fix."""


class _Parser(flags.Parser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The flags of `orch-mcp serve` (every one defaults to its environment twin)."""
    p = flags.make_parser(
        PROG,
        "Run the orch-mcp MCP server for one agent role.\nEvery flag has an environment twin, named in its help; "
        "flags win.",
        EXAMPLES,
        parser_class=_Parser,
    )
    flags.add_setting_args(p, ServeSettings, ("role", "session_id", "child_id", "transport", *HTTP_FLAGS))
    flags.add_connection_args(p, namespace=True)
    return p


def load_settings(argv: Sequence[str], env: Mapping[str, str]) -> ServeSettings:
    """The settings from the flags, each falling back to its environment twin; UsageError if one is unusable."""
    given = flags.given(build_parser().parse_args(list(argv)))
    try:
        settings = ServeSettings.load(given, env)
    except OrchError as exc:
        raise UsageError(str(exc)) from None
    if "child_id" in given and settings.role != "chocobo":  # ORCH_CHILD_ID alone is ignored (a team may share it)
        raise UsageError(
            f"--child-id is for a chocobo only, and this is a {settings.role}: drop it, or use --role chocobo"
        )
    if settings.transport == "stdio" and (http := [_flag(n) for n in HTTP_FLAGS if n in given]):
        verb, them = ("apply", "them") if len(http) > 1 else ("applies", "it")
        raise UsageError(f"{' and '.join(http)} {verb} to --transport http only: add --transport http, or drop {them}")
    return settings


def _flag(name: str) -> str:
    return twin(ServeSettings.model_fields[name]).flags[0]


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> ServerSettings:
    """ServerSettings from the flags, each falling back to its environment twin; UsageError if one is unusable."""
    settings = load_settings(argv, env)
    from .server import ServerSettings

    return ServerSettings.from_settings(settings)


def configure_logging(level: str, settings: ServerSettings) -> None:
    """Log to stderr (stdout is the protocol) at `level` (ORCH_LOG_LEVEL, default WARNING)."""
    who = settings.role + (f" {settings.child_id}" if settings.child_id is not None else "")
    logging.basicConfig(
        stream=sys.stderr, level=level, format=f"%(asctime)s orch-mcp {who} %(levelname)s %(name)s: %(message)s"
    )


def serve(settings: ServerSettings, level: str = "WARNING") -> None:
    """Build the role's server and run it until the client goes away (stdio) or the process is stopped (http)."""
    if settings.transport == "http":
        from . import serve_http

        sockets = serve_http.bind(settings.http_host, settings.http_port)  # a port in use: one line, at once
        from .server import create_server

        serve_http.run(create_server(settings), settings, sockets, level)
    else:
        serve_stdio(settings)


def serve_stdio(settings: ServerSettings) -> None:
    """Serve over stdin/stdout until the client closes stdin or a signal stops the process."""
    import anyio

    from .server import create_server

    closed = threading.Event()
    server = create_server(settings, on_close=closed.set)

    async def run_stdio() -> None:
        async with anyio.create_task_group() as tg:
            if sys.platform != "win32":
                tg.start_soon(_stop_on_signal, tg.cancel_scope, closed)
            await server.run_stdio_async()
            tg.cancel_scope.cancel()

    anyio.run(run_stdio)


async def _stop_on_signal(scope: anyio.CancelScope, closed: threading.Event) -> None:
    """On SIGTERM, SIGINT or SIGHUP: stop serving, let the lifespan close (a chocobo releases its claim), exit.

    The exit is forced once the lifespan has closed (or after SIGNAL_EXIT_GRACE_S): a thread blocked
    reading an open stdin cannot be interrupted, and would otherwise keep the process alive.
    """
    import signal

    import anyio

    def exit_when_closed() -> None:
        closed.wait(SIGNAL_EXIT_GRACE_S)
        logging.shutdown()
        os._exit(0)

    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("received signal %s: stopping", signum)
            threading.Thread(target=exit_when_closed, daemon=True).start()
            scope.cancel()
            return


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `orch-mcp serve`: 0 after a clean stop, 2 for a usage error, 1 if the server failed."""
    try:
        loaded = load_settings(sys.argv[1:] if argv is None else argv, os.environ)
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: {exc} (see `{PROG} --help`)\n")
        return 2
    from .server import ServerSettings

    settings = ServerSettings.from_settings(loaded)
    configure_logging(loaded.log_level, settings)
    try:
        serve(settings, loaded.log_level)
    except KeyboardInterrupt:
        return 0
    except (OrchError, OSError) as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
