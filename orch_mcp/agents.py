"""The reliable parent and child: take, then report. Async classes for the MCP server; sync twins for scripts.

The sync `Parent` and `Child` own a private event loop thread (SyncBridge) and run the very same
`AsyncParent` / `AsyncChild` coroutines on it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from . import delivery
from .config import DEFAULT_MAX_MESSAGE_BYTES, RedisConfig
from .connection import connection_config, namespace_or_default
from .delivery import OnSlice, ReportOutcome, SessionStatus, TaskRecord
from .errors import SessionGoneError
from .messages import ReportMessage, ReportStatus, ShutdownMessage, TaskMessage
from .redis_client import Redis, block_slice
from .sessions import SessionConfig, resolve_session
from .sync import SyncBridge

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Claimant:
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


class AsyncParent(_Claimant):
    """The parent (moogle) of one session: sends tasks, collects reports (acknowledging each on the next wait).

    While it waits for reports it runs the session's reaper (single-flight across servers).
    """

    def __init__(
        self,
        r: Redis,
        session: SessionConfig,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        slice_s: float = 5.0,
    ) -> None:
        self.r = r
        self.session = session
        self.max_message_bytes = max_message_bytes
        self.slice_s = slice_s
        self.token = delivery.presence_token()
        self.claimed = False
        self._unacked: bytes | None = None

    async def claim(self, wait_s: float = 0.0) -> bool:
        """Claim (or renew) the session's one parent, waiting up to `wait_s` for a lapsed holder; like AsyncChild."""
        self.claimed = await delivery.claim_parent(self.r, self.session, self.token, wait_s=wait_s)
        return self.claimed

    @property
    def presence_key(self) -> str:
        """The key of the parent's presence claim."""
        return self.session.keys.parent_presence

    async def send_task(
        self,
        child_id: int,
        prompt: str,
        context: dict[str, Any] | None = None,
        priority: int = 0,
        *,
        deadline_s: float | None = None,
        max_deliveries: int = delivery.DEFAULT_MAX_DELIVERIES,
    ) -> TaskMessage:
        """Queue a task for a child."""
        return await delivery.send_task(
            self.r,
            self.session,
            child_id,
            prompt,
            context,
            priority,
            max_bytes=self.max_message_bytes,
            deadline_s=deadline_s,
            max_deliveries=max_deliveries,
        )

    async def wait_for_report(self, timeout: float | None, on_slice: OnSlice | None = None) -> ReportMessage | None:
        """The next report, or None after `timeout` s; the previous one is acknowledged now."""
        ack, self._unacked = self._unacked, None

        async def each_slice() -> None:
            await self.reap()
            if on_slice is not None:
                await on_slice()

        found = await delivery.take_report(
            self.r,
            self.session,
            timeout,
            ack=ack,
            slice_s=self.slice_s,
            on_slice=each_slice,
            max_bytes=self.max_message_bytes,
        )
        if found is None:
            return None
        report, self._unacked = found
        return report

    @property
    def unacknowledged(self) -> bytes | None:
        """The exact bytes of the report the last wait returned, until the next wait acknowledges it."""
        return self._unacked

    def keep_unacknowledged(self) -> None:
        """The last report never reached the caller: leave it in flight, so the next wait returns it again."""
        self._unacked = None

    async def redeliver(self, raw: bytes) -> None:
        """The report `raw` never reached the caller: the next wait returns it again (acknowledged or not)."""
        if raw == self._unacked:
            self.keep_unacknowledged()
        else:
            await delivery.restore_report(self.r, self.session, raw)

    async def get_task(self, task_id: str) -> TaskRecord:
        """A task's record."""
        return await delivery.get_task(self.r, self.session, task_id)

    async def requeue(self, task_id: str, child_id: int | None = None) -> TaskRecord:
        """Deliver a queued, working or failed task anew to its own child or another."""
        return await delivery.requeue_task(self.r, self.session, task_id, child_id)

    async def reap(self) -> int:
        """Run the session's reaper (unless another server just did); never fails the caller."""
        try:
            return await delivery.reap(self.r, self.session, self.token)
        except SessionGoneError:
            raise
        except Exception as exc:  # the reaper is housekeeping: a wait goes on without it
            log.warning("the reaper failed: %s", exc)
            return 0

    async def offline(self) -> list[delivery.OfflineChild]:
        """Children gone a while with work in their queue or in flight."""
        return await delivery.offline_children(self.r, self.session)

    async def shutdown(self, child_id: int | None = None, now: bool = False, reason: str | None = None) -> list[int]:
        """Tell one child or all to stop."""
        return await delivery.send_shutdown(self.r, self.session, child_id, now=now, reason=reason)

    async def status(self) -> SessionStatus:
        """The session's children and task counts."""
        return await delivery.session_status(self.r, self.session)


class AsyncChild(_Claimant):
    """Child `child_id` (chocobo) of one session: takes tasks, reports results, holds its presence claim.

    Once claimed, every take, heartbeat and report carries this child's token (fencing) and every report
    names the delivery it answers, so a stalled holder that lost its claim cannot take or report any more.
    Unclaimed (a library caller that opted out of presence), it acts without fencing.
    """

    def __init__(
        self,
        r: Redis,
        session: SessionConfig,
        child_id: int,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        slice_s: float = 5.0,
    ) -> None:
        self.r = r
        self.session = session
        self.child_id = child_id
        self.max_message_bytes = max_message_bytes
        self.slice_s = slice_s
        self.token = delivery.presence_token()
        self.claimed = False
        #: True once another server took this child over: this one acts no more.
        self.fenced = False
        #: task_id -> the delivery (attempt) this child took, named in its report and heartbeats.
        self._attempts: dict[str, int] = {}

    async def claim(self, wait_s: float = 0.0) -> bool:
        """Claim (or renew) this child id, waiting up to `wait_s` for a lapsed holder's claim to expire.

        True once held; False if it is still held when `wait_s` ends (call again); HeldError if a live
        rival holds it (it renewed its claim meanwhile).
        """
        self.claimed = await delivery.claim_child(self.r, self.session, self.child_id, self.token, wait_s=wait_s)
        return self.claimed

    @property
    def presence_key(self) -> str:
        """The key of this child's presence claim."""
        return self.session.keys.presence(self.child_id)

    async def take(
        self, timeout: float | None, on_slice: OnSlice | None = None
    ) -> TaskMessage | ShutdownMessage | None:
        """The next task (an unreported one first) or a shutdown; None after `timeout` s."""
        return (await self.take_next(timeout, on_slice)).message

    async def take_next(self, timeout: float | None, on_slice: OnSlice | None = None) -> delivery.Taken:
        """Like take, and also which of this child's tasks the parent cancelled meanwhile."""
        taken = await self._fenced(
            lambda: delivery.take(
                self.r,
                self.session,
                self.child_id,
                timeout,
                slice_s=self.slice_s,
                on_slice=on_slice,
                token=self._token,
                max_bytes=self.max_message_bytes,
            )
        )
        if isinstance(taken.message, TaskMessage):
            self._attempts[taken.message.task_id] = taken.attempt
        return taken

    async def report(
        self, task_id: str, result: str, status: ReportStatus = "done", error: str | None = None
    ) -> ReportOutcome:
        """Record the result of a task and queue the report for the parent."""
        outcome = await self._fenced(
            lambda: delivery.report_task(
                self.r,
                self.session,
                self.child_id,
                task_id,
                result,
                status,
                error,
                max_bytes=self.max_message_bytes,
                token=self._token,
                attempt=self._attempts.get(task_id, 0),
            )
        )
        self._attempts.pop(task_id, None)
        return outcome

    async def heartbeat(self, task_id: str, note: str | None = None) -> delivery.Heartbeat:
        """Record progress on a task in flight and push its deadline."""
        return await self._fenced(
            lambda: delivery.heartbeat_task(
                self.r,
                self.session,
                self.child_id,
                task_id,
                note,
                token=self._token,
                attempt=self._attempts.get(task_id, 0),
            )
        )

    @property
    def _token(self) -> str:
        return self.token if self.claimed else ""

    async def _fenced(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call`; if this server's claim had lapsed with no rival, take it again silently and retry once."""
        try:
            return await call()
        except delivery.FencedError:
            if not await self.claim():
                self.claimed = False
                self.fenced = True
                raise
            return await call()


class _SyncAgent:
    def __init__(
        self,
        session_id: str | None,
        prefix: str | None,
        host: str | None,
        port: int | None,
        url: str | None,
        namespace: str | None,
        redis_config: RedisConfig | None,
    ) -> None:
        cfg = connection_config(host=host, port=port, url=url, redis_config=redis_config)
        self._bridge = SyncBridge(cfg)
        try:
            self.session: SessionConfig = self._bridge._call(
                resolve_session, namespace_or_default(namespace), session_id, prefix=prefix
            )
        except BaseException:
            self._bridge.close()
            raise
        self._slice = block_slice(cfg)

    def close(self) -> None:
        """Close the connections and the loop thread."""
        self._bridge.close()


class Parent(_SyncAgent):
    """Synchronous parent of a session (default: the namespace's current session)."""

    def __init__(
        self,
        session_id: str | None = None,
        *,
        prefix: str | None = None,
        host: str | None = None,
        port: int | None = None,
        url: str | None = None,
        namespace: str | None = None,
        redis_config: RedisConfig | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(session_id, prefix, host, port, url, namespace, redis_config)
        self._async = AsyncParent(
            self._bridge.client, self.session, max_message_bytes=max_message_bytes, slice_s=self._slice
        )

    def send_task(
        self, child_id: int, prompt: str, context: dict[str, Any] | None = None, priority: int = 0
    ) -> TaskMessage:
        """Queue a task for a child."""
        return self._bridge._run(self._async.send_task, child_id, prompt, context, priority)

    def wait_for_report(self, timeout: float | None = 25) -> ReportMessage | None:
        """The next report, or None after `timeout` s (0 or None: wait for ever)."""
        return self._bridge._run(self._async.wait_for_report, timeout)

    def get_task(self, task_id: str) -> TaskRecord:
        """A task's record."""
        return self._bridge._run(self._async.get_task, task_id)

    def shutdown(self, child_id: int | None = None, now: bool = False, reason: str | None = None) -> list[int]:
        """Tell one child or all to stop."""
        return self._bridge._run(self._async.shutdown, child_id, now, reason)

    def status(self) -> SessionStatus:
        """The session's children and task counts."""
        return self._bridge._run(self._async.status)

    def __enter__(self) -> Parent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Child(_SyncAgent):
    """Synchronous child `child_id` of a session; claims the child id (presence) unless `claim=False`."""

    def __init__(
        self,
        session_id: str | None = None,
        child_id: int = 1,
        *,
        prefix: str | None = None,
        host: str | None = None,
        port: int | None = None,
        url: str | None = None,
        namespace: str | None = None,
        redis_config: RedisConfig | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        claim: bool = True,
    ) -> None:
        super().__init__(session_id, prefix, host, port, url, namespace, redis_config)
        self._async = AsyncChild(
            self._bridge.client, self.session, child_id, max_message_bytes=max_message_bytes, slice_s=self._slice
        )
        if claim:
            try:
                # A restart after a crash takes over its own lapsed claim; a live rival is refused (HeldError).
                if not self._bridge._run(self._async.claim, delivery.PRESENCE_TTL_S + 1):
                    raise delivery.HeldError(
                        f"child {child_id} of session {self.session.session_id!r} is still held by another server"
                    )
            except BaseException:
                self._bridge.close()
                raise
            self._bridge._start(self._async.keep_presence)

    @property
    def child_id(self) -> int:
        """This child's id."""
        return self._async.child_id

    def take(self, timeout: float | None = 25) -> TaskMessage | ShutdownMessage | None:
        """The next task (an unreported one first) or a shutdown; None after `timeout` s."""
        return self._bridge._run(self._async.take, timeout)

    def report(
        self, task_id: str, result: str, status: ReportStatus = "done", error: str | None = None
    ) -> ReportOutcome:
        """Record the result of a task and queue the report for the parent."""
        return self._bridge._run(self._async.report, task_id, result, status, error)

    def close(self) -> None:
        """Release the child id and close the connections."""
        if not self._bridge._closed:
            try:
                self._bridge._run(self._async.release)
            except Exception as exc:  # closing must not fail because Redis went away
                log.debug("release failed: %s", exc)
        super().close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
