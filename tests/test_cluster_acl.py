"""Per-role ACL users on a Redis Cluster and behind Sentinel (Redis >= 7): `orch-mcp acl --apply` creates them on
every server, redis-py's cluster client runs under them, and a chocobo's user still works after a failover.

Marked `cluster`; the servers come from the suite's binary, so the tests skip on Redis 6.2 (CI runs this file again
on Debian's Redis 7).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
import redis
from cluster_helpers import SERVICE, Cluster, SentinelSetup, wait_for
from mcp import Client
from mcp_helpers import ok, settings, text

from orch_mcp import acl
from orch_mcp.cli import acl as acl_cli
from orch_mcp.config import OrchConfig, RedisConfig
from orch_mcp.embedded import find_redis_server, redis_version
from orch_mcp.redis_client import create_async_client, create_client
from orch_mcp.server import create_server
from orch_mcp.sessions import Mode, SessionConfig, init_session

pytestmark = pytest.mark.cluster

NS = "aclc"


@pytest.fixture(scope="module", autouse=True)
def redis7() -> None:
    """Per-role ACL users need Redis >= 7.0 (decision 14): skip on an older suite binary."""
    version = redis_version(find_redis_server())
    if int(version.split(".")[0]) < 7:
        pytest.skip(f"per-role ACL users need Redis >= 7.0; this suite's server is {version}")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Three masters with a replica each: users must reach the replicas too."""
    with Cluster(masters=3, replicas_each=1) as made:
        yield made


async def run_acl(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> str:
    """`orch-mcp acl ...` in this process (in a thread: it runs its own event loop); its stdout."""
    code = await anyio.to_thread.run_sync(acl_cli.main, [*args, "--url", url, "--namespace", NS])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def role_orch(doc: dict[str, Any], label: str) -> OrchConfig:
    """The OrchConfig of a role, from the REDIS_URL its printed environment holds."""
    url = next(u["env"]["REDIS_URL"] for u in doc["users"] if u["label"] == label)
    return OrchConfig(redis=RedisConfig(url=url), namespace=NS)


def role_client(doc: dict[str, Any], label: str, role: str, child: int | None, prefix: str) -> Client:
    """An in-process MCP server of `role`, on the Redis user the acl command printed for it."""
    return Client(create_server(settings(role_orch(doc, label), role, child, session_id=prefix)))


async def until_ok(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """A tool call, called again (as an agent does when told so) while a failover makes Redis unreachable."""
    for _ in range(50):
        result = await client.call_tool(tool, args)
        if not result.is_error:
            return ok(result)
        assert "unreachable" in text(result), text(result)
        await anyio.sleep(0.1)  # an agent's back-off between calls
    raise AssertionError(f"{tool} still failing: {text(result)}")


async def run_tasks(moogle: Client, chocobos: dict[int, Client], per_child: int) -> list[dict[str, Any]]:
    """The moogle sends `per_child` tasks to each chocobo; each takes and reports them; the moogle collects them."""
    sent = [
        ok(await moogle.call_tool("send_task", {"child_id": n, "prompt": f"task {i} for {n}"}))["task_id"]
        for i in range(per_child)
        for n in chocobos
    ]
    for n, chocobo in chocobos.items():
        for _ in range(per_child):
            got = await until_ok(chocobo, "wait_for_task", {"timeout_s": 5})
            assert got["status"] == "task", got
            ok(await chocobo.call_tool("report", {"task_id": got["task"]["task_id"], "result": f"done by {n}"}))
    reports = [(await until_ok(moogle, "wait_for_report", {"timeout_s": 5}))["report"] for _ in sent]
    assert sorted(r["task_id"] for r in reports) == sorted(sent)
    return reports


# ---------------------------------------------------------------- Redis Cluster


@pytest.mark.parametrize("mode", ["summoner", "normal"])
async def test_acl_apply_on_a_cluster_then_the_team_runs_under_its_users(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], mode: Mode
) -> None:
    admin = create_async_client(RedisConfig(url=cluster.url))
    try:
        cfg = await init_session(admin, namespace=NS, mode=mode, max_children=2)
    finally:
        await admin.aclose()
    printed = await run_acl(capsys, cluster.url, cfg.session_id, "--apply")
    assert "created on each of the 6 servers of the Redis Cluster" in printed
    assert printed.count("(master)") == 3 and printed.count("(replica)") == 3
    doc = json.loads(await run_acl(capsys, cluster.url, cfg.session_id, "--apply", "--json"))
    assert doc["topology"] == "cluster" and len(doc["applied_on"]) == 6
    assert {n["address"] for n in doc["applied_on"]} == {n.address for n in cluster.nodes}
    names = {u["username"] for u in doc["users"]}
    for node in cluster.nodes:  # every node has every user: primaries and replicas
        with node.client() as c:
            assert names <= set(c.acl_users()), node.address
    for user in doc["users"]:  # what redis-py's cluster client runs on its own, and only on a cluster URL
        assert {"+cluster|slots", "+command", "+asking"} <= set(user["rules"]), user["label"]

    reset_acl_log(n.client() for n in cluster.nodes)
    with anyio.fail_after(30):
        async with AsyncExitStack() as stack:
            moogle = await stack.enter_async_context(role_client(doc, "moogle", "moogle", None, cfg.prefix))
            chocobos = {
                n: await stack.enter_async_context(role_client(doc, f"chocobo-{n}", "chocobo", n, cfg.prefix))
                for n in (1, 2)
            }
            reports = await run_tasks(moogle, chocobos, per_child=3)
            assert {r["result"] for r in reports} == {"done by 1", "done by 2"}
            assert ok(await moogle.call_tool("session_status", {}))["tasks"]["done"] == 6

    # The moogle's user reads the status stream (XREAD: the cluster client asks COMMAND GETKEYS where its keys are).
    moogle_redis = create_async_client(role_orch(doc, "moogle").redis)
    try:
        assert await moogle_redis.xread({cfg.keys.status: "0"}, count=1)
    finally:
        await moogle_redis.aclose()
    assert denied((n.client() for n in cluster.nodes), *names) == set()  # no node refused any role anything
    # Chocobo 1's user, through redis-py's synchronous cluster client: its own queue yes, another child's no.
    with create_client(role_orch(doc, "chocobo-1").redis) as chocobo:
        assert chocobo.llen(cfg.keys.tasks(1)) == 0
        with pytest.raises(redis.exceptions.NoPermissionError):
            chocobo.lrange(cfg.keys.tasks(2), 0, -1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            chocobo.llen(cfg.keys.tasks(2))


@pytest.mark.parametrize("omitted", [None, *acl.CLUSTER_CLIENT])
async def test_what_the_cluster_client_needs(cluster: Cluster, omitted: str | None) -> None:
    """A chocobo's cluster rules work; without any one of CLUSTER_CLIENT's commands the cluster client fails."""
    cfg = SessionConfig(
        session_id="need", mode="normal", prefix="{need}", namespace=NS, max_children=2, ttl_s=60, created_at="x"
    )
    user = acl.chocobo_user(cfg, 1, cluster=True)
    rules = [r for r in user.rules if r != f"+{omitted}"]
    assert omitted is None or len(rules) == len(user.rules) - 1
    for node in cluster.nodes:
        with node.client() as c:
            c.execute_command("ACL", "SETUSER", user.name, "reset", "on", ">pw", *rules)
    reset_acl_log(n.client() for n in cluster.nodes)
    queue = cfg.keys.tasks(1)
    client = create_async_client(RedisConfig(url=cluster.url.replace("://", f"://{user.name}:pw@")))
    try:
        if omitted in ("cluster|slots", "command"):  # the client cannot even start: CLUSTER SLOTS, then COMMAND
            with pytest.raises((redis.exceptions.RedisClusterException, redis.exceptions.NoPermissionError)):
                await client.llen(queue)
        else:
            await _llen_while_the_slot_migrates(cluster, client, queue, omitted)
    finally:
        await client.aclose()
    # What the servers refused this user: exactly the command left out, nothing else.
    assert denied((n.client() for n in cluster.nodes), user.name) == ({f"{user.name}: {omitted}"} if omitted else set())


def denied(clients: Iterable[redis.Redis], *usernames: str) -> set[str]:
    """What the servers refused these users (their ACL LOG), but CLIENT SETINFO (Redis 7.2+), which redis-py tries
    on each connection and goes on without."""
    refused = set()
    for client in clients:
        with client as c:
            refused |= {f"{e['username']}: {e['object']}" for e in c.acl_log() if e["username"] in usernames}
    return {entry for entry in refused if not entry.endswith(": client|setinfo")}


def reset_acl_log(clients: Iterable[redis.Redis]) -> None:
    for client in clients:
        with client as c:
            c.execute_command("ACL", "LOG", "RESET")


async def _llen_while_the_slot_migrates(cluster: Cluster, client: Any, queue: str, omitted: str | None) -> None:
    """LLEN of the queue; then again while its slot migrates to another master: the old one answers ASK for the
    missing key, and the client sends ASKING to the new one before the command."""
    assert await client.llen(queue) == 0
    with migrating(cluster, queue):
        if omitted == "asking":
            with pytest.raises(redis.exceptions.NoPermissionError, match="asking"):
                await client.llen(queue)
        else:
            assert await client.llen(queue) == 0


class migrating:  # a context manager read as a phrase
    """While inside: the slot of `key` is being migrated from its master to another master (nothing moved)."""

    def __init__(self, cluster: Cluster, key: str) -> None:
        from redis.crc import key_slot

        self.slot = key_slot(key.encode())
        self.source = cluster.node(cluster.owner_of(key))
        self.target = cluster.node(next(m for m in cluster.masters() if m != self.source.address))
        self.ids = {n.address: Cluster._node_id(n) for n in (self.source, self.target)}

    def __enter__(self) -> None:
        with self.target.client() as c:
            c.execute_command("CLUSTER", "SETSLOT", self.slot, "IMPORTING", self.ids[self.source.address])
        with self.source.client() as c:
            c.execute_command("CLUSTER", "SETSLOT", self.slot, "MIGRATING", self.ids[self.target.address])

    def __exit__(self, *exc: object) -> None:
        for node in (self.source, self.target):
            with node.client() as c:
                c.execute_command("CLUSTER", "SETSLOT", self.slot, "STABLE")


async def test_acl_apply_refuses_while_a_node_is_down(capsys: pytest.CaptureFixture[str]) -> None:
    with Cluster(masters=1, replicas_each=1) as small:
        down = small.nodes[1]
        down.kill()
        argv = ["--only", "summoner", "--apply", "--url", small.url, "--namespace", NS]
        assert await anyio.to_thread.run_sync(acl_cli.main, argv) == 1
        err = capsys.readouterr().err
        assert f"replica {down.address} does not answer" in err and "ACL users are per server" in err
        assert len(err.strip().splitlines()) == 1
        with small.nodes[0].client() as c:
            assert c.acl_users() == ["default"]  # nothing made anywhere


# ---------------------------------------------------------------- Sentinel


async def test_acl_apply_behind_sentinel_survives_a_failover(capsys: pytest.CaptureFixture[str]) -> None:
    with SentinelSetup() as sentinels:
        admin = create_async_client(RedisConfig(url=sentinels.url))
        try:
            cfg = await init_session(admin, namespace=NS, mode="normal", max_children=1)
        finally:
            await admin.aclose()
        doc = json.loads(await run_acl(capsys, sentinels.url, cfg.session_id, "--apply", "--json"))
        old = sentinels.master()
        new = next(s for s in sentinels.servers if s is not old)
        assert doc["topology"] == "sentinel"
        assert doc["applied_on"] == [
            {"address": f"{old.host}:{old.port}", "role": "master"},
            {"address": f"{new.host}:{new.port}", "role": "replica"},
        ]
        for user in doc["users"]:
            assert "+cluster|slots" not in user["rules"]  # not a cluster: nothing of the cluster client's
            with sentinels.client(new) as c:  # the replica has the users before it is ever promoted
                assert user["username"] in c.acl_users()

        reset_acl_log(sentinels.client(s) for s in sentinels.servers)
        with anyio.fail_after(60):
            async with AsyncExitStack() as stack:
                moogle = await stack.enter_async_context(role_client(doc, "moogle", "moogle", None, cfg.prefix))
                chocobo = await stack.enter_async_context(role_client(doc, "chocobo-1", "chocobo", 1, cfg.prefix))
                await run_tasks(moogle, {1: chocobo}, per_child=2)

                with sentinels.client(sentinels.sentinels[0]) as c:
                    c.execute_command("SENTINEL", "FAILOVER", SERVICE)

                def swapped() -> bool:
                    return (
                        sentinels.master() is new and sentinels.role(new) == "master" and sentinels.role(old) == "slave"
                    )

                def replicated() -> bool:  # the new master takes writes once its replica (the old master) is back
                    with sentinels.client(new) as c:
                        return int(c.info("replication")["connected_slaves"]) >= 1

                await anyio.to_thread.run_sync(lambda: wait_for("the Sentinels to fail over", swapped))
                await anyio.to_thread.run_sync(lambda: wait_for("the new master's replica", replicated))
                # The same servers go on, on the new master, each under its own user.
                reports = await run_tasks(moogle, {1: chocobo}, per_child=2)
                assert [r["result"] for r in reports] == ["done by 1"] * 2
        names = [u["username"] for u in doc["users"]]
        assert denied((sentinels.client(s) for s in sentinels.servers), *names) == set()
        with sentinels.client(new) as c:  # the chocobo's work after the failover was done on the new master
            assert int(c.hget(cfg.keys.counts, "done") or 0) == 4
        url = next(u["env"]["REDIS_URL"] for u in doc["users"] if u["label"] == "chocobo-1")
        with create_client(RedisConfig(url=url)) as chocobo_redis:
            assert chocobo_redis.connection_pool.get_master_address()[1] == new.port
            with pytest.raises(redis.exceptions.NoPermissionError):
                chocobo_redis.get(f"{NS}:current")
