"""Connection and orchestration settings, read from the environment only when asked."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import quote, urlsplit, urlunsplit

from .errors import ConfigError
from .utils import validate_identifier

DEFAULT_NAMESPACE = "orch"
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
URL_SCHEMES = ("redis", "rediss", "unix")


def validate_url(url: str, what: str = "REDIS_URL") -> str:
    """Return `url` if it is a redis://, rediss:// or unix:// URL, else raise ConfigError."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError as exc:
        raise ConfigError(f"{what}={url!r} is not a valid URL ({exc}); use e.g. redis://localhost:6379/0") from exc
    if parts.scheme not in URL_SCHEMES:
        raise ConfigError(
            f"{what}={url!r} has an unsupported scheme; use redis://host:port/db, rediss:// for TLS "
            "or unix:///path/to/redis.sock"
        )
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(f"{what}={url!r} names no socket path; use unix:///path/to/redis.sock")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{what}={url!r} names no host; use e.g. redis://localhost:6379/0")
    return url


@dataclass(frozen=True)
class RedisConfig:
    """Where Redis is and how to talk to it (the seed's fields, plus `url`, which wins when set)."""

    host: str = "localhost"
    port: int = 6379
    db: int = 0
    password: str | None = None
    socket_timeout: float = 10.0
    default_ttl: int = 3600
    url: str | None = None

    def __post_init__(self) -> None:
        if self.url is not None:
            validate_url(self.url, "url")
        if not 0 < self.port < 65536:
            raise ConfigError(f"Redis port {self.port} is out of range; use 1-65535")
        if self.db < 0:
            raise ConfigError(f"Redis db {self.db} is negative; use 0 or more")
        if self.socket_timeout <= 0:
            raise ConfigError(f"Redis timeout {self.socket_timeout} must be positive (seconds)")
        if self.default_ttl <= 0:
            raise ConfigError(f"Redis TTL {self.default_ttl} must be positive (seconds)")

    @property
    def redis_url(self) -> str:
        """The connection URL, built from the fields when `url` is not set."""
        if self.url:
            return self.url
        auth = f":{quote(self.password, safe='')}@" if self.password else ""  # redis-py unquotes it
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"

    @property
    def display_url(self) -> str:
        """The connection URL with any password masked, for messages and logs."""
        parts = urlsplit(self.redis_url)
        if parts.password:
            netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
        return self.redis_url

    def with_overrides(
        self,
        *,
        url: str | None = None,
        host: str | None = None,
        port: int | None = None,
        db: int | None = None,
        password: str | None = None,
    ) -> RedisConfig:
        """A copy with the given fields replaced; host/port/db/password clear a URL taken from the environment."""
        if url is not None:
            return replace(self, url=url)
        changes: dict[str, object] = {}
        if host is not None:
            changes["host"] = host
        if port is not None:
            changes["port"] = port
        if db is not None:
            changes["db"] = db
        if password is not None:
            changes["password"] = password
        if changes:
            changes["url"] = None
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RedisConfig:
        """Read REDIS_URL, REDIS_HOST, REDIS_PORT, REDIS_DB, REDIS_PASSWORD, REDIS_TIMEOUT, REDIS_TTL."""
        env = os.environ if env is None else env
        url = env.get("REDIS_URL") or None
        if url is not None:
            validate_url(url)
        return cls(
            host=env.get("REDIS_HOST") or "localhost",
            port=_env_int(env, "REDIS_PORT", 6379, low=1, high=65535),
            db=_env_int(env, "REDIS_DB", 0, low=0),
            password=env.get("REDIS_PASSWORD") or None,
            socket_timeout=_env_float(env, "REDIS_TIMEOUT", 10.0),
            default_ttl=_env_int(env, "REDIS_TTL", 3600, low=1),
            url=url,
        )


def get_default_config(env: Mapping[str, str] | None = None) -> RedisConfig:
    """The Redis settings from the environment (the seed's variables plus REDIS_URL)."""
    return RedisConfig.from_env(env)


@dataclass(frozen=True)
class OrchConfig:
    """Everything the orchestration layer needs besides the Redis location."""

    redis: RedisConfig = RedisConfig()
    namespace: str = DEFAULT_NAMESPACE
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        validate_identifier(self.namespace, "namespace")
        if self.max_message_bytes < 1:
            raise ConfigError("the message size limit must be at least 1 byte")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OrchConfig:
        """Read the Redis variables plus ORCH_NAMESPACE and ORCH_MAX_MESSAGE_BYTES."""
        env = os.environ if env is None else env
        namespace = env.get("ORCH_NAMESPACE") or DEFAULT_NAMESPACE
        try:
            validate_identifier(namespace, "namespace")
        except ValueError as exc:
            raise ConfigError(f"ORCH_NAMESPACE: {exc}") from exc
        return cls(
            redis=RedisConfig.from_env(env),
            namespace=namespace,
            max_message_bytes=_env_int(env, "ORCH_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES, low=1),
        )


def _env_int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; set it to e.g. {default}") from None
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f"{low} or more"
        raise ConfigError(f"{name}={raw!r} is out of range; use {bounds}")
    return value


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to e.g. {default:g}") from None
    if not value > 0:
        raise ConfigError(f"{name}={raw!r} must be a positive number of seconds")
    return value
