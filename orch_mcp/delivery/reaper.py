"""The reaper (DESIGN decisions 2, 4, 5): takes back the tasks of absent children and of passed deadlines.

Run single-flight (a lock key with a short TTL, which also spaces runs) by moogle and summoner servers
while they wait anyway - never a daemon of its own. `offline_children` tells a waiting parent which
children have been gone a while with work in their queue or in flight.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..redis_client import Redis
from ..sessions import SessionConfig
from ..utils import unix_ms
from . import scripts_recovery
from .lua import Transition
from .presence import PRESENCE_TTL_S

#: At most one reaper run per session in this many seconds.
REAP_EVERY_S = 2.0
#: A child with no presence, unseen this long, is absent: its working tasks go back to its queue.
ABSENT_AFTER_S = 2 * PRESENCE_TTL_S
#: How many passed deadlines one run handles.
_DEADLINES_PER_RUN = 100

# KEYS: config, reaper lock. ARGV: ctx, token, ms. The lock of one run (never on a session that is gone).
LOCK = Transition(
    "reaper_lock",
    """
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'ok'} end
return {'busy'}
""",
)


async def reap(r: Redis, cfg: SessionConfig, token: str) -> int:
    """One reaper run, unless another ran in the last REAP_EVERY_S; returns how many tasks it took back."""
    if (await LOCK(r, cfg, [cfg.keys.reaper], [token, int(REAP_EVERY_S * 1000)]))[0] != "ok":
        return 0
    keys = cfg.keys
    async with r.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.last_seen)
        pipe.execute_command("TIME")  # the clock last_seen comes from
        pipe.zrangebyscore(keys.leases, "-inf", unix_ms(), start=0, num=_DEADLINES_PER_RUN)
        seen, (seconds, micros), expired = await pipe.execute()
    taken_back = 0
    grace = int(ABSENT_AFTER_S * 1000)
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    # Only a child unseen for the grace can be absent (a live server renews last_seen every few seconds; the
    # script checks again): the others cost nothing here, however many children the session has.
    unseen = [n for n in cfg.child_ids if now_ms - _ms_or_0(seen.get(str(n))) >= grace]
    per_child: list[int] = []
    if unseen:
        async with r.pipeline(transaction=False) as pipe:
            for n in unseen:
                pipe.exists(keys.presence(n))
                pipe.llen(keys.inflight(n))
            per_child = await pipe.execute()
    for n, present, in_flight in zip(unseen, per_child[::2], per_child[1::2], strict=True):
        if not present and in_flight:
            outcome = await scripts_recovery.REAP_ABSENT(
                r,
                cfg,
                [
                    keys.presence(n),
                    keys.inflight(n),
                    keys.tasks(n),
                    keys.records(n),
                    keys.counts,
                    keys.leases,
                    keys.status,
                    keys.last_seen,
                ],
                [n, grace],
            )
            if outcome[0] == "ok":
                taken_back += int(outcome[1])
    if expired:
        owners = await r.hmget(keys.task_child, expired)
        for task_id, owner in zip(expired, owners, strict=True):
            if owner is None or not owner.isdigit():
                await r.zrem(keys.leases, task_id)
                continue
            n = int(owner)
            outcome = await scripts_recovery.REAP_DEADLINE(
                r,
                cfg,
                [keys.inflight(n), keys.tasks(n), keys.records(n), keys.counts, keys.leases, keys.status],
                [n, task_id],
            )
            taken_back += outcome[0] == "ok"
    return taken_back


def _ms_or_0(stamp: str | None) -> int:
    """A last_seen stamp (ms), 0 when missing or unreadable (as the reaper's script reads it)."""
    return int(stamp) if stamp and stamp.isdigit() else 0


class OfflineChild(BaseModel):
    """A child that has been gone a while with work waiting for it."""

    child_id: int
    offline_s: float = Field(description="seconds since it was last seen (or since the session began)")
    queued: int
    in_flight: int


async def offline_children(r: Redis, cfg: SessionConfig, after_s: float = ABSENT_AFTER_S) -> list[OfflineChild]:
    """Children with no presence, unseen for `after_s`, with tasks in their queue or in flight.

    One round trip reads when each child was last seen (a live server renews that every few seconds); only the
    children unseen for `after_s` are then looked at (a second round trip), so a large team of live children
    costs two hash reads, not three commands per child.
    """
    keys = cfg.keys
    async with r.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.last_seen)
        pipe.hgetall(keys.stopped)
        seen, stopped = await pipe.execute()
    now = unix_ms()
    began = int(datetime.fromisoformat(cfg.created_at).timestamp() * 1000)
    unseen: dict[int, float] = {}
    for n in cfg.child_ids:
        last = seen.get(str(n))
        gone_s = (now - (int(last) if last and last.isdigit() else began)) / 1000  # never seen: since it began
        if gone_s >= after_s:
            unseen[n] = gone_s
    if not unseen:
        return []
    async with r.pipeline(transaction=False) as pipe:
        for n in unseen:
            pipe.exists(keys.presence(n))
            pipe.llen(keys.tasks(n))
            pipe.llen(keys.inflight(n))
        replies = await pipe.execute()
    found = []
    for i, (n, gone_s) in enumerate(unseen.items()):
        present, queued, in_flight = replies[i * 3 : i * 3 + 3]
        if str(n) in stopped and not queued:
            continue  # what it holds is its shutdown
        if not present and (queued or in_flight):
            found.append(OfflineChild(child_id=n, offline_s=gone_s, queued=int(queued), in_flight=int(in_flight)))
    return found
