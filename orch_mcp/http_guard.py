"""Who may use the HTTP server: the bearer token checked on every request, and the Host/Origin lists of the SDK's
DNS-rebinding check.

The token is compared in constant time and never logged. The SDK refuses a request whose Host header is not
listed (421) or whose Origin header is not (403); the lists hold the loopback names, the address the server
listens on (unless it is a wildcard such as 0.0.0.0) and the names given with --http-allowed-host.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging

from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

#: How clients on this machine name it; always allowed (a hostile page cannot make a browser send these).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
REALM = 'Bearer realm="orch-mcp"'


def _bracketed(host: str) -> str:
    """An IPv6 address as a Host header writes it ([::1]); anything else unchanged."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def _has_port(host: str) -> bool:
    return host.rsplit("]", 1)[-1].count(":") == 1


def allowed_hosts(bind_host: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The Host header values accepted: each name with any port (`name:*`), or exactly as given if it has one."""
    names = [*LOOPBACK_HOSTS]
    if bind_host not in WILDCARD_HOSTS:
        names.append(_bracketed(bind_host))
    names += [_bracketed(name) for name in extra]
    hosts: list[str] = []
    for name in dict.fromkeys(names):
        hosts += [name] if _has_port(name) else [name, f"{name}:*"]
    return hosts


def transport_security(bind_host: str, extra: tuple[str, ...] = ()) -> TransportSecuritySettings:
    """The SDK's DNS-rebinding check, on, for a server listening on `bind_host` and reached by `extra` names too."""
    hosts = allowed_hosts(bind_host, extra)
    origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


class BearerAuth:
    """ASGI middleware: every HTTP request must carry `Authorization: Bearer <token>`, else a 401 with a JSON body."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _refusal(self, header: str | None) -> tuple[str, str] | None:
        """(error code, description) if the Authorization header does not carry the token, else None."""
        scheme, _, credentials = (header or "").strip().partition(" ")
        if not header or scheme.lower() != "bearer":
            return (
                "missing_token",
                "this MCP server needs a bearer token: send the header `Authorization: Bearer <token>` with the "
                "token the server was started with",
            )
        if not hmac.compare_digest(credentials.strip().encode(), self._token):
            return "invalid_token", "wrong bearer token: send the token the server was started with"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(Headers(scope=scope).get("authorization"))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        error, description = refusal
        client = scope.get("client")
        log.info("refused an HTTP request from %s: %s", client[0] if client else "an unknown client", error)
        if scope["type"] != "http":  # a websocket: this server serves none, and takes none without the token
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": error, "error_description": description}).encode()
        challenge = REALM if error == "missing_token" else f'{REALM}, error="invalid_token"'
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", challenge.encode()),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
