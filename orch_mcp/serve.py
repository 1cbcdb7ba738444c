"""`orch-mcp serve --role {summoner|moogle|chocobo}`: run one role's MCP server over stdio or streamable HTTP.

The only place the server reads the environment: every flag has a twin variable, and flags win.
A bad or missing setting exits with status 2 and one line on stderr saying what to fix; an
unreachable Redis does not stop the server (each tool says so when called). Stdout carries the
protocol in stdio mode, so logs go to stderr. Flags are checked before the MCP SDK is imported, so a
usage error answers at once; the server module is imported only when there is a server to run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

from .config import OrchConfig, validate_url
from .errors import OrchError
from .utils import validate_identifier

if TYPE_CHECKING:
    import anyio

    from .server import Role, ServerSettings, Transport

PROG = "orch-mcp serve"
ROLES = ("summoner", "moogle", "chocobo")
TRANSPORTS = {"stdio": "stdio", "http": "http", "streamable-http": "http"}
#: Seconds a stdio server may take to wind down after SIGTERM/SIGINT/SIGHUP before it exits regardless
#: (a thread blocked reading stdin cannot be interrupted).
SIGNAL_EXIT_GRACE_S = 5.0

log = logging.getLogger("orch_mcp.serve")


class UsageError(Exception):
    """A flag or variable that cannot be used; the message says what to fix."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The flags of `orch-mcp serve` (every one defaults to its environment twin)."""
    p = _Parser(
        prog=PROG,
        description="Run the orch-mcp MCP server for one agent role. Every flag has an environment twin; flags win.",
    )
    p.add_argument("--role", help="summoner, moogle or chocobo [ORCH_ROLE]")
    p.add_argument("--session-id", help="the session to work in; 'current' (default) = the namespace's latest, "
                   "resolved at the first tool call [ORCH_SESSION_ID]")  # fmt: skip
    p.add_argument("--child-id", help="the chocobo's child id, 1..max_children (chocobo only) [ORCH_CHILD_ID]")
    p.add_argument("--namespace", help="separates teams sharing one Redis (default: orch) [ORCH_NAMESPACE]")
    p.add_argument("--redis-url", "--url", dest="url", help="redis://host:port/db, rediss:// or unix:// [REDIS_URL]; "
                   "else REDIS_HOST, REDIS_PORT, REDIS_DB, REDIS_PASSWORD")  # fmt: skip
    p.add_argument("--transport", help="stdio (default) or http (streamable HTTP) [ORCH_TRANSPORT]")
    p.add_argument(
        "--http-host", help="address to listen on with --transport http (default 127.0.0.1) [ORCH_HTTP_HOST]"
    )
    p.add_argument("--http-port", help="port to listen on with --transport http (default 8000) [ORCH_HTTP_PORT]")
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
    raw_child = _pick(args.child_id, env, "ORCH_CHILD_ID")
    if role == "chocobo":
        if not raw_child:
            raise UsageError("a chocobo needs its child id: pass --child-id N (or set ORCH_CHILD_ID), N = 1, 2, …")
        child_id = _whole(raw_child, "--child-id (ORCH_CHILD_ID)", 1)
    session_id = _pick(args.session_id, env, "ORCH_SESSION_ID", "current") or "current"
    transport = TRANSPORTS.get((_pick(args.transport, env, "ORCH_TRANSPORT", "stdio") or "stdio").lower())
    if transport is None:
        raise UsageError(f"unknown transport {args.transport or env.get('ORCH_TRANSPORT')!r}: use stdio or http")
    host = _pick(args.http_host, env, "ORCH_HTTP_HOST", "127.0.0.1") or "127.0.0.1"
    port = _whole(
        _pick(args.http_port, env, "ORCH_HTTP_PORT", "8000") or "8000", "--http-port (ORCH_HTTP_PORT)", 1, 65535
    )
    try:
        if session_id != "current":
            validate_identifier(session_id, "session id")
        if args.namespace is not None:
            validate_identifier(args.namespace, "namespace")
        if args.url is not None:
            validate_url(args.url, "--redis-url")
        # Flags win: a variable a flag replaces is not even read (a bad value there cannot stop the server).
        shadowed = {"ORCH_NAMESPACE"} if args.namespace is not None else set()
        shadowed |= {"REDIS_URL"} if args.url is not None else set()
        orch = OrchConfig.from_env({k: v for k, v in env.items() if k not in shadowed})
        if args.namespace is not None or args.url is not None:
            orch = OrchConfig(
                redis=orch.redis.with_overrides(url=args.url),
                namespace=args.namespace or orch.namespace,
                max_message_bytes=orch.max_message_bytes,
            )
        from .server import ServerSettings

        return ServerSettings(role=cast("Role", role), orch=orch, session_id=session_id, child_id=child_id,
                              transport=cast("Transport", transport), http_host=host, http_port=port)  # fmt: skip
    except OrchError as exc:
        raise UsageError(str(exc)) from None


def configure_logging(env: Mapping[str, str], settings: ServerSettings) -> None:
    """Log to stderr (stdout is the protocol), at ORCH_LOG_LEVEL (default WARNING)."""
    level = (env.get("ORCH_LOG_LEVEL") or "WARNING").upper()
    who = settings.role + (f" {settings.child_id}" if settings.child_id is not None else "")
    logging.basicConfig(
        stream=sys.stderr,
        level=level if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "WARNING",
        format=f"%(asctime)s orch-mcp {who} %(levelname)s %(name)s: %(message)s",
    )


def serve(settings: ServerSettings) -> None:
    """Build the role's server and run it until the client goes away (stdio) or the process is stopped (http)."""
    import anyio

    from .server import create_server

    closed = threading.Event()
    server = create_server(settings, on_close=closed.set)
    if settings.transport == "http":
        import signal

        log.info("serving %s on http://%s:%s/mcp", settings.role, settings.http_host, settings.http_port)
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: end like Ctrl-C (status 0).
        signal.signal(signal.SIGTERM, _interrupt)
        anyio.run(lambda: server.run_streamable_http_async(host=settings.http_host, port=settings.http_port))
        return

    async def run_stdio() -> None:
        async with anyio.create_task_group() as tg:
            if sys.platform != "win32":
                tg.start_soon(_stop_on_signal, tg.cancel_scope, closed)
            await server.run_stdio_async()
            tg.cancel_scope.cancel()

    anyio.run(run_stdio)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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
    configure_logging(env, settings)
    try:
        serve(settings)
    except KeyboardInterrupt:
        return 0
    except (OrchError, OSError) as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
