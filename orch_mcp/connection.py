"""The seed's connection keyword arguments (host=, port=, …, url=) turned into settings."""

from __future__ import annotations

from typing import TypedDict

from .config import RedisConfig
from .redis_client import resolve_config
from .settings import NamespaceSettings
from .utils import validate_identifier


class ConnectionOptions(TypedDict, total=False):
    """The seed API's keyword arguments beyond host and port (`**conn: Unpack[ConnectionOptions]`)."""

    db: int | None
    password: str | None
    url: str | None
    redis_config: RedisConfig | None


def connection_config(
    *,
    host: str | None = None,
    port: int | None = None,
    db: int | None = None,
    password: str | None = None,
    url: str | None = None,
    redis_config: RedisConfig | None = None,
) -> RedisConfig:
    """The Redis settings for a seed-style call: `redis_config` or the environment, with the keywords applied."""
    return resolve_config(redis_config, url=url, host=host, port=port, db=db, password=password)


def namespace_or_default(namespace: str | None) -> str:
    """`namespace`, else ORCH_NAMESPACE, else the default, validated."""
    return validate_identifier(namespace, "namespace") if namespace else NamespaceSettings.load().namespace
