"""Settings: the seed's environment variables plus REDIS_URL, read only when asked; bad values name their variable."""

from __future__ import annotations

import pytest
import redis.connection

from orch_mcp.config import OrchConfig, RedisConfig, get_default_config
from orch_mcp.connection import connection_config
from orch_mcp.errors import ConfigError, OrchError
from orch_mcp.settings import NamespaceSettings, OrchSettings, RedisSettings, ServeSettings, twin


def test_defaults_from_an_empty_environment() -> None:
    cfg = get_default_config({})
    assert (cfg.host, cfg.port, cfg.db, cfg.password) == ("localhost", 6379, 0, None)
    assert (cfg.socket_timeout, cfg.default_ttl, cfg.url) == (10.0, 3600, None)
    assert cfg.redis_url == "redis://localhost:6379/0"


def test_seed_variables_are_read() -> None:
    env = {
        "REDIS_HOST": "redis",
        "REDIS_PORT": "6380",
        "REDIS_DB": "2",
        "REDIS_PASSWORD": "s3cret",
        "REDIS_TIMEOUT": "2.5",
        "REDIS_TTL": "60",
    }
    cfg = get_default_config(env)
    assert (cfg.host, cfg.port, cfg.db, cfg.password, cfg.socket_timeout, cfg.default_ttl) == (
        "redis",
        6380,
        2,
        "s3cret",
        2.5,
        60,
    )
    assert cfg.redis_url == "redis://:s3cret@redis:6380/2"
    assert "s3cret" not in cfg.display_url and "***" in cfg.display_url


@pytest.mark.parametrize("url", ["redis://h:1/0", "rediss://user:pw@h:6380/1", "unix:///tmp/redis.sock"])
def test_redis_url_wins_over_host_and_port(url: str) -> None:
    cfg = get_default_config({"REDIS_URL": url, "REDIS_HOST": "ignored", "REDIS_PORT": "1234"})
    assert cfg.redis_url == url


def test_environment_is_read_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PORT", "7001")
    first = get_default_config()
    monkeypatch.setenv("REDIS_PORT", "7002")
    assert (first.port, get_default_config().port) == (7001, 7002)


def test_keyword_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://from-env:1/0")
    assert connection_config().redis_url == "redis://from-env:1/0"
    # host= / port= (the seed's keywords) replace a URL taken from the environment; url= wins over all
    assert connection_config(host="h", port=7).redis_url == "redis://h:7/0"
    assert connection_config(url="redis://u:9/3", host="h").redis_url == "redis://u:9/3"


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("REDIS_PORT", "abc", "whole number"),
        ("REDIS_PORT", "0", "out of range"),
        ("REDIS_PORT", "70000", "out of range"),
        ("REDIS_DB", "-1", "out of range"),
        ("REDIS_DB", "x", "whole number"),
        ("REDIS_TTL", "-5", "out of range"),
        ("REDIS_TTL", "0", "out of range"),
        ("REDIS_TTL", "1.5", "whole number"),
        ("REDIS_TIMEOUT", "soon", "not a number"),
        ("REDIS_TIMEOUT", "-1", "positive"),
        ("REDIS_TIMEOUT", "0", "positive"),
        ("ORCH_MAX_MESSAGE_BYTES", "0", "out of range"),
        ("ORCH_MAX_MESSAGE_BYTES", "big", "whole number"),
    ],
)
def test_bad_number_names_the_variable(name: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        OrchConfig.from_env({name: value})
    message = str(info.value)
    assert name in message and repr(value) in message and words in message


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://localhost:6379", "unsupported scheme"),
        ("localhost:6379", "unsupported scheme"),
        ("redis://localhost:notaport/0", "not a valid URL"),
        ("redis:///0", "names no host"),
        ("unix://", "names no socket path"),
    ],
)
def test_bad_redis_url_names_the_variable(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_default_config({"REDIS_URL": url})
    assert "REDIS_URL" in str(info.value) and words in str(info.value)


@pytest.mark.parametrize("namespace", ["a b", "team*", "{x}", "q?", "[a]", "x" * 129])
def test_bad_namespace_names_the_variable(namespace: str) -> None:
    with pytest.raises(ConfigError, match="ORCH_NAMESPACE"):
        OrchConfig.from_env({"ORCH_NAMESPACE": namespace})


def test_orch_config_from_env() -> None:
    cfg = OrchConfig.from_env({"ORCH_NAMESPACE": "team-a", "ORCH_MAX_MESSAGE_BYTES": "2048", "REDIS_PORT": "7"})
    assert (cfg.namespace, cfg.max_message_bytes, cfg.redis.port) == ("team-a", 2048, 7)
    assert OrchConfig.from_env({}).namespace == "orch"


@pytest.mark.parametrize(
    "kwargs",
    [{"port": 0}, {"port": 65536}, {"db": -1}, {"socket_timeout": 0}, {"default_ttl": -1}, {"url": "ftp://x"}],
)
def test_constructor_refuses_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        RedisConfig(**kwargs)  # type: ignore[arg-type]


def test_config_errors_are_orch_errors() -> None:
    with pytest.raises(OrchError):
        get_default_config({"REDIS_PORT": "abc"})


def test_a_password_with_url_characters_survives_the_url() -> None:
    password = "p@ss:w/rd#1%"
    config = RedisConfig(host="example.org", port=6380, password=password)
    kwargs = redis.connection.parse_url(config.redis_url)  # what redis-py makes of the URL
    assert (kwargs["password"], kwargs["host"], kwargs["port"]) == (password, "example.org", 6380)
    assert password not in config.display_url


# ---------------------------------------------------------------- one settings model for flags, variables and code


@pytest.mark.parametrize(
    ("name", "raw", "problem"),
    [
        ("port", "0", "is out of range; use 1..65535"),
        ("port", "lots", "is not a whole number; use 1..65535"),
        ("db", "-1", "is out of range; use 0 or more"),
        ("url", "http://h", "has an unsupported scheme; use redis://host:port/db"),
        ("url", "redis:///0", "names no host"),
    ],
)
def test_a_flag_and_its_variable_are_checked_and_described_by_one_field(name: str, raw: str, problem: str) -> None:
    field = RedisSettings.model_fields[name]
    variable, flag = twin(field).env, twin(field).flags[0]
    with pytest.raises(ConfigError) as from_env:
        RedisSettings.load(env={variable: raw})
    with pytest.raises(ConfigError) as from_flag:
        RedisSettings.load({name: raw}, env={})
    shown = raw if "range" in problem else repr(raw)
    assert str(from_env.value).startswith(f"{variable}={raw!r} {problem}")
    assert str(from_flag.value).startswith(f"argument {flag}: {shown} {problem}")


def test_values_given_in_code_are_checked_by_the_same_fields() -> None:
    with pytest.raises(ConfigError, match=r"^Redis port 0 is out of range; use 1\.\.65535$"):
        RedisConfig(port=0)
    with pytest.raises(ConfigError, match=r"^message size limit 0 is out of range; use 1 or more$"):
        OrchConfig(max_message_bytes=0)
    with pytest.raises(ConfigError, match=r"^invalid namespace 'a b'"):
        OrchConfig(namespace="a b")
    with pytest.raises(ConfigError, match="Redis port True is not a whole number"):  # code is checked strictly
        RedisConfig(port=True)


def test_every_setting_has_one_variable_and_each_flag_one_setting() -> None:
    variables: list[str] = []
    flags: list[str] = []
    for field in ServeSettings.model_fields.values():
        variables.append(twin(field).env)
        flags += twin(field).flags
    assert len(variables) == len(set(variables)) and len(flags) == len(set(flags))
    assert set(OrchSettings.model_fields) == {*RedisSettings.model_fields, *NamespaceSettings.model_fields} | {
        "max_message_bytes"
    }


def test_a_flag_replaces_the_variables_it_stands_for_without_reading_them() -> None:
    env = {"REDIS_URL": "not a url", "REDIS_HOST": "far", "REDIS_PORT": "lots", "REDIS_DB": "x"}
    assert RedisConfig.from_settings(RedisSettings.load({"url": "redis://near:1/2"}, env)).redis_url == (
        "redis://near:1/2"
    )
    loaded = RedisSettings.load({"host": "near", "port": "7", "db": "1"}, {"REDIS_URL": "not a url"})
    assert RedisConfig.from_settings(loaded).redis_url == "redis://near:7/1"
    with pytest.raises(ConfigError, match=r"^--url names the whole server: drop --host, --db, or put it in the URL$"):
        RedisSettings.load({"url": "redis://near:1/2", "host": "h", "db": "3"}, {})
    # what a flag does not replace is still read
    assert RedisSettings.load({"host": "near"}, {"REDIS_PASSWORD": "pw"}).password == "pw"
