"""What parent and child share: reading queues as bytes, dead-lettering, size limits, events."""

from __future__ import annotations

from typing import Any, cast

from redis.client import NEVER_DECODE

from ..errors import LimitError
from ..redis_client import Redis, StreamEntries
from ..sessions import SessionConfig
from ..utils import iso_now
from . import scripts
from .lua import DEAD_LETTER_CAP
from .records import DeadLetter, dead_letter_json

#: Pass as keyword arguments to a command whose reply may hold foreign bytes: it comes back undecoded.
RAW: dict[str, Any] = {NEVER_DECODE: True}


async def read_list(r: Redis, key: str) -> list[bytes]:
    """Every item of a list, as the exact bytes stored (never decoded, so foreign bytes cannot fail)."""
    items: list[bytes] = await r.execute_command("LRANGE", key, 0, -1, **RAW)
    return items


async def bury(r: Redis, cfg: SessionConfig, queue: str, raw: bytes, reason: str) -> None:
    """Move `raw` (its exact bytes) from `queue` to the dead letters with the reason."""
    letter = dead_letter_json(queue, raw, reason, iso_now())
    await scripts.DEAD(r, cfg, [queue, cfg.keys.dead, cfg.keys.status], [raw, letter, DEAD_LETTER_CAP, reason[:200]])


async def dead_letters(r: Redis, cfg: SessionConfig) -> list[DeadLetter]:
    """The session's dead letters, oldest first."""
    return [DeadLetter.model_validate_json(t) for t in await read_list(r, cfg.keys.dead)]


def check_size(what: str, size: int, limit: int, advice: str) -> None:
    """Raise LimitError if `size` bytes exceed `limit`."""
    if size > limit:
        raise LimitError(f"{what} is {size} bytes, over the limit of {limit} bytes (ORCH_MAX_MESSAGE_BYTES); {advice}")


async def recent_events(r: Redis, cfg: SessionConfig, count: int = 20) -> list[dict[str, str]]:
    """The latest `count` status events, newest first, each with its stream id."""
    entries = cast(StreamEntries, await r.xrevrange(cfg.keys.status, count=count))
    return [{"id": entry_id, **fields} for entry_id, fields in entries]
