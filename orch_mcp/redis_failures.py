"""Redis failures: which are transient (a failover, an outage: call again), and the project error for each other
(TLS, credentials, an ACL refusal), as one sentence a user or a model can act on."""

from __future__ import annotations

import logging
import re
import ssl
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import anyio
import redis.exceptions as rexc
import redis.sentinel
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFoundError

from .config import RedisConfig
from .errors import ConfigError, OrchError, RedisUnavailableError
from .urls import parse_target, topology

T = TypeVar("T")
log = logging.getLogger(__name__)

START_HINT = "start it with `orch-mcp redis start` (or `docker compose up -d`), or point REDIS_URL at a running server"


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
