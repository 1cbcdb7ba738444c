"""Per-process state: the Redis client, the resolved session and the role's agent, held by the lifespan."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.abc
from mcp.server.mcpserver import MCPServer

from .. import delivery
from ..agents import AsyncChild, AsyncParent
from ..delivery import HeldError
from ..delivery.child import fenced_error
from ..errors import ConfigError, ConflictError, InvalidIdentifierError, NotFoundError, SessionGoneError
from ..keys import NamespaceKeys
from ..redis_client import Redis, block_slice, create_async_client
from ..sessions import SessionConfig, cleaned_up, resolve_session
from .settings import ServerSettings

log = logging.getLogger(__name__)

#: How long a first call waits for the claim of a server that died to lapse (its TTL, and a little).
PRESENCE_WAIT_S = delivery.PRESENCE_TTL_S + 1

#: How many recent wait_for_report calls a late cancel can still bring a report back for.
DELIVERIES_REMEMBERED = 16

T = TypeVar("T")


@dataclass
class ServerState:
    """What lives as long as the server: the Redis client, the resolved session and the role's agent."""

    settings: ServerSettings
    redis: Redis
    background: anyio.abc.TaskGroup
    session: SessionConfig | None = None
    #: The session this server served until it was cleaned up or expired (while no other one is there to serve).
    gone: SessionConfig | None = None
    parent: AsyncParent | None = None
    child: AsyncChild | None = None
    _presence: anyio.CancelScope | None = None
    #: Request id -> the exact bytes of the report that wait_for_report call returned (the latest few).
    _delivered: OrderedDict[str, bytes] = field(default_factory=OrderedDict)
    #: Request ids the client cancelled before their wait_for_report had noted what it returned.
    _cancelled_early: OrderedDict[str, None] = field(default_factory=OrderedDict)
    #: What identifies the newest MCP connection (its handshake's client parameters, one object per connection).
    _newest: object | None = None
    _confirmed: float = float("-inf")
    _resolve_lock: anyio.Lock = field(default_factory=anyio.Lock)
    _wait_lock: anyio.Lock = field(default_factory=anyio.Lock)

    @property
    def slice_s(self) -> float:
        """One blocking slice: the progress interval, kept well under the socket timeout."""
        return min(self.settings.progress_interval_s, block_slice(self.settings.orch.redis))

    @property
    def session_id(self) -> str:
        """The resolved session's id, or "" before the first resolution."""
        return self.session.session_id if self.session is not None else ""

    @asynccontextmanager
    async def waiting(self, timeout_s: float) -> AsyncIterator[bool]:
        """Hold the wait lock (one wait at a time per server) if it frees up within timeout_s; yield whether it did."""
        acquired = False
        try:
            self._wait_lock.acquire_nowait()
            acquired = True
        except anyio.WouldBlock:
            with anyio.move_on_after(timeout_s):
                await self._wait_lock.acquire()
                acquired = True
        try:
            yield acquired
        finally:
            if acquired:
                self._wait_lock.release()

    async def current(self) -> SessionConfig:
        """The server's session: resolved at the first call, kept, resolved again only once it no longer exists.

        Its existence is confirmed with one EXISTS per call, except within `session_check_s` of the last
        confirmation: a burst of calls (a script) pays for it once, an agent's calls seconds apart each time.
        Once the session it served is gone, every call says so (cleaned up, or expired) until a new session
        can be resolved - never "no session exists yet", which would tell an agent to wait for one.
        """
        cfg = self.session
        if cfg is not None:
            now = time.monotonic()
            if now - self._confirmed < self.settings.session_check_s:
                return cfg
            if await self.redis.exists(cfg.keys.config):
                self._confirmed = now
                return cfg
        async with self._resolve_lock:
            if self.session is not None and self.session is not cfg:
                return self.session  # another call resolved it meanwhile
            ns = self.settings.namespace
            try:
                found = await resolve_session(self.redis, ns, self.settings.session_id)
            except NotFoundError:
                gone = self.session or self.gone
                if gone is None:  # a server started after its session was cleaned up hears it too
                    ref = self.settings.session_id
                    sid = await self.redis.get(NamespaceKeys(ns).current) if ref == "current" else ref
                    # a prefix is no session id: no tombstone to look for (and an ACL user may not look)
                    if sid and "{" not in sid and await cleaned_up(self.redis, ns, sid):
                        raise SessionGoneError(sid, cleaned_up=True) from None
                    raise
                if self.session is not None:
                    # gone, and nothing to move to: stop serving it (and its claim), and say so plainly
                    log.info("session %s is gone", gone.session_id)
                    self.session = self.parent = None
                    self.gone = gone
                    await self._drop_child()
                raise SessionGoneError(
                    gone.session_id, cleaned_up=await cleaned_up(self.redis, ns, gone.session_id)
                ) from None
            self.gone = None
            self._confirmed = time.monotonic()
            if self.session is None or found.prefix != self.session.prefix:
                await self._switch(found)
            return found

    async def _switch(self, cfg: SessionConfig) -> None:
        if self.session is not None:
            log.info("session %s is gone; now serving session %s", self.session.session_id, cfg.session_id)
        self.session = cfg
        limit = self.settings.orch.max_message_bytes
        await self._drop_child()  # the claim on the old session's child or parent
        if self.settings.role == "chocobo":
            assert self.settings.child_id is not None
            self.child = AsyncChild(
                self.redis, cfg, self.settings.child_id, max_message_bytes=limit, slice_s=self.slice_s
            )
        else:
            self.parent = AsyncParent(self.redis, cfg, max_message_bytes=limit, slice_s=self.slice_s)
            self._delivered.clear()

    async def moogle(self, wait_s: float = PRESENCE_WAIT_S) -> AsyncParent:
        """The parent of the server's session, holding the session's one parent claim.

        The first call waits up to `wait_s` for the claim of a moogle that died to lapse; a live one refuses.
        """
        cfg = await self.current()
        parent = self.parent
        assert parent is not None
        if not parent.claimed:
            try:
                claimed = await parent.claim(wait_s)
            except HeldError:
                claimed = False
            if not claimed:
                raise ConflictError(
                    f"session {cfg.session_id!r} already has a live moogle (another orch-mcp moogle server holds "
                    "it): a session has one parent. Stop this agent, or have the summoner create a new session for it "
                    "with init_session"
                )
            self._start_renewing(parent)
        return parent

    async def chocobo(self, wait_s: float = PRESENCE_WAIT_S) -> AsyncChild | None:
        """This server's child of the session, its presence claimed (then kept fresh in the background).

        A restarted server takes over its own lapsed claim, waiting up to `wait_s` for it (None: still
        waiting, call again); a live rival holding the child, or a takeover of this server, is an error.
        """
        cfg = await self.current()
        child = self.child
        assert child is not None
        if not child.claimed:
            try:
                claimed = await child.claim(0 if child.fenced else wait_s)
            except InvalidIdentifierError:
                raise ConfigError(
                    f"this server is child {child.child_id} but session {cfg.session_id!r} has children "
                    f"1..{cfg.max_children}: this agent cannot work in it; tell the user to start it as one of those "
                    f"children, or have the summoner create a session with max_children >= {child.child_id}"
                ) from None
            except HeldError:
                raise ConflictError(
                    f"child {child.child_id} of session {cfg.session_id!r} is served by another live orch-mcp server: "
                    "two agents cannot be one child. Stop this agent (its tasks are with the other one)"
                ) from None
            if child.fenced and not claimed:
                raise fenced_error(cfg, child.child_id)
            if not claimed:
                return None
            child.fenced = False
            self._start_renewing(child)
        return child

    def _start_renewing(self, agent: AsyncChild | AsyncParent) -> None:
        if self._presence is not None:
            self._presence.cancel()
        self._presence = anyio.CancelScope()
        self.background.start_soon(self._keep_presence, agent, self._presence)

    @staticmethod
    async def _keep_presence(agent: AsyncChild | AsyncParent, scope: anyio.CancelScope) -> None:
        with scope:
            await agent.keep_presence()
            if isinstance(agent, AsyncChild) and not agent.claimed:
                agent.fenced = True

    async def _drop_child(self) -> None:
        """Stop renewing and give up this server's claim (child or parent), bounded: Redis may be gone."""
        if self._presence is not None:
            self._presence.cancel()
            self._presence = None
        agent: AsyncChild | AsyncParent | None = self.child or self.parent
        self.child = None
        if agent is not None and agent.claimed:
            with anyio.move_on_after(2):
                try:
                    await agent.release()
                except Exception as exc:  # giving up a claim must not fail: it lapses by itself
                    log.debug("could not release a presence claim: %s", exc)

    def is_newest(self, connection: object) -> bool:
        """Whether `connection` is the newest MCP connection to have connected: only it may act as the child."""
        return self._newest is None or self._newest is connection

    def connected(self, connection: object) -> None:
        """An MCP connection finished its handshake: it is now the newest."""
        self._newest = connection

    def delivered(self, request_id: str | int | None, raw: bytes | None) -> None:
        """Note which wait_for_report call returned which report (its exact bytes).

        If the client already cancelled that call (its cancel was handled while the call was finishing,
        and the SDK then drops the answer), the report is not acknowledged: the next wait returns it.
        """
        if request_id is None or raw is None or self.parent is None:
            return
        if self._cancelled_early.pop(str(request_id), 0) is None:
            log.info("wait_for_report %s was cancelled as it took a report; it will be delivered again", request_id)
            self.parent.keep_unacknowledged()
            return
        _remember(self._delivered, str(request_id), raw)

    async def delivery_cancelled(self, request_id: object) -> None:
        """The client gave up `request_id`: if it returned a report, deliver that report again.

        The client's cancel may arrive after the next wait_for_report began and acknowledged that report:
        then it is put back in the in-flight list, so the cancel is honoured whatever the order.
        """
        if request_id is None:
            return
        raw = self._delivered.pop(str(request_id), None)
        if raw is None:
            _remember(self._cancelled_early, str(request_id), None)
        elif self.parent is not None:
            log.info("wait_for_report %s was cancelled after it took a report; it will be delivered again", request_id)
            with anyio.CancelScope(shield=True):
                await self.parent.redeliver(raw)

    async def close(self) -> None:
        """Give up the chocobo's presence claim (bounded: Redis may be gone)."""
        await self._drop_child()


def _remember(recent: OrderedDict[str, T], key: str, value: T) -> None:
    """Add to a small ordered map that forgets its oldest entries."""
    recent[key] = value
    while len(recent) > DELIVERIES_REMEMBERED:
        recent.popitem(last=False)


def _lifespan(
    settings: ServerSettings, on_close: Callable[[], None] | None
) -> Callable[[MCPServer[ServerState]], AbstractAsyncContextManager[ServerState]]:
    @asynccontextmanager
    async def lifespan(_: MCPServer[ServerState]) -> AsyncIterator[ServerState]:
        # No PING here: a server whose Redis is down still starts; each tool then says how to fix it.
        redis = create_async_client(settings.orch.redis)
        try:
            async with anyio.create_task_group() as background:
                state = ServerState(settings, redis, background)
                try:
                    yield state
                finally:
                    background.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await state.close()
        finally:
            with anyio.CancelScope(shield=True):
                await redis.aclose()
            if on_close is not None:
                on_close()

    return lifespan
