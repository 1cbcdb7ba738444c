"""The Redis URL forms: one server, a Redis Cluster, or a master that Sentinel watches over.

- `redis://[user:password@]host:port/db`, `rediss://` (TLS), `unix:///path/to/redis.sock`: one server.
- `redis+cluster://[user:password@]host:port[,host:port...][/0]`, `rediss+cluster://`: a Redis Cluster, found
  from any of the listed nodes (the client learns the rest); a cluster has database 0 only.
- `redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]`, `rediss+sentinel://`: the master
  that the listed Sentinels name `service` (26379 is the default port). The credentials are the servers';
  the Sentinels are asked without them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

Topology = Literal["single", "cluster", "sentinel"]

#: scheme -> (topology, TLS)
SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
DEFAULT_PORT = {"cluster": 6379, "sentinel": 26379}
CLUSTER_EXAMPLE = "redis+cluster://node1:6379,node2:6379"
SENTINEL_EXAMPLE = "redis+sentinel://sentinel1:26379,sentinel2:26379/mymaster/0"


@dataclass(frozen=True)
class Target:
    """What a Redis Cluster or Sentinel URL names: its nodes (or Sentinels), credentials, service and database."""

    topology: Topology
    tls: bool
    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    service: str | None = None
    db: int = 0


def topology(url: str) -> Topology:
    """Which kind of Redis a URL names ("single" for anything that is not a cluster or Sentinel form)."""
    return SCHEMES.get(url.split("://", 1)[0].lower(), ("single", False))[0]


def parse_target(url: str) -> Target:
    """The nodes and options of a `redis+cluster://` or `redis+sentinel://` URL (or its rediss+ twin).

    ValueError saying what is wrong (without the URL, which may hold a password) if it cannot be used.
    """
    parts = urlsplit(url)
    kind, tls = SCHEMES.get(parts.scheme.lower(), ("single", False))
    example = CLUSTER_EXAMPLE if kind == "cluster" else SENTINEL_EXAMPLE
    if kind == "single":
        raise ValueError(f"is not a cluster or sentinel URL; use e.g. {CLUSTER_EXAMPLE} or {SENTINEL_EXAMPLE}")
    if parts.query or parts.fragment:
        raise ValueError(f"has options after '?' or '#', which this form does not take; use e.g. {example}")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    nodes = tuple(_node(item, DEFAULT_PORT[kind], example) for item in hosts.split(","))
    path = [p for p in parts.path.split("/") if p]
    service: str | None = None
    if kind == "sentinel":
        if not path:
            raise ValueError(f"names no master: put the name Sentinel knows it by after the hosts, e.g. {example}")
        service, path = unquote(path[0]), path[1:]
    if len(path) > 1 or (path and not path[0].isdigit()):
        raise ValueError(f"has a path this form does not take; use e.g. {example}")
    db = int(path[0]) if path else 0
    if kind == "cluster" and db != 0:
        raise ValueError(f"names database {db}, but a Redis Cluster has database 0 only; use e.g. {example}")
    return Target(kind, tls, nodes, unquote(user) or None, unquote(password) or None, service, db)


def _node(item: str, default_port: int, example: str) -> tuple[str, int]:
    host, port = item, ""
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif item.count(":") == 1:
        host, _, port = item.partition(":")
    if not host:
        raise ValueError(f"names a node without a host; use e.g. {example}")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"has a port that is not 1..65535 ({port!r}); use e.g. {example}")
    return host, int(port) if port else default_port


def masked(url: str) -> str:
    """`url` with its password (in the user part, or a `password=` option) replaced by ***, whatever its form."""
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if at and colon:
        netloc = f"{user}:***@{hosts}"
    tail = re.sub(r"([?&]password=)[^&#]*", r"\1***", tail)
    return f"{head}://{netloc}{tail}"
