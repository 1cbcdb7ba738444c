"""The cluster and Sentinel URL forms: parsed, refused with a sentence, masked, and dispatched by the factory.

No server here (the `cluster` tests run them): the factory's clients are checked by their class and startup
nodes, before any connection is made.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.cluster import RedisCluster

from orch_mcp.config import RedisConfig
from orch_mcp.delivery.lua import check_one_slot
from orch_mcp.embedded import free_port
from orch_mcp.errors import ConfigError, RedisUnavailableError
from orch_mcp.redis_client import create_async_client, create_client
from orch_mcp.redis_failures import FAILOVER_HINT, redis_errors, transient
from orch_mcp.settings import RedisSettings
from orch_mcp.urls import Target, masked, parse_target


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis+cluster://a:7000,b:7001", Target("cluster", False, (("a", 7000), ("b", 7001)))),
        ("rediss+cluster://u:p%40w@a,[::1]:7002/0", Target("cluster", True, (("a", 6379), ("::1", 7002)), "u", "p@w")),
        (
            "redis+sentinel://:pw@s1:26379,s2/mymaster/2",
            Target("sentinel", False, (("s1", 26379), ("s2", 26379)), None, "pw", "mymaster", 2),
        ),
        ("rediss+sentinel://s1:5000/main", Target("sentinel", True, (("s1", 5000),), service="main")),
    ],
)
def test_cluster_and_sentinel_urls_are_parsed(url: str, target: Target) -> None:
    assert parse_target(url) == target
    assert RedisConfig(url=url).redis_url == url


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis+cluster://a:7000/3", "a Redis Cluster has database 0 only"),
        ("redis+cluster://a:99999", "has a port that is not 1..65535"),
        ("redis+cluster://a:1,,b:2", "names a node without a host"),
        ("redis+cluster://a:1?ssl_cert_reqs=none", "has options after '?'"),
        ("redis+sentinel://s1:26379", "names no master"),
        ("redis+sentinel://s1:26379/mymaster/x", "has a path this form does not take"),
        ("redis+nothing://a:1", "has an unsupported scheme"),
    ],
)
def test_a_bad_cluster_or_sentinel_url_is_one_sentence(url: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        RedisSettings.load(env={"REDIS_URL": url})
    assert str(caught.value).startswith("REDIS_URL=")


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@h:1/0",
        "rediss://user:s3cret@h:1/0",
        "redis+cluster://user:s3cret@a:1,b:2",
        "redis+sentinel://:s3cret@s1:26379,s2:26379/mymaster/0",
    ],
)
def test_the_password_is_masked_in_every_form(url: str) -> None:
    shown = RedisConfig(url=url).display_url
    assert "s3cret" not in shown and ":***@" in shown
    assert shown.split("@")[1] == url.split("@")[1]
    assert masked("redis+cluster://a:1,b:2") == "redis+cluster://a:1,b:2"


async def test_the_factory_dispatches_on_the_url_form() -> None:
    cluster = create_async_client(RedisConfig(url="redis+cluster://u:pw@127.0.0.1:7000,127.0.0.1:7001"))
    try:
        assert isinstance(cluster, RedisCluster)
        assert sorted(n.name for n in cluster.nodes_manager.startup_nodes.values()) == [
            "127.0.0.1:7000",
            "127.0.0.1:7001",
        ]
        assert cluster.get_connection_kwargs()["password"] == "pw"
        assert cluster.get_connection_kwargs()["decode_responses"] is True
    finally:
        await cluster.aclose()
    master = create_async_client(RedisConfig(url="redis+sentinel://127.0.0.1:26379/mymaster/2"))
    try:
        assert isinstance(master, aioredis.Redis)
        pool = master.connection_pool
        assert (pool.service_name, pool.connection_kwargs["db"]) == ("mymaster", 2)  # type: ignore[attr-defined]
    finally:
        await master.aclose()
    # The synchronous cluster client asks a node for the slots as it is made: nothing listens here.
    with pytest.raises(
        RedisUnavailableError, match=r"Redis at redis\+cluster://127.0.0.1:1 is unreachable: .*failover"
    ):
        create_client(url="redis+cluster://127.0.0.1:1")


def test_failover_replies_are_transient_and_other_errors_are_not() -> None:
    assert transient(rexc.ResponseError("UNBLOCKED force unblock from blocking operation, instance state changed"))
    assert transient(rexc.ReadOnlyError("You can't write against a read only replica."))
    assert transient(rexc.ClusterDownError("The cluster is down"))
    assert transient(rexc.ResponseError("Command # 1 (LREM k 1 v) of pipeline caused error: ('NOREPLICAS Not',)"))
    assert transient(
        rexc.ResponseError("Error running script (call to f_1): @user_script:54: @user_script: 54: -NOREPLICAS")
    )
    assert not transient(rexc.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"))
    assert not transient(rexc.AuthenticationError("invalid password"))


def test_a_script_given_keys_in_two_slots_fails_under_the_tests() -> None:
    check_one_slot("SEND", ["{a}:config", "{a}:tasks:1"])
    with pytest.raises(AssertionError, match="script SEND was given keys in 2 hash slots"):
        check_one_slot("SEND", ["{a}:config", "{b}:tasks:1"])


async def test_no_sentinel_answering_is_one_clear_error() -> None:
    config = RedisConfig(url=f"redis+sentinel://127.0.0.1:{free_port()}/mymaster/0")
    client = create_async_client(config)
    try:
        with pytest.raises(RedisUnavailableError) as caught, redis_errors(config):
            await client.get("x")
    finally:
        await client.aclose()
    assert str(caught.value) == (
        f"Redis at {config.redis_url} is unreachable: no Sentinel answered with the address of master 'mymaster'; "
        f"{FAILOVER_HINT}"
    )


async def test_a_write_on_a_connection_closed_under_it_is_transient() -> None:
    """redis-py 8.1 raises AttributeError there (redis/redis-py#4287); a failover of the cluster client meets it."""
    connection = aioredis.Connection()
    with pytest.raises(AttributeError) as caught:
        await connection._send_packed_command([b"PING\r\n"])
    assert transient(caught.value)
    assert not transient(AttributeError("'NoneType' object has no attribute 'x'"))  # raised here, not by redis-py
