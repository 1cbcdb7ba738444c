"""Plain queue operations on any list (the seed's RPUSH / BLPOP / publish meaning), as async functions."""

from __future__ import annotations

import re

from .errors import InvalidIdentifierError
from .redis_client import MAX_BLOCK_SLICE_S, Redis, is_cluster, sliced_wait

_BAD_QUEUE = re.compile(r"[\s\x00-\x1f\x7f]")


def validate_queue(name: str) -> str:
    """Queue and channel names: 1-512 characters, no whitespace or control characters."""
    if not isinstance(name, str) or not name or len(name) > 512 or _BAD_QUEUE.search(name):
        raise InvalidIdentifierError(f"invalid queue or channel name {name!r}: use 1-512 characters without spaces")
    return name


async def push(r: Redis, queue: str, *messages: str, front: bool = False) -> int:
    """RPUSH (or LPUSH with `front`) messages onto `queue`; returns the new length."""
    validate_queue(queue)
    length: int = await (r.lpush if front else r.rpush)(queue, *messages)
    return length


async def push_and_publish(r: Redis, queue: str, message: str, channel: str) -> tuple[int, int]:
    """RPUSH `message` onto `queue` and PUBLISH it on `channel` in one transaction; (length, receivers).

    On a Redis Cluster, where a MULTI cannot hold a PUBLISH, the two are sent one after the other.
    """
    validate_queue(queue)
    validate_queue(channel)
    if is_cluster(r):
        length = await r.rpush(queue, message)
        return int(length), int(await r.publish(channel, message))
    async with r.pipeline(transaction=True) as pipe:
        pipe.rpush(queue, message)
        pipe.publish(channel, message)
        length, receivers = await pipe.execute()
    return int(length), int(receivers)


async def pop(
    r: Redis, queues: list[str], timeout: float | None, slice_s: float = MAX_BLOCK_SLICE_S
) -> tuple[str, str] | None:
    """BLPOP from the first non-empty of `queues`, waiting up to `timeout` s (0 or None: forever)."""
    for q in queues:
        validate_queue(q)

    async def attempt(seconds: float) -> tuple[str, str] | None:
        popped = await r.blpop(queues, seconds)
        return None if popped is None else (str(popped[0]), str(popped[1]))

    return await sliced_wait(attempt, timeout, slice_s)
