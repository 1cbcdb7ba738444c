"""The servers behind a Redis URL: the one server, every node of a cluster, or a Sentinel's master and its replicas.

What is kept per server (ACL users, for one) must be set on each of them: a cluster does not pass ACL SETUSER on
to its other nodes, and a master does not replicate it to its replicas.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, cast
from urllib.parse import quote

from redis.asyncio.cluster import RedisCluster

from .config import RedisConfig
from .redis_client import Redis, is_cluster
from .urls import parse_target, topology

#: CLUSTER NODES flags of a node that cannot be reached (yet): it is left out.
_UNREACHABLE = {"handshake", "noaddr"}


@dataclass(frozen=True)
class Server:
    """One server: its address, its role (master or replica) and the config of a plain connection to it."""

    address: str
    role: str
    config: RedisConfig


def server_config(cfg: RedisConfig, host: str, port: int) -> RedisConfig:
    """A plain connection to `host:port` with `cfg`'s credentials, TLS settings and database."""
    target = parse_target(cfg.redis_url)
    scheme = "rediss" if target.tls else "redis"
    user = quote(target.username, safe="") if target.username else ""
    auth = f"{user}:{quote(target.password, safe='')}@" if target.password else f"{user}@" if user else ""
    where = f"[{host}]" if ":" in host else host
    return replace(cfg, url=f"{scheme}://{auth}{where}:{port}/{target.db}")


async def servers(cfg: RedisConfig, client: Redis) -> list[Server]:
    """Every server `cfg` names, masters first (`client` is the one `cfg` gives, used to ask who they are)."""
    kind = topology(cfg.redis_url)
    if kind == "single":
        return [Server(cfg.display_url, "master", cfg)]
    found: list[tuple[str, int, str]] = []
    if kind == "cluster" and is_cluster(client):
        nodes = cast("dict[str, dict[str, Any]]", await cast("RedisCluster", client).cluster_nodes())
        for address, info in nodes.items():
            flags = set(str(info.get("flags", "")).split(","))
            if not flags & _UNREACHABLE:
                host, _, port = address.rpartition(":")
                found.append((host, int(port), "master" if "master" in flags else "replica"))
    else:
        sentinel = client.connection_pool.sentinel_manager  # type: ignore[attr-defined]
        service = parse_target(cfg.redis_url).service
        host, port = await sentinel.discover_master(service)
        found.append((str(host), int(port), "master"))
        found += [(str(h), int(p), "replica") for h, p in await sentinel.discover_slaves(service)]
    found.sort(key=lambda s: (s[2] != "master", s[0], s[1]))
    return [Server(f"{h}:{p}", role, server_config(cfg, h, p)) for h, p, role in found]
