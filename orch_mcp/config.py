"""The seed's RedisConfig and OrchConfig, read from the environment only when asked.

Their values are checked, and read from flags and environment, by the settings model in orch_mcp.settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from .errors import ConfigError
from .settings import DEFAULT_MAX_MESSAGE_BYTES as DEFAULT_MAX_MESSAGE_BYTES
from .settings import DEFAULT_NAMESPACE as DEFAULT_NAMESPACE
from .settings import URL_SCHEMES as URL_SCHEMES
from .settings import OrchSettings, RedisSettings, TLSVerify, is_tls_url, tls_problem, twin, url_problem
from .urls import masked


def validate_url(url: str, what: str = "REDIS_URL") -> str:
    """Return `url` if it is a Redis URL of a form orch_mcp.urls lists, else raise ConfigError naming `what`."""
    problem = url_problem(url)
    if problem:
        raise ConfigError(f"{what}={url!r} {problem}")
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
    #: TLS (rediss:// URLs only): CA, client certificate and key files (PEM), and how the server is verified.
    tls_ca_cert: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_verify: TLSVerify = "required"
    #: The Redis ACL user (Redis >= 6); None: the default user.
    username: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            checked = RedisSettings.check(f.name, getattr(self, f.name))
            if f.name.startswith("tls_"):  # files as absolute paths, the verify mode in lower case
                object.__setattr__(self, f.name, checked)
        problem = tls_problem(self.redis_url, self.tls_ca_cert, self.tls_cert, self.tls_key, self.tls_verify)
        if problem:
            raise ConfigError(problem)

    @property
    def tls(self) -> bool:
        """True if the connection uses TLS (a rediss:// URL)."""
        return is_tls_url(self.redis_url)

    def tls_env(self) -> dict[str, str]:
        """The REDIS_TLS_* variables that give another process these TLS settings (the ones set)."""
        names = ("tls_ca_cert", "tls_cert", "tls_key") + (("tls_verify",) if self.tls_verify != "required" else ())
        return {twin(RedisSettings.model_fields[n]).env: str(getattr(self, n)) for n in names if getattr(self, n)}

    @property
    def redis_url(self) -> str:
        """The connection URL, built from the fields when `url` is not set."""
        if self.url:
            return self.url
        user = quote(self.username, safe="") if self.username else ""
        auth = f"{user}:{quote(self.password, safe='')}@" if self.password else f"{user}@" if user else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"

    @property
    def display_url(self) -> str:
        """The connection URL with any password masked, for messages and logs."""
        return masked(self.redis_url)

    def with_credentials(self, username: str, password: str) -> RedisConfig:
        """The same server reached as ACL user `username` (in the URL when the config has one)."""
        if not self.url:
            return replace(self, username=username, password=password)
        parts = urlsplit(self.url)
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}"
        return replace(self, url=urlunsplit(parts._replace(netloc=netloc)))

    def with_overrides(
        self,
        *,
        url: str | None = None,
        host: str | None = None,
        port: int | None = None,
        db: int | None = None,
        password: str | None = None,
        username: str | None = None,
    ) -> RedisConfig:
        """A copy with the given fields replaced; host/port/db/username/password clear a URL from the environment."""
        fields_ = dict(url=url, host=host, port=port, db=db, password=password, username=username)
        given = {k: v for k, v in fields_.items() if v is not None}
        changes: dict[str, Any] = dict(given)
        for name in given:
            for other in RedisSettings.REPLACES[name]:
                changes.setdefault(other, RedisSettings.model_fields[other].default)
        return replace(self, **changes)

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> RedisConfig:
        """The config the loaded settings describe."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RedisConfig:
        """Read REDIS_URL, else REDIS_HOST/PORT/DB/USERNAME/PASSWORD; and REDIS_TIMEOUT, REDIS_TTL."""
        return cls.from_settings(RedisSettings.load(env=env))


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
        OrchSettings.check("namespace", self.namespace)
        OrchSettings.check("max_message_bytes", self.max_message_bytes)

    @classmethod
    def from_settings(cls, settings: OrchSettings) -> OrchConfig:
        """The config the loaded settings describe."""
        return cls(
            redis=RedisConfig.from_settings(settings),
            namespace=settings.namespace,
            max_message_bytes=settings.max_message_bytes,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OrchConfig:
        """Read the Redis variables plus ORCH_NAMESPACE and ORCH_MAX_MESSAGE_BYTES."""
        return cls.from_settings(OrchSettings.load(env=env))
