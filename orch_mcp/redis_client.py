"""Redis clients (the seed's synchronous create_client, the core's create_async_client) for every URL form, and
sliced blocking waits. What a Redis failure means (retry, or which error) is in orch_mcp.redis_failures."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, cast

import redis
import redis.asyncio as aioredis
import redis.cluster
import redis.sentinel
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry as SyncRetry
from redis.typing import EncodableT, FieldT, KeyT
from typing_extensions import Unpack

from .config import RedisConfig, get_default_config
from .redis_failures import redis_errors
from .urls import parse_target, topology

T = TypeVar("T")
log = logging.getLogger(__name__)

#: The longest single blocking command; a wait longer than this is several commands in a row, so a
#: socket timeout never fires mid-wait and a dead connection is noticed within one slice.
MAX_BLOCK_SLICE_S = 5.0

if TYPE_CHECKING:

    class Redis(aioredis.Redis):
        """The asyncio client every async operation takes first, as the type checker sees it.

        redis-py 8 annotates every command of the asyncio client (an awaitable of the reply; 5-7 type
        replies `Awaitable[Any] | Any`, so mypy is run against 8). A reply is typed `bytes | str`
        whatever decode_responses says: the commands below say what ours (str replies) gives; other
        replies are narrowed with `cast` where they are read. At run time this is redis.asyncio.Redis.
        """

        async def execute_command(self, *args: EncodableT, **options: Any) -> Any:
            """Any command; with `**RAW` (delivery.common) its reply is left as bytes. Unannotated in redis-py."""

        def get(self, name: KeyT) -> Awaitable[str | None]:
            """GET: the value, as text."""

        def hget(self, name: KeyT, key: FieldT) -> Awaitable[str | None]:
            """HGET: the field's value, as text."""

        def lrem(self, name: KeyT, count: int, value: EncodableT) -> Awaitable[int]:
            """LREM: also of the exact bytes of a foreign item (redis-py annotates `value` as str only)."""

else:
    Redis = aioredis.Redis

#: A stream's entries as our client reads them (XRANGE, XREVRANGE, one stream of XREAD): (id, fields).
StreamEntries = list[tuple[str, dict[str, str]]]


class ServerOptions(TypedDict, total=False):
    """The seed's keyword arguments naming a Redis server, plus `url=`; each replaces what the config says."""

    url: str | None
    host: str | None
    port: int | None
    db: int | None
    password: str | None
    username: str | None


def resolve_config(config: RedisConfig | None = None, **where: Unpack[ServerOptions]) -> RedisConfig:
    """The config to use: `config` (or the environment's) with the seed's keyword arguments applied."""
    base = config if config is not None else get_default_config()
    return base.with_overrides(**where)


def create_client(config: RedisConfig | None = None, **where: Unpack[ServerOptions]) -> redis.Redis:
    """The seed's client: a synchronous redis-py client (hiredis parser, str replies) for `config` or the environment.

    The seed's keyword arguments (`host=`, `port=`, `db=`, `password=`, plus `url=`) replace what
    `config` or the environment says. Close it with `close()` (or use it in a `with` block). A
    `redis+cluster://` URL gives redis-py's RedisCluster, a `redis+sentinel://` URL the master its
    Sentinel client finds (orch_mcp.urls); both answer the same commands as a plain client.
    """
    cfg = resolve_config(config, **where)
    with redis_errors(cfg):  # the sync cluster client asks its nodes for the slots as it is made
        return cast("redis.Redis", _connect(cfg, _SYNC))


def create_async_client(config: RedisConfig | None = None, **where: Unpack[ServerOptions]) -> Redis:
    """The asyncio client the async core and the MCP server use (redis-py, hiredis parser, str replies).

    Same arguments and URL forms as create_client; close it with `await client.aclose()`.
    """
    cfg = resolve_config(config, **where)
    return cast("Redis", _connect(cfg, _ASYNC))


def _client_options(cfg: RedisConfig) -> dict[str, Any]:
    """What every client is created with: str replies, the configured timeout, a health check on idle connections;
    over TLS (a rediss URL, of any topology) the TLS settings, as redis-py names them."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": cfg.socket_timeout,
        "socket_connect_timeout": min(cfg.socket_timeout, 3.0),
        "health_check_interval": 30,
    }
    if cfg.tls:
        options |= {
            "ssl_ca_certs": cfg.tls_ca_cert,  # None: the system's trusted CAs
            "ssl_certfile": cfg.tls_cert,
            "ssl_keyfile": cfg.tls_key,
            "ssl_cert_reqs": cfg.tls_verify,
            "ssl_check_hostname": cfg.tls_verify == "required",
        }
    return options


class _SentinelMaster(redis.Redis):
    """The client of a Sentinel-watched master; closing it also closes its connections to the Sentinels."""

    def close(self) -> None:
        """Close the master's connections, then the Sentinels'."""
        super().close()
        for sentinel in self.connection_pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
            sentinel.close()


class _AsyncSentinelMaster(aioredis.Redis):
    """The asyncio client of a Sentinel-watched master; closing it also closes its connections to the Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the master's connections, then the Sentinels'."""
        await super().aclose(close_connection_pool)
        for sentinel in self.connection_pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
            await sentinel.aclose()


@dataclass(frozen=True)
class _Kit:
    """redis-py's classes for one side (sync or asyncio): what `_connect` builds a client from."""

    single: Any
    cluster: Any
    cluster_node: Any
    sentinel: Any
    sentinel_master: Any
    retry: Any


_SYNC = _Kit(
    redis.Redis,
    redis.cluster.RedisCluster,
    redis.cluster.ClusterNode,
    redis.sentinel.Sentinel,
    _SentinelMaster,
    SyncRetry,
)
_ASYNC = _Kit(aioredis.Redis, AsyncRedisCluster, AsyncClusterNode, AsyncSentinel, _AsyncSentinelMaster, AsyncRetry)

#: How often a cluster or Sentinel client tries a command again while a failover moves its master (redis-py's
#: own retry: with this backoff, a few seconds in all); past that, callers that wait retry on their own.
FAILOVER_RETRIES = 12
FAILOVER_BACKOFF = (0.05, 0.5)


def _connect(cfg: RedisConfig, kit: _Kit) -> Any:
    """The client `cfg`'s URL names: one server, a cluster (from its startup nodes) or a Sentinel-watched master."""
    options = _client_options(cfg)
    kind = topology(cfg.redis_url)
    if kind == "single":
        return kit.single.from_url(cfg.redis_url, **options)
    target = parse_target(cfg.redis_url)
    auth = {"username": target.username, "password": target.password}
    tls = {"ssl": True} if target.tls else {}
    retry = kit.retry(ExponentialWithJitterBackoff(*FAILOVER_BACKOFF), FAILOVER_RETRIES)
    if kind == "cluster":
        nodes = [kit.cluster_node(host, port) for host, port in target.nodes]
        return kit.cluster(startup_nodes=nodes, retry=retry, **auth, **tls, **options)
    # The Sentinels are asked with the socket and TLS options, without the servers' credentials, once each: a
    # Sentinel that does not answer is passed over for the next (the master's connection retries as a whole).
    asking = {k: v for k, v in options.items() if k.startswith(("socket_", "ssl"))} | tls
    asking["retry"] = kit.retry(NoBackoff(), 0)
    sentinel = kit.sentinel(list(target.nodes), sentinel_kwargs=asking, retry=retry, **auth, **tls, **options)
    return sentinel.master_for(target.service, redis_class=kit.sentinel_master, db=target.db)


def is_cluster(r: Redis) -> bool:
    """Whether `r` is redis-py's cluster client (a MULTI there may only touch one slot, and may not PUBLISH)."""
    return isinstance(r, AsyncRedisCluster)


def block_slice(config: RedisConfig) -> float:
    """How long one blocking command may wait: well under the socket timeout, at most MAX_BLOCK_SLICE_S."""
    return max(0.05, min(MAX_BLOCK_SLICE_S, config.socket_timeout / 2))


async def sliced_wait(
    attempt: Callable[[float], Awaitable[T | None]], timeout: float | None, slice_s: float, *, min_block_s: float = 0.0
) -> T | None:
    """Call `attempt(seconds)` in slices until it returns a value or `timeout` passes (None or 0: forever).

    An attempt given less than `min_block_s` only looks (it does not block), so it is the last one: without
    that, the final fraction of a wait would call it in a tight loop until the deadline.
    """
    deadline = None if not timeout else time.monotonic() + timeout
    while True:
        step = slice_s
        if deadline is not None:
            step = min(step, deadline - time.monotonic())
            if step <= 0.001:
                return None
        result = await attempt(max(step, 0.01))
        if result is not None or step < min_block_s:
            return result
        if deadline is not None and time.monotonic() >= deadline:
            return None
