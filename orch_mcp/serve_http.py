"""Streamable HTTP for `orch-mcp serve --transport http`: everything about serving HTTP is here.

The port is bound before anything else, so a port in use is one line (exit code 1), not uvicorn's
multi-line error. uvicorn is run on the SDK's ASGI app with no logging configuration of its own: its
loggers reach the root logger `orch-mcp serve` set up on stderr, at ORCH_LOG_LEVEL, so the default
WARNING prints no line per request (INFO or DEBUG add an access line per request). One line on stderr
names the MCP endpoint once the server accepts connections (a second, on a host other machines can reach,
names the Host names accepted). Who may connect (the bearer token, the Host/Origin checks): http_guard.py.
"""

from __future__ import annotations

import errno
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

import uvicorn

from .errors import ConfigError, OrchError
from .settings import is_loopback

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from starlette.types import ASGIApp

    from .server import ServerSettings

#: Where the MCP endpoint is served.
MCP_PATH = "/mcp"


def endpoint(host: str, port: int) -> str:
    """The URL an MCP client connects to."""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{MCP_PATH}"


def bind(host: str, port: int) -> list[socket.socket]:
    """Sockets bound on every address `host` stands for; ConfigError naming the flag to change if that fails."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host!r} ({exc.strerror}): pick another with --http-host") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            if sys.platform != "win32":  # what uvicorn and asyncio do: rebind at once after a restart
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # "localhost" may also bind 127.0.0.1 on the same port
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use: pick another with --http-port (or ORCH_HTTP_PORT)"
            ) from None
        raise ConfigError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    return sockets


class _Server(uvicorn.Server):
    """uvicorn's server, saying where it listens once it accepts connections."""

    def __init__(self, config: uvicorn.Config, started_line: str) -> None:
        super().__init__(config)
        self.started_line = started_line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            sys.stderr.write(self.started_line + "\n")  # stderr: in stdio mode stdout is the protocol
            sys.stderr.flush()


def run(server: MCPServer[Any], settings: ServerSettings, sockets: list[socket.socket], level: str) -> None:
    """Serve `server` on the bound `sockets` until SIGTERM or Ctrl+C (KeyboardInterrupt); closes the sockets."""
    import anyio

    from .http_guard import BearerAuth, transport_security

    security = transport_security(settings.http_host, settings.http_allowed_hosts)
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=MCP_PATH, host=settings.http_host, transport_security=security
    )
    if settings.http_token is not None:
        app = BearerAuth(app, settings.http_token)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        log_level=level.lower(),
        access_log=level in ("DEBUG", "INFO"),
    )
    who = settings.role + (f" {settings.child_id}" if settings.child_id is not None else "")
    port = sockets[0].getsockname()[1]
    line = f"orch-mcp serve: {who} serving MCP at {endpoint(settings.http_host, port)} (Ctrl+C to stop)"
    if not is_loopback(settings.http_host):
        names = ", ".join(h for h in security.allowed_hosts if not h.endswith(":*"))
        line += f"\norch-mcp serve: every request needs the bearer token; Host names accepted: {names}"
    # uvicorn stops gracefully on SIGTERM, then raises the signal again: end like Ctrl+C (status 0).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        anyio.run(_Server(config, line).serve, sockets)
    except SystemExit as exc:  # uvicorn exits when the app's start-up fails; it has logged why
        if exc.code:
            raise OrchError(f"the HTTP server did not start (exit status {exc.code}); see the lines above") from None
    finally:
        for sock in sockets:
            sock.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
