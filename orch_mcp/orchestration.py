"""The seed's synchronous orchestration API: create, find and remove sessions (normal and summoner modes).

Each function drives the async operation of the same name in `orch_mcp.sessions` on a private event
loop; use those directly from async code.
"""

from __future__ import annotations

from . import sessions
from .config import RedisConfig
from .connection import connection_config, namespace_or_default
from .sessions import CleanupResult, SessionConfig
from .sync import shared_bridge

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
    db: int | None = None,
    password: str | None = None,
    url: str | None = None,
    namespace: str | None = None,
    redis_config: RedisConfig | None = None,
) -> SessionConfig:
    """Create a normal-mode session: id `<unix ms>-<pid>`, prefix `{<prefix>-<seq>}`, one report queue per child."""
    cfg = connection_config(host=host, port=port, db=db, password=password, url=url, redis_config=redis_config)
    return shared_bridge(cfg)._call(
        sessions.init_session,
        namespace=namespace_or_default(namespace),
        mode="normal",
        max_children=max_children,
        ttl_s=ttl or cfg.default_ttl,
        prefix=prefix,
    )


def initialize_summoner_orchestration(
    host: str | None = None,
    port: int | None = None,
    max_children: int = 3,
    session_id: str | None = None,
    ttl: int | None = None,
    *,
    db: int | None = None,
    password: str | None = None,
    url: str | None = None,
    namespace: str | None = None,
    redis_config: RedisConfig | None = None,
) -> SessionConfig:
    """Create a summoner-mode session: uuid id, prefix `summoner:{<id>}`, one shared report queue, a monitor channel."""
    cfg = connection_config(host=host, port=port, db=db, password=password, url=url, redis_config=redis_config)
    return shared_bridge(cfg)._call(
        sessions.init_session,
        namespace=namespace_or_default(namespace),
        mode="summoner",
        max_children=max_children,
        ttl_s=ttl or cfg.default_ttl,
        session_id=session_id,
    )


def get_config(
    host: str | None = None,
    port: int | None = None,
    prefix: str | None = None,
    session_id: str | None = None,
    *,
    db: int | None = None,
    password: str | None = None,
    url: str | None = None,
    namespace: str | None = None,
    redis_config: RedisConfig | None = None,
) -> SessionConfig:
    """Read a session's config by prefix (`myproject-host-001`) or session id; NotFoundError if it is gone."""
    cfg = connection_config(host=host, port=port, db=db, password=password, url=url, redis_config=redis_config)
    return shared_bridge(cfg)._call(
        sessions.load_session, namespace=namespace_or_default(namespace), session_id=session_id, prefix=prefix
    )


def cleanup_session(
    host: str | None = None,
    port: int | None = None,
    config: SessionConfig | None = None,
    *,
    session_id: str | None = None,
    prefix: str | None = None,
    db: int | None = None,
    password: str | None = None,
    url: str | None = None,
    namespace: str | None = None,
    redis_config: RedisConfig | None = None,
) -> CleanupResult:
    """Remove every key of a session (given as `config`, `session_id` or `prefix`) and its index entry."""
    cfg = connection_config(host=host, port=port, db=db, password=password, url=url, redis_config=redis_config)
    bridge = shared_bridge(cfg)
    if config is None:
        config = bridge._call(
            sessions.load_session, namespace=namespace_or_default(namespace), session_id=session_id, prefix=prefix
        )
    return bridge._call(sessions.cleanup_session, config)
