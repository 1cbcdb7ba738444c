"""The reliable parent and child: take, then report. The async classes (used by the MCP server) live here.

The sync twins `Parent` and `Child` (sync_agents.py, re-exported here) own a private event loop thread and run the
very same `AsyncParent` / `AsyncChild` coroutines on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from . import delivery
from .claimant import Claimant
from .config import DEFAULT_MAX_MESSAGE_BYTES
from .delivery import OnSlice, ReportOutcome, SessionStatus, TaskRecord
from .delivery.reaper import REAP_EVERY_S
from .errors import SessionGoneError
from .messages import ReportMessage, ReportStatus, ShutdownMessage, TaskMessage
from .redis_client import Redis
from .sessions import SessionConfig

log = logging.getLogger(__name__)

T = TypeVar("T")


class AsyncParent(Claimant):
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
        self._reap_tried = float("-inf")

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

    async def wait_for_report(
        self, timeout: float | None, on_slice: OnSlice | None = None, *, stop_when_idle: bool = False
    ) -> ReportMessage | None:
        """The next report, or None after `timeout` s (or at once when none can come, with `stop_when_idle`);
        the previous one is acknowledged now."""
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
            stop_when_idle=stop_when_idle,
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
        """Run the session's reaper (unless this parent tried or another server ran it in the last REAP_EVERY_S: a
        run holds the reaper's lock that long); never fails the caller."""
        now = time.monotonic()
        if now - self._reap_tried < REAP_EVERY_S:
            return 0
        self._reap_tried = now
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


class AsyncChild(Claimant):
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


# The synchronous twins live in sync_agents; they are part of this module's API.
from .sync_agents import Child, Parent  # noqa: E402

__all__ = ["AsyncChild", "AsyncParent", "Child", "Parent"]
