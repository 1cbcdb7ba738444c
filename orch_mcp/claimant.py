"""The presence lifecycle shared by the parent and the child agents: renew a claim in the background, give it up."""

from __future__ import annotations

import logging

import anyio

from . import delivery
from .errors import SessionGoneError
from .redis_client import Redis
from .sessions import SessionConfig

log = logging.getLogger(__name__)


class Claimant:
    """The presence lifecycle shared by the parent and the child: renew the claim in the background, give it up."""

    r: Redis
    session: SessionConfig
    token: str
    claimed: bool

    @property
    def presence_key(self) -> str:
        raise NotImplementedError

    async def claim(self, wait_s: float = 0.0) -> bool:
        raise NotImplementedError

    async def keep_presence(self) -> None:
        """Renew the claim every few seconds until cancelled, the session is gone or another server took it over."""
        while True:
            await anyio.sleep(delivery.presence.RENEW_EVERY_S)
            try:
                if not await self.claim():
                    log.warning("%s was taken over by another server: this one stops acting", self.presence_key)
                    return
            except SessionGoneError:
                log.info("session %s is gone: %s is not renewed", self.session.session_id, self.presence_key)
                self.claimed = False
                return
            except Exception as exc:  # keep renewing through Redis outages; say so each time
                log.warning("could not renew %s: %s", self.presence_key, exc)

    async def release(self) -> None:
        """Give up the claim, if held."""
        if self.claimed:
            await delivery.release(self.r, self.session, self.presence_key, self.token)
            self.claimed = False
