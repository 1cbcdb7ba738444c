"""Real Redis Clusters and Sentinel setups for the `cluster` tests, from the suite's own redis-server binary.

`Cluster(masters=3, replicas_each=1)` starts cluster-enabled servers on free ports in temporary directories,
joins them from Python (CLUSTER MEET, ADDSLOTS in batches: 6.2 has no ADDSLOTSRANGE, CLUSTER REPLICATE) and
returns once every node says `cluster_state:ok` and agrees on the masters. `SentinelSetup()` starts a master,
a replica and three Sentinels (`redis-server sentinel.conf --sentinel`). Every wait polls the event it waits
for against a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.crc import key_slot
from tls_helpers import Pem
from typing_extensions import Self

from orch_mcp.embedded import EmbeddedRedis

T = TypeVar("T")
SLOTS = 16384
#: cluster-node-timeout of the test clusters: a master unreachable this long is failed over by its replica.
NODE_TIMEOUT_MS = 1000
POLL_S = 0.05


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    """Poll `probe` until it returns something truthy; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            found = probe()
        except (redis.RedisError, OSError) as exc:
            found, last = None, exc
        if found:
            return found
        time.sleep(POLL_S)  # a poll interval between looks at the event, not a wait for it
    raise AssertionError(f"{what}: not within {timeout:g} s (last error: {last})")


def bus_free_port() -> int:
    """A free port whose cluster bus port (+10000; 6.2 cannot move it) is free too."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 55535)
        if all(_bindable(p) for p in (port, port + 10000)):
            return port
    raise AssertionError("no free port pair for a cluster node")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class TLSFiles:
    """The CA, the nodes' certificate and a client's, for a cluster that speaks only TLS (client certs required)."""

    ca: Pem
    server: Pem
    client: Pem


class Node(EmbeddedRedis):
    """A cluster-enabled redis-server (on a port whose bus port is free too); with `tls`, TLS only, bus included."""

    def __init__(self, tls: TLSFiles | None = None) -> None:
        super().__init__(bus_free_port())
        self.tls = tls

    def command(self) -> list[str]:
        """The usual command line plus cluster mode, a short node timeout and a failover that never waits on data."""
        tls: list[str] = []
        if self.tls is not None:
            tls = ["--port", "0", "--tls-port", str(self.port), "--tls-cluster", "yes", "--tls-replication", "yes"]
            tls += ["--tls-cert-file", str(self.tls.server.cert), "--tls-key-file", str(self.tls.server.key)]
            tls += ["--tls-ca-cert-file", str(self.tls.ca.cert), "--tls-auth-clients", "yes"]
            # The bus and replication links are TLS clients too: they present the client certificate.
            tls += [
                "--tls-client-cert-file",
                str(self.tls.client.cert),
                "--tls-client-key-file",
                str(self.tls.client.key),
            ]
        return [
            *super().command(),
            *tls,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.data_dir / "nodes.conf"),
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            "--cluster-replica-validity-factor",
            "0",
        ]

    def client(self) -> redis.Redis:
        """A plain client on this one node."""
        if self.tls is None:
            return redis.Redis(host=self.host, port=self.port, decode_responses=True, socket_timeout=5)
        return redis.Redis(
            host=self.host,
            port=self.port,
            decode_responses=True,
            socket_timeout=5,
            ssl=True,
            ssl_ca_certs=str(self.tls.ca.cert),
            ssl_certfile=str(self.tls.client.cert),
            ssl_keyfile=str(self.tls.client.key),
            ssl_check_hostname=False,  # the nodes' certificate names localhost; they are reached by 127.0.0.1
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def kill(self) -> int:
        """kill -9 the server; its pid."""
        assert self.process is not None
        pid = self.process.pid
        os.kill(pid, signal.SIGKILL)
        self.process.wait()
        return pid


class _Servers:
    """Servers started by `_start` on entry, all stopped on exit (also when starting fails half-way)."""

    def __init__(self) -> None:
        self._stack = ExitStack()

    def _start(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


class Cluster(_Servers):
    """A running test cluster: `masters` masters with `replicas_each` replicas each."""

    def __init__(self, masters: int = 3, replicas_each: int = 0, tls: TLSFiles | None = None) -> None:
        super().__init__()
        self.tls = tls
        self.nodes: list[Node] = []
        self.masters_count = masters
        self.replicas_each = replicas_each

    def _start(self) -> None:
        total = self.masters_count * (1 + self.replicas_each)
        for _ in range(total):
            self.nodes.append(self._stack.enter_context(Node(self.tls)))
        first = self.nodes[0].client()
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", node.host, node.port)
        masters = self.nodes[: self.masters_count]
        bounds = [SLOTS * i // self.masters_count for i in range(self.masters_count + 1)]
        for i, node in enumerate(masters):
            with node.client() as c:
                slots = list(range(bounds[i], bounds[i + 1]))
                for start in range(0, len(slots), 1000):
                    c.execute_command("CLUSTER", "ADDSLOTS", *slots[start : start + 1000])
        ids = {node.address: self._node_id(node) for node in self.nodes}
        replicas = self.nodes[self.masters_count :]
        for j, replica in enumerate(replicas):
            master = masters[j % self.masters_count]
            # A node can be made a replica once it knows the master (MEET travels by gossip).
            wait_for(
                f"{replica.address} to know {master.address}",
                lambda r=replica, m=master: ids[m.address] in r.client().execute_command("CLUSTER", "NODES"),
            )
            with replica.client() as c:
                c.execute_command("CLUSTER", "REPLICATE", ids[master.address])
        first.close()
        wait_for("the cluster to be ok on every node", self._all_ok, 30)

    @staticmethod
    def _node_id(node: Node) -> str:
        with node.client() as c:
            return str(c.execute_command("CLUSTER", "MYID"))

    def _all_ok(self) -> bool:
        for node in self.live():
            with node.client() as c:
                if "cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                    return False
                if len(self.masters()) != self.masters_count:
                    return False
                if self.replicas_each and not self._replicas_synced(c):
                    return False
        return True

    @staticmethod
    def _replicas_synced(c: redis.Redis) -> bool:
        info = c.info("replication")
        if info.get("role") == "master":
            return int(info.get("connected_slaves", 0)) >= 1
        return info.get("master_link_status") == "up"

    @property
    def url(self) -> str:
        """The orch-mcp URL of the cluster: every node as a startup node."""
        scheme = "rediss+cluster" if self.tls else "redis+cluster"
        return f"{scheme}://" + ",".join(n.address for n in self.nodes)

    def live(self) -> list[Node]:
        """The nodes whose process runs."""
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def slot_owners(self) -> dict[int, str]:
        """Slot -> the address of the master serving it, as a live node sees it now."""
        with self.live()[0].client() as c:
            owners: dict[int, str] = {}
            for start, end, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
                for slot in range(int(start), int(end) + 1):
                    owners[slot] = f"{master[0]}:{master[1]}"
            return owners

    def masters(self) -> list[str]:
        """The addresses of the masters serving slots, as a live node sees them now."""
        return sorted(set(self.slot_owners().values()))

    def owner_of(self, key: str) -> str:
        """The address of the master that serves `key`'s slot now."""
        return self.slot_owners()[key_slot(key.encode())]

    def node(self, address: str) -> Node:
        return next(n for n in self.nodes if n.address == address)

    def replica_of(self, master: str) -> Node:
        """A live replica of the master at `master`."""
        mid = self._node_id(self.node(master))
        for node in self.live():
            with node.client() as c:
                info = c.info("replication")
                if info.get("role") == "slave" and self._master_id(c) == mid:
                    return node
        raise AssertionError(f"{master} has no live replica")

    @staticmethod
    def _master_id(c: redis.Redis) -> str | None:
        for line in str(c.execute_command("CLUSTER", "NODES")).splitlines():
            fields = line.split()
            if "myself" in fields[2]:
                return fields[3] if fields[3] != "-" else None
        return None

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Until every live node says cluster_state:ok with all masters serving."""

        def ok() -> bool:
            for node in self.live():
                with node.client() as c:
                    if "cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                        return False
            return len(self.masters()) == self.masters_count

        wait_for("the cluster to be ok again", ok, timeout)


# ---------------------------------------------------------------- Sentinel

SERVICE = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class SentinelNode(EmbeddedRedis):
    """A Sentinel: `redis-server sentinel.conf --sentinel`, watching SERVICE at `master`."""

    def __init__(self, master: EmbeddedRedis) -> None:
        super().__init__()
        self.master = master

    def command(self) -> list[str]:
        conf = self.data_dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind {self.host}\ndir {self.data_dir}\n"
            f"sentinel monitor {SERVICE} {self.master.host} {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        return [self.binary, str(conf), "--sentinel", "--loglevel", "notice", "--logfile", ""]

    #: A Sentinel never logs "Ready to accept connections": it is up once it has logged its id.
    READY_LINE = "sentinel id is"


class Guarded(EmbeddedRedis):
    """A server of the Sentinel setup: as a master it takes writes only while its replica acknowledges within 1 s,
    so a master that Sentinel has replaced (its replica promoted) stops taking writes that would be lost."""

    def command(self) -> list[str]:
        return [*super().command(), "--min-replicas-to-write", "1", "--min-replicas-max-lag", "1"]


class SentinelSetup(_Servers):
    """One master, one replica, three Sentinels."""

    def __init__(self) -> None:
        super().__init__()
        self.servers: list[EmbeddedRedis] = []
        self.sentinels: list[SentinelNode] = []

    def _start(self) -> None:
        master = self._stack.enter_context(Guarded())
        replica = self._stack.enter_context(Guarded())
        self.servers = [master, replica]
        with _client(replica) as c:
            c.replicaof(master.host, master.port)
        wait_for("the replica to sync", lambda: self._synced(replica))
        for _ in range(3):
            self.sentinels.append(self._stack.enter_context(SentinelNode(master)))
        wait_for("the Sentinels to see each other and the replica", self._sentinels_ready)

    @staticmethod
    def _synced(replica: EmbeddedRedis) -> bool:
        with _client(replica) as c:
            return c.info("replication")["master_link_status"] == "up"

    def _sentinels_ready(self) -> bool:
        for s in self.sentinels:
            with _client(s) as c:
                fields = c.sentinel_master(SERVICE)
                if int(fields["num-other-sentinels"]) < 2 or int(fields["num-slaves"]) < 1:
                    return False
        return True

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"{s.host}:{s.port}" for s in self.sentinels) + f"/{SERVICE}/0"

    def master(self) -> EmbeddedRedis:
        """The server the Sentinels name as master now."""
        with _client(self.sentinels[0]) as c:
            _, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return next(s for s in self.servers if s.port == int(port))

    @staticmethod
    def client(server: EmbeddedRedis) -> redis.Redis:
        """A plain client on one server or Sentinel."""
        return _client(server)

    def role(self, server: EmbeddedRedis) -> str:
        with _client(server) as c:
            return str(c.info("replication")["role"])


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, decode_responses=True, socket_timeout=5)
