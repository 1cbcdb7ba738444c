"""Presence with fencing (DESIGN decision 3): one live server per child, and one live parent, per session.

A holder claims its presence key with a random token and a TTL of a few seconds, and renews it every
TTL/3. A claim that lapsed with no rival is taken again silently (also by the old holder). A newcomer
whose claim is held waits, within its budget, for the claim to lapse: if the holder renews it
meanwhile, a live rival holds it and the newcomer is refused; if it lapses (its holder died), the
newcomer takes over. The take, heartbeat and report scripts check the child's token (fencing).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time

import anyio

from ..errors import ConflictError, SessionGoneError
from ..redis_client import Redis
from ..sessions import SessionConfig, check_child
from . import scripts_recovery

#: A presence claim lapses this long after its holder stops renewing it.
PRESENCE_TTL_S = 6.0
#: How often a holder renews its claim.
RENEW_EVERY_S = PRESENCE_TTL_S / 3
#: How often a newcomer looks whether a held claim lapsed.
_LOOK_EVERY_S = 0.2


class HeldError(ConflictError):
    """The claim is held by a live rival: it was renewed while the newcomer waited."""


def presence_token() -> str:
    """A token unique to this process and moment, to tell our claim from another's."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"


async def claim_child(
    r: Redis, cfg: SessionConfig, child_id: int, token: str, *, wait_s: float = 0.0, ttl_s: float = PRESENCE_TTL_S
) -> bool:
    """Claim (or renew) child `child_id` for `token`, waiting up to `wait_s` for a held claim to lapse.

    True once claimed; False if the claim is still held when `wait_s` ends with no sign of life from its
    holder (call again to go on waiting); HeldError if its holder renewed it meanwhile (a live rival).
    """
    check_child(cfg, child_id)
    keys = cfg.keys
    return await _claim(r, cfg, keys.presence(child_id), str(child_id), token, wait_s, ttl_s, f"child {child_id}")


async def claim_parent(
    r: Redis, cfg: SessionConfig, token: str, *, wait_s: float = 0.0, ttl_s: float = PRESENCE_TTL_S
) -> bool:
    """Claim (or renew) the parent of the session for `token`; like claim_child."""
    return await _claim(r, cfg, cfg.keys.parent_presence, "", token, wait_s, ttl_s, "the moogle (parent)")


async def _claim(
    r: Redis, cfg: SessionConfig, key: str, who: str, token: str, wait_s: float, ttl_s: float, what: str
) -> bool:
    deadline = time.monotonic() + max(wait_s, 0.0)
    last_pttl: int | None = None
    while True:
        reply = await scripts_recovery.PRESENCE(r, cfg, [key, cfg.keys.last_seen], [who, token, int(ttl_s * 1000)])
        if reply[0] != "held":
            return True
        pttl = int(reply[1])
        if last_pttl is not None and pttl > last_pttl + 100:
            raise HeldError(
                f"{what} of session {cfg.session_id!r} is held by another live orch-mcp server (it renewed its claim "
                "while this one waited)"
            )
        last_pttl = pttl
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await anyio.sleep(min(_LOOK_EVERY_S, left, max(pttl, 1) / 1000))


async def release(r: Redis, cfg: SessionConfig, key: str, token: str) -> None:
    """Give up a claim, if it is still ours (nothing to do once the session is gone)."""
    with contextlib.suppress(SessionGoneError):
        await scripts_recovery.RELEASE(r, cfg, [key], [token])
