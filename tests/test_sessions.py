"""Sessions on a real Redis: both modes' identifiers and layout, lookup, listing, TTL, cleanup isolation."""

from __future__ import annotations

import os
import re

import pytest

from orch_mcp import delivery
from orch_mcp.errors import ConflictError, InvalidIdentifierError, NoSessionError, NotFoundError
from orch_mcp.keys import NamespaceKeys
from orch_mcp.messages import TaskMessage
from orch_mcp.redis_client import Redis
from orch_mcp.sessions import (
    SessionConfig,
    check_child,
    cleanup_session,
    current_session,
    init_session,
    list_sessions,
    load_session,
    session_keys,
    touch_session,
)
from orch_mcp.utils import short_hostname

NS = "test"
LIMIT = 1 << 20


async def all_keys(r: Redis) -> set[str]:
    """Every key in the database, by SCAN (what is really there, not what the library thinks)."""
    return {key async for key in r.scan_iter(count=1000)}


async def populate(r: Redis, cfg: SessionConfig) -> list[str]:
    """Give the session every kind of key it can have: queued, taken, reported, dead, present; returns task ids."""
    await delivery.claim_presence(r, cfg, 1, "token-1")
    first = await delivery.send_task(r, cfg, 1, "first", max_bytes=LIMIT)
    second = await delivery.send_task(r, cfg, 1, "second", {"n": 2}, max_bytes=LIMIT)
    third = await delivery.send_task(r, cfg, 2, "third", max_bytes=LIMIT)
    taken = await delivery.take_task(r, cfg, 1, 1)
    assert isinstance(taken, TaskMessage) and taken.task_id == first.task_id
    await delivery.report_task(r, cfg, 1, first.task_id, "one", max_bytes=LIMIT)
    assert await delivery.take_report(r, cfg, 1) is not None  # left unacknowledged in reports:inflight
    await r.lpush(cfg.keys.tasks(2), "not a message")
    assert (await delivery.take_task(r, cfg, 2, 1)) is not None  # the garbage goes to dead, then task 3 is taken
    await delivery.send_shutdown(r, cfg, 1)
    return [first.task_id, second.task_id, third.task_id]


async def test_summoner_mode_identifiers_and_layout(r: Redis) -> None:
    cfg = await init_session(r, namespace=NS, mode="summoner", max_children=3, ttl_s=120)
    assert re.fullmatch(r"[0-9a-f]{32}", cfg.session_id)
    assert cfg.prefix == f"summoner:{{{cfg.session_id}}}"
    assert cfg.report_queues == {str(n): f"{cfg.prefix}:reports" for n in (1, 2, 3)}  # one shared queue
    assert cfg.task_queues == {str(n): f"{cfg.prefix}:tasks:{n}" for n in (1, 2, 3)}
    assert cfg.monitor_channel == f"{cfg.prefix}:monitor"
    assert (cfg.status_stream, cfg.dead_letters) == (f"{cfg.prefix}:status", f"{cfg.prefix}:dead")
    assert (cfg.mode, cfg.max_children, cfg.ttl_s, cfg.namespace) == ("summoner", 3, 120, NS)
    # the config lives in Redis, so any process can read it, by id or by prefix
    assert await load_session(r, namespace=NS, session_id=cfg.session_id) == cfg
    assert await load_session(r, namespace=NS, prefix=cfg.prefix) == cfg
    assert await current_session(r, namespace=NS) == cfg
    assert await r.hget(NamespaceKeys(NS).sessions, cfg.session_id) == cfg.prefix


async def test_normal_mode_identifiers_and_layout(r: Redis) -> None:
    cfg = await init_session(r, namespace=NS, mode="normal", max_children=2, prefix="myproject-hostname")
    ms, pid = cfg.session_id.split("-")
    assert int(pid) == os.getpid() and len(ms) == 13
    assert cfg.prefix == "{myproject-hostname-001}" and cfg.name == "myproject-hostname-001"
    assert cfg.report_queues == {"1": "{myproject-hostname-001}:reports:1", "2": "{myproject-hostname-001}:reports:2"}
    assert cfg.monitor_channel is None
    again = await init_session(r, namespace=NS, mode="normal", prefix="myproject-hostname")
    assert again.prefix == "{myproject-hostname-002}" and again.session_id != cfg.session_id
    # found by its name (as get_config(prefix="myproject-hostname-001") does) or its full prefix
    assert await load_session(r, namespace=NS, prefix="myproject-hostname-001") == cfg
    assert await load_session(r, namespace=NS, prefix="{myproject-hostname-001}") == cfg
    # without prefix=, the project is the namespace and the host this machine's short name
    default = await init_session(r, namespace=NS, mode="normal")
    assert default.prefix == f"{{{NS}-{short_hostname()}-001}}"


async def test_normal_session_ids_never_collide(r: Redis) -> None:
    made = [await init_session(r, namespace=NS, mode="normal") for _ in range(20)]
    assert len({c.session_id for c in made}) == 20
    assert len(await list_sessions(r, namespace=NS)) == 20


async def test_explicit_session_id_cannot_be_reused(r: Redis) -> None:
    await init_session(r, namespace=NS, mode="summoner", session_id="fixed-id")
    with pytest.raises(ConflictError, match="already exists"):
        await init_session(r, namespace=NS, mode="summoner", session_id="fixed-id")
    await init_session(r, namespace=NS, mode="normal", session_id="fixed-normal")
    with pytest.raises(ConflictError, match="already exists"):
        await init_session(r, namespace=NS, mode="normal", session_id="fixed-normal")


async def test_list_current_and_missing_sessions(r: Redis) -> None:
    with pytest.raises(NoSessionError, match="init_session"):
        await current_session(r, namespace=NS)
    a = await init_session(r, namespace=NS, mode="summoner")
    b = await init_session(r, namespace=NS, mode="normal")
    other = await init_session(r, namespace="elsewhere", mode="summoner")
    assert [c.session_id for c in await list_sessions(r, namespace=NS)] == [a.session_id, b.session_id]
    assert (await current_session(r, namespace=NS)).session_id == b.session_id
    assert (await current_session(r, namespace="elsewhere")).session_id == other.session_id
    # a session whose keys expired drops out of the index, and "current" says so
    await r.delete(b.keys.config)
    assert [c.session_id for c in await list_sessions(r, namespace=NS)] == [a.session_id]
    with pytest.raises(NoSessionError, match="expired"):
        await current_session(r, namespace=NS)
    with pytest.raises(NotFoundError, match="list_sessions"):
        await load_session(r, namespace=NS, session_id=b.session_id)
    with pytest.raises(NotFoundError, match="no session with prefix"):
        await load_session(r, namespace=NS, prefix="nothing-here-001")


BAD_IDENTIFIERS = ["has space", "glob*", "what?", "[abc]", "{brace}", "br}ace", "tab\there", "new\nline", "", "x" * 129]


@pytest.mark.parametrize("bad", BAD_IDENTIFIERS)
async def test_bad_identifiers_are_refused(r: Redis, bad: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="invalid session id"):
        await init_session(r, namespace=NS, mode="summoner", session_id=bad or "x y")
    with pytest.raises(InvalidIdentifierError):
        await init_session(r, namespace=NS, mode="normal", prefix=bad or "x y")
    with pytest.raises(InvalidIdentifierError, match="namespace"):
        await init_session(r, namespace=bad, mode="summoner")
    with pytest.raises(InvalidIdentifierError):
        await load_session(r, namespace=NS, session_id=bad or "x y")
    assert await all_keys(r) == set()  # nothing was written


@pytest.mark.parametrize("bad", ["summoner:{a*b}", "other:{abc}", "{a b}"])
async def test_bad_full_prefixes_are_refused(r: Redis, bad: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        await load_session(r, namespace=NS, prefix=bad)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_children": 0}, "max_children"),
        ({"max_children": 1001}, "max_children"),
        ({"max_children": True}, "max_children"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": -3}, "ttl_s"),
        ({"mode": "turbo"}, "unknown mode"),
    ],
)
async def test_bad_session_shape(r: Redis, kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidIdentifierError, match=words):
        await init_session(r, namespace=NS, **kwargs)  # type: ignore[arg-type]


async def test_child_ids_are_one_to_max_children(r: Redis) -> None:
    cfg = await init_session(r, namespace=NS, max_children=3)
    assert [check_child(cfg, n) for n in (1, 2, 3)] == [1, 2, 3]
    for bad in (0, 4, -1, True, "1", 1.0):
        with pytest.raises(InvalidIdentifierError, match=r"1\.\.3"):
            check_child(cfg, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentifierError):
        await delivery.send_task(r, cfg, 4, "x", max_bytes=LIMIT)
    with pytest.raises(InvalidIdentifierError):
        await delivery.take_task(r, cfg, 0, 0.01)


@pytest.mark.parametrize("mode", ["summoner", "normal"])
async def test_every_session_key_has_the_session_ttl(r: Redis, mode: str) -> None:
    cfg = await init_session(r, namespace=NS, mode=mode, max_children=2, ttl_s=500)  # type: ignore[arg-type]
    await populate(r, cfg)
    keys = {k for k in await all_keys(r) if k.startswith(cfg.prefix + ":")}
    expected = {"config", "tasks:1", "tasks:2:inflight", "task_child", "counts", "records:1", "records:2", "status"}
    expected |= {"dead", "presence:1", "last_seen", "reports:inflight"}
    names = {k[len(cfg.prefix) + 1 :] for k in keys}
    assert expected <= names
    assert keys <= set(session_keys(cfg))  # a key set fixed by the child count: no key per task
    for key in keys:
        ttl = await r.ttl(key)
        if key == cfg.keys.presence(1):
            assert 0 < ttl <= delivery.PRESENCE_TTL_S  # presence carries its own short TTL
        else:
            assert 490 < ttl <= 500, (key, ttl)


async def test_touch_session_refreshes_every_key(r: Redis) -> None:
    cfg = await init_session(r, namespace=NS, mode="summoner", max_children=2, ttl_s=500)
    await populate(r, cfg)
    keys = [k for k in await all_keys(r) if k.startswith(cfg.prefix + ":") and k != cfg.keys.presence(1)]
    for key in keys:
        await r.expire(key, 10)
    assert await touch_session(r, cfg) is False  # rate-limited: the writes above touched it a moment ago
    assert await touch_session(r, cfg, force=True) is True
    for key in keys:
        assert await r.ttl(key) > 490, key


@pytest.mark.parametrize("mode", ["summoner", "normal"])
async def test_cleanup_removes_every_key_of_the_session_and_nothing_else(r: Redis, mode: str) -> None:
    doomed = await init_session(r, namespace=NS, mode=mode, max_children=2)  # type: ignore[arg-type]
    live = await init_session(r, namespace=NS, mode=mode, max_children=2, prefix="live")  # type: ignore[arg-type]
    await populate(r, doomed)
    await populate(r, live)
    await r.set("unrelated:key", "1")
    before = await all_keys(r)
    doomed_keys = {k for k in before if k.startswith(doomed.prefix + ":")}
    assert doomed_keys <= set(session_keys(doomed))  # the library knows every key the session has
    live_dump = {k: await r.dump(k) for k in before - doomed_keys if k != NamespaceKeys(NS).sessions}

    result = await cleanup_session(r, doomed)

    after = await all_keys(r)
    assert not any(doomed.prefix in k for k in after)
    assert set(result.removed_keys) == doomed_keys
    tombstone = NamespaceKeys(NS).cleaned(doomed.session_id)  # says "cleaned up" to agents still in it
    assert after == (before - doomed_keys) | {tombstone}
    assert 0 < await r.ttl(tombstone) <= doomed.ttl_s
    assert {k: await r.dump(k) for k in live_dump} == live_dump  # the live session is untouched
    assert await r.hgetall(NamespaceKeys(NS).sessions) == {live.session_id: live.prefix}
    assert await r.get(NamespaceKeys(NS).current) == live.session_id  # it pointed at the live one: kept
    # the live session still works end to end
    sent = await delivery.send_task(r, live, 2, "still here", max_bytes=LIMIT)
    assert (await delivery.get_task(r, live, sent.task_id)).state == "queued"
    # cleaning the current session leaves the pointer: resolving it says the session was cleaned up
    await cleanup_session(r, live)
    assert await r.get(NamespaceKeys(NS).current) == live.session_id
    with pytest.raises(NoSessionError, match=f"the current session '{live.session_id}' .* was cleaned up"):
        await current_session(r, namespace=NS)
    assert not any(k.startswith(live.prefix) for k in await all_keys(r))
    # a session id used again loses its tombstone
    await init_session(r, namespace=NS, mode="summoner", session_id="again")
    await cleanup_session(r, await current_session(r, namespace=NS))
    assert await r.exists(NamespaceKeys(NS).cleaned("again"))
    await init_session(r, namespace=NS, mode="summoner", session_id="again")
    assert not await r.exists(NamespaceKeys(NS).cleaned("again"))
