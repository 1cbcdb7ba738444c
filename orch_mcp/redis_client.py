"""Redis clients (the seed's synchronous create_client, the core's create_async_client), Redis failures turned
into the project's errors, sliced blocking waits."""

from __future__ import annotations

import logging
import re
import ssl
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, cast
from urllib.parse import unquote, urlsplit

import anyio
import redis
import redis.asyncio as aioredis
import redis.cluster
import redis.exceptions as rexc
import redis.sentinel
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFoundError
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry as SyncRetry
from redis.typing import EncodableT, FieldT, KeyT
from typing_extensions import Unpack

from .config import RedisConfig, get_default_config
from .errors import ConfigError, OrchError, RedisUnavailableError
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
START_HINT = "start it with `orch-mcp redis start` (or `docker compose up -d`), or point REDIS_URL at a running server"


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


#: The error codes a server replies with while a failover moves its slots or its master role. They are found at
#: the start of the reply, inside a pipeline's error ("... caused error: ('NOREPLICAS ...") and inside a script's
#: ("... @user_script: 54: -NOREPLICAS ...", Redis 6.2).
_FAILOVER_REPLY = re.compile(
    r"(?:^|[\s('\"-])(UNBLOCKED|MASTERDOWN|LOADING|TRYAGAIN|CLUSTERDOWN|READONLY|NOREPLICAS)\b"
)
FAILOVER_HINT = "a failover may be under way: call again in a few seconds; if this persists, check the servers"


def transient(exc: BaseException) -> bool:
    """Whether `exc` is Redis unreachable or a failover in progress: the same call can succeed a little later.

    Besides connection failures and timeouts: a cluster that is down or moving slots (CLUSTERDOWN, TRYAGAIN,
    redirections past redis-py's limit), a former master now a replica (READONLY; redis-py's Sentinel client
    says "The previous master is now a slave") or cut off from its replicas (NOREPLICAS, with
    min-replicas-to-write), and a blocking command cut short by that change (UNBLOCKED).
    A refused password is not transient.
    """
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
        return False
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | ConnectionError | OSError):
        return True
    if isinstance(exc, rexc.ClusterDownError | rexc.TryAgainError | rexc.SlotNotCoveredError | rexc.ReadOnlyError):
        return True
    if isinstance(exc, rexc.ClusterError):
        return True  # ClusterError("TTL exhausted."): redirected more often than redis-py follows
    if isinstance(exc, rexc.RedisClusterException) and exc.__cause__ is not None:
        return transient(exc.__cause__)  # "Redis Cluster cannot be connected": no startup node answered
    if isinstance(exc, AttributeError | TypeError) and _in_redis_write(exc):
        return True
    return isinstance(exc, rexc.ResponseError) and _FAILOVER_REPLY.search(str(exc)) is not None


def _in_redis_write(exc: BaseException) -> bool:
    """Whether `exc` came from redis-py's asyncio connection writing on a socket that was just closed.

    redis-py 8.1 lets that surface as `AttributeError: 'NoneType' object has no attribute 'writelines'` (or a
    TypeError) instead of a ConnectionError (redis/redis-py#4287); the cluster client hits it when a failover
    makes it close the connections that other calls are using.
    """
    if "NoneType" not in str(exc):
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    return any(f.filename.endswith(("redis/asyncio/connection.py", "redis/connection.py")) for f in frames[-3:])


#: On a cluster or Sentinel, how long a call keeps trying through a failover before it answers the error.
FAILOVER_GRACE_S = 15.0
FAILOVER_RETRY_S = 0.25


async def through_failover(config: RedisConfig, call: Callable[[], Awaitable[T]]) -> T:
    """`call()`; on a cluster or Sentinel, while it fails with a transient error, call again for FAILOVER_GRACE_S.

    A node that stops answering there is a failover under way (a replica takes over within seconds), not an
    outage: the call waits it out. On one server the error is answered at once (the waits retry on their own).
    """
    if topology(config.redis_url) == "single":
        return await call()
    deadline = time.monotonic() + FAILOVER_GRACE_S
    while True:
        try:
            return await call()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + FAILOVER_RETRY_S > deadline:
                raise
            log.info("Redis is failing over (%s); trying again", exc)
            await anyio.sleep(FAILOVER_RETRY_S)


def unreachable_message(config: RedisConfig, exc: BaseException) -> str:
    """The sentence a user or model sees when Redis cannot be reached."""
    reason = str(exc).strip().rstrip(".") or type(exc).__name__
    if config.tls and not config.tls_cert and _dropped(exc):  # how a server that requires a client cert says so
        hint = "a server that requires TLS client certificates does that to a client without one: set REDIS_TLS_CERT"
        return f"Redis at {config.display_url} closed the TLS connection ({reason}); {hint} and REDIS_TLS_KEY"
    if isinstance(exc, redis.sentinel.MasterNotFoundError | AsyncMasterNotFoundError):
        reason = f"no Sentinel answered with the address of master {parse_target(config.redis_url).service!r}"
    hint = START_HINT if topology(config.redis_url) == "single" else FAILOVER_HINT
    return f"Redis at {config.display_url} is unreachable: {reason}; {hint}"


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a redis-py connection error, if there is one."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None or isinstance(seen, ssl.SSLError):
            break
        seen = seen.__cause__ or seen.__context__
    return seen if isinstance(seen, ssl.SSLError) else None


def _dropped(exc: BaseException) -> bool:
    """True if the server ended the connection after accepting it (a reset, or an EOF in the TLS stream)."""
    found = _ssl_error(exc)
    text = str(exc)
    return isinstance(found, ssl.SSLEOFError) or any(
        s in text for s in ("reset by peer", "Broken pipe", "Connection closed")
    )


def tls_error(config: RedisConfig, exc: BaseException) -> ConfigError | None:
    """The project error for a TLS handshake that failed on a certificate (None for any other failure)."""
    found = _ssl_error(exc) if config.tls else None
    if found is None or isinstance(found, ssl.SSLEOFError):
        return None
    reason = (getattr(found, "verify_message", None) or found.reason or str(found)).replace("_", " ").lower()
    if isinstance(found, ssl.SSLCertVerificationError):
        return ConfigError(
            f"Redis at {config.display_url} sent a TLS certificate this client does not trust ({reason}): set "
            "REDIS_TLS_CA_CERT to the CA that signed it, and connect with a host name the certificate names"
        )
    return ConfigError(
        f"Redis at {config.display_url} refused the TLS connection ({reason}): set REDIS_TLS_CERT and REDIS_TLS_KEY "
        "to a client certificate signed by a CA the server trusts"
    )


#: How Redis 7 and Valkey word an ACL refusal inside a script (a plain error reply, not NOPERM).
SCRIPT_NOPERM = ("The user executing the script can't", "ACL failure in script: ")


def refused_text(config: RedisConfig, exc: BaseException, who: str | None = None) -> str:
    """The sentence for a command or key the Redis ACL user may not use (NOPERM)."""
    reason = str(exc).removeprefix(SCRIPT_NOPERM[1]).split(" script: ", 1)[0].removeprefix("NOPERM ").rstrip(".")
    user = urlsplit(config.url).username if config.url else config.username
    role = f" ({who})" if who else ""
    return (
        f"Redis user {unquote(user or 'default')!r}{role} was refused by the ACL of Redis at {config.display_url}: "
        f"{reason}; this role's user may not use that key or command: tell the user to run `orch-mcp acl SESSION "
        "--apply` again and restart this server with the environment it prints for this role"
    )


def translate(config: RedisConfig, exc: BaseException, who: str | None = None) -> Exception | None:
    """The project error for a redis-py exception, or None if it is not one to translate.

    `who` names the role (and tool) for an ACL refusal.
    """
    if (tls := tls_error(config, exc)) is not None:
        return tls
    if isinstance(exc, rexc.NoPermissionError) or (
        isinstance(exc, rexc.ResponseError) and any(words in str(exc) for words in SCRIPT_NOPERM)
    ):
        return ConfigError(refused_text(config, exc, who))
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
        return ConfigError(
            f"Redis at {config.display_url} refused the credentials: {exc}; fix REDIS_USERNAME and REDIS_PASSWORD "
            "or the URL (`orch-mcp acl SESSION` prints each role's)"
        )
    if transient(exc):
        return RedisUnavailableError(unreachable_message(config, exc))
    if isinstance(exc, rexc.ResponseError) and "NOAUTH" in str(exc):
        return ConfigError(f"Redis at {config.display_url} needs a password: set REDIS_PASSWORD or put it in the URL")
    return None


@contextmanager
def redis_errors(config: RedisConfig, who: str | None = None) -> Iterator[None]:
    """Re-raise redis-py connection, auth and ACL failures as the project's errors (`who`: the role, for ACL ones)."""
    try:
        yield
    except OrchError:
        raise
    except (rexc.RedisError, rexc.RedisClusterException, OSError) as exc:
        mapped = translate(config, exc, who)
        if mapped is None:
            raise
        raise mapped from exc
