"""The seed's synchronous orchestration API: create, find and remove sessions (normal and summoner modes).

Each function drives the async operation of the same name in `orch_mcp.sessions` on a private event
loop; use those directly from async code.
"""

from __future__ import annotations

from typing_extensions import Unpack

from . import sessions
from .connection import ConnectionOptions, connection_config, namespace_or_default
from .errors import InvalidIdentifierError
from .sessions import CleanupResult, Mode, SessionConfig
from .sync import SyncBridge, shared_bridge

__all__ = [
    "CleanupResult",
    "SessionConfig",
    "cleanup_session",
    "get_config",
    "initialize_orchestration",
    "initialize_summoner_orchestration",
]


def initialize_orchestration(
    host: str | None = None,
    port: int | None = None,
    prefix: str | None = None,
    max_children: int = 3,
    ttl: int | None = None,
    *,
    namespace: str | None = None,
    **conn: Unpack[ConnectionOptions],
) -> SessionConfig:
    """Create a normal-mode session: id `<unix ms>-<pid>`, prefix `{<prefix>-<seq>}`, one report queue per child."""
    return _init("normal", host, port, namespace, max_children, ttl, conn, prefix=prefix)


def initialize_summoner_orchestration(
    host: str | None = None,
    port: int | None = None,
    max_children: int = 3,
    session_id: str | None = None,
    ttl: int | None = None,
    *,
    namespace: str | None = None,
    **conn: Unpack[ConnectionOptions],
) -> SessionConfig:
    """Create a summoner-mode session: uuid id, prefix `summoner:{<id>}`, one shared report queue, a monitor channel."""
    return _init("summoner", host, port, namespace, max_children, ttl, conn, session_id=session_id)


def _init(
    mode: Mode,
    host: str | None,
    port: int | None,
    namespace: str | None,
    max_children: int,
    ttl: int | None,
    conn: ConnectionOptions,
    **identity: str | None,
) -> SessionConfig:
    cfg = connection_config(host=host, port=port, **conn)
    return shared_bridge(cfg).call_with_client(
        sessions.init_session,
        namespace=namespace_or_default(namespace),
        mode=mode,
        max_children=max_children,
        ttl_s=ttl or cfg.default_ttl,
        **identity,
    )


def get_config(
    host: str | None = None,
    port: int | None = None,
    prefix: str | None = None,
    session_id: str | None = None,
    *,
    namespace: str | None = None,
    **conn: Unpack[ConnectionOptions],
) -> SessionConfig:
    """Read a session's config by prefix (`myproject-host-001`) or session id; NotFoundError if it is gone."""
    cfg = connection_config(host=host, port=port, **conn)
    return _find(shared_bridge(cfg), namespace, session_id, prefix)


def cleanup_session(
    host: str | None = None,
    port: int | None = None,
    config: SessionConfig | None = None,
    *,
    session_id: str | None = None,
    prefix: str | None = None,
    namespace: str | None = None,
    **conn: Unpack[ConnectionOptions],
) -> CleanupResult:
    """Remove every key of a session (given as `config`, `session_id` or `prefix`) and its index entry."""
    cfg = connection_config(host=host, port=port, **conn)
    bridge = shared_bridge(cfg)
    if config is None:
        config = _find(bridge, namespace, session_id, prefix)
    return bridge.call_with_client(sessions.cleanup_session, config)


def _find(bridge: SyncBridge, namespace: str | None, session_id: str | None, prefix: str | None) -> SessionConfig:
    """The session `session_id` or `prefix` names; one of them is required (no falling back on the current one)."""
    if not (session_id or prefix):
        raise InvalidIdentifierError("give a session_id or a prefix")
    return bridge.call_with_client(sessions.resolve_session, namespace_or_default(namespace), session_id, prefix=prefix)
