"""`orch-mcp serve --role {summoner|moogle|chocobo}`: run one role's MCP server over stdio or streamable HTTP.

The only place the server reads the environment: every flag has a twin variable, and flags win.
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
from typing import TYPE_CHECKING, NoReturn, cast

from .cli import flags
from .config import OrchConfig
from .errors import OrchError
from .utils import validate_identifier

if TYPE_CHECKING:
    import anyio

    from .server import Role, ServerSettings, Transport

PROG = "orch-mcp serve"
ROLES = ("summoner", "moogle", "chocobo")
TRANSPORTS = {"stdio": "stdio", "http": "http", "streamable-http": "http"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Seconds a stdio server may take to wind down after SIGTERM/SIGINT/SIGHUP before it exits regardless
#: (a thread blocked reading stdin cannot be interrupted).
SIGNAL_EXIT_GRACE_S = 5.0
EXAMPLES = f"""examples:
  {PROG} --role summoner
  {PROG} --role moogle --url redis://localhost:6379/0
  {PROG} --role chocobo --child-id 2
  {PROG} --role moogle --transport http --http-port 8001    MCP endpoint http://127.0.0.1:8001/mcp
  ORCH_ROLE=chocobo ORCH_CHILD_ID=1 {PROG}

An MCP client starts it (stdio), or connects to http://HOST:PORT/mcp (http). Logs go to stderr at
ORCH_LOG_LEVEL (default WARNING; INFO adds a line per HTTP request)."""

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
        "Run the orch-mcp MCP server for one agent role.\nEvery flag has an environment twin [in brackets]; flags win.",
        EXAMPLES,
        parser_class=_Parser,
    )
    p.add_argument("--role", metavar="{summoner,moogle,chocobo}", help="the agent's role [ORCH_ROLE]")
    p.add_argument(
        "--session-id",
        metavar="ID",
        help="the session to work in; 'current' (default) = the namespace's latest, resolved at the first tool call "
        "[ORCH_SESSION_ID]",
    )
    p.add_argument(
        "--child-id",
        metavar="N",
        help="chocobo only, and required there: its child id, 1..max_children [ORCH_CHILD_ID]",
    )
    p.add_argument(
        "--transport",
        metavar="{stdio,http}",
        help="stdio (default), or http: streamable HTTP at http://HOST:PORT/mcp [ORCH_TRANSPORT]",
    )
    p.add_argument(
        "--http-host",
        metavar="HOST",
        help="with --transport http: the address to listen on (default 127.0.0.1) [ORCH_HTTP_HOST]",
    )
    p.add_argument(
        "--http-port", metavar="PORT", help="with --transport http: the port (default 8000) [ORCH_HTTP_PORT]"
    )
    flags.add_connection_args(p, namespace=True)
    return p


def _pick(flag: str | None, env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    if flag is not None:
        return flag
    return env.get(name) or default


def _whole(raw: str, what: str, low: int, high: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f"{low} or more"
        raise UsageError(f"{what} must be a whole number {bounds}, got {raw!r}")
    return value


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> ServerSettings:
    """ServerSettings from the flags, each falling back to its environment twin; UsageError if one is unusable."""
    args = build_parser().parse_args(list(argv))
    role = _pick(args.role, env, "ORCH_ROLE")
    if not role:
        raise UsageError("no role given: pass --role summoner, --role moogle or --role chocobo (or set ORCH_ROLE)")
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}: use --role summoner, moogle or chocobo")
    child_id: int | None = None
    if role == "chocobo":
        raw_child = _pick(args.child_id, env, "ORCH_CHILD_ID")
        if not raw_child:
            raise UsageError("a chocobo needs its child id: pass --child-id N (or set ORCH_CHILD_ID), N = 1, 2, …")
        child_id = _whole(raw_child, "--child-id (ORCH_CHILD_ID)", 1)
    elif args.child_id is not None:  # ORCH_CHILD_ID alone is ignored: an environment may be shared by a team
        raise UsageError(f"--child-id is for a chocobo only, and this is a {role}: drop it, or use --role chocobo")
    session_id = _pick(args.session_id, env, "ORCH_SESSION_ID", "current") or "current"
    transport = TRANSPORTS.get((_pick(args.transport, env, "ORCH_TRANSPORT", "stdio") or "stdio").lower())
    if transport is None:
        raise UsageError(f"unknown transport {args.transport or env.get('ORCH_TRANSPORT')!r}: use stdio or http")
    if transport == "stdio" and (args.http_host is not None or args.http_port is not None):
        given = [f for f, v in (("--http-host", args.http_host), ("--http-port", args.http_port)) if v is not None]
        verb, them = ("apply", "them") if len(given) > 1 else ("applies", "it")
        raise UsageError(f"{' and '.join(given)} {verb} to --transport http only: add --transport http, or drop {them}")
    host = _pick(args.http_host, env, "ORCH_HTTP_HOST", "127.0.0.1") or "127.0.0.1"
    port = _whole(
        _pick(args.http_port, env, "ORCH_HTTP_PORT", "8000") or "8000", "--http-port (ORCH_HTTP_PORT)", 1, 65535
    )
    try:
        if session_id != "current":
            validate_identifier(session_id, "session id")
        limits = OrchConfig.from_env({k: v for k, v in env.items() if k == "ORCH_MAX_MESSAGE_BYTES"})
        orch = OrchConfig(
            redis=flags.redis_config(args, env),
            namespace=flags.namespace(args, env),
            max_message_bytes=limits.max_message_bytes,
        )
        from .server import ServerSettings

        return ServerSettings(
            role=cast("Role", role),
            orch=orch,
            session_id=session_id,
            child_id=child_id,
            transport=cast("Transport", transport),
            http_host=host,
            http_port=port,
        )
    except OrchError as exc:
        raise UsageError(str(exc)) from None


def configure_logging(env: Mapping[str, str], settings: ServerSettings) -> str:
    """Log to stderr (stdout is the protocol), at ORCH_LOG_LEVEL (default WARNING); returns the level's name."""
    level = (env.get("ORCH_LOG_LEVEL") or "WARNING").upper()
    level = level if level in LOG_LEVELS else "WARNING"
    who = settings.role + (f" {settings.child_id}" if settings.child_id is not None else "")
    logging.basicConfig(
        stream=sys.stderr, level=level, format=f"%(asctime)s orch-mcp {who} %(levelname)s %(name)s: %(message)s"
    )
    return level


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
    env = os.environ
    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv, env)
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: {exc} (see `{PROG} --help`)\n")
        return 2
    level = configure_logging(env, settings)
    try:
        serve(settings, level)
    except KeyboardInterrupt:
        return 0
    except (OrchError, OSError) as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
