"""The synchronous parent and child of the seed API: each owns a private event loop thread (SyncBridge) and runs the
very same AsyncParent / AsyncChild coroutines on it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import delivery
from .config import DEFAULT_MAX_MESSAGE_BYTES, RedisConfig
from .connection import connection_config, namespace_or_default
from .delivery import ReportOutcome, SessionStatus, TaskRecord
from .messages import ReportMessage, ReportStatus, ShutdownMessage, TaskMessage
from .redis_client import block_slice
from .sessions import SessionConfig, resolve_session
from .sync import SyncBridge

if TYPE_CHECKING:  # agents re-exports Parent and Child from here, so it is imported when they are built
    pass

log = logging.getLogger(__name__)


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
            self.session: SessionConfig = self._bridge.call_with_client(
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
        from .agents import AsyncParent

        self._async = AsyncParent(
            self._bridge.client, self.session, max_message_bytes=max_message_bytes, slice_s=self._slice
        )

    def send_task(
        self, child_id: int, prompt: str, context: dict[str, Any] | None = None, priority: int = 0
    ) -> TaskMessage:
        """Queue a task for a child."""
        return self._bridge.call(self._async.send_task, child_id, prompt, context, priority)

    def wait_for_report(self, timeout: float | None = 25) -> ReportMessage | None:
        """The next report, or None after `timeout` s (0 or None: wait for ever)."""
        return self._bridge.call(self._async.wait_for_report, timeout)

    def get_task(self, task_id: str) -> TaskRecord:
        """A task's record."""
        return self._bridge.call(self._async.get_task, task_id)

    def shutdown(self, child_id: int | None = None, now: bool = False, reason: str | None = None) -> list[int]:
        """Tell one child or all to stop."""
        return self._bridge.call(self._async.shutdown, child_id, now, reason)

    def status(self) -> SessionStatus:
        """The session's children and task counts."""
        return self._bridge.call(self._async.status)

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
        from .agents import AsyncChild

        self._async = AsyncChild(
            self._bridge.client, self.session, child_id, max_message_bytes=max_message_bytes, slice_s=self._slice
        )
        if claim:
            try:
                # A restart after a crash takes over its own lapsed claim; a live rival is refused (HeldError).
                if not self._bridge.call(self._async.claim, delivery.PRESENCE_TTL_S + 1):
                    raise delivery.HeldError(
                        f"child {child_id} of session {self.session.session_id!r} is still held by another server"
                    )
            except BaseException:
                self._bridge.close()
                raise
            self._bridge.start_soon(self._async.keep_presence)

    @property
    def child_id(self) -> int:
        """This child's id."""
        return self._async.child_id

    def take(self, timeout: float | None = 25) -> TaskMessage | ShutdownMessage | None:
        """The next task (an unreported one first) or a shutdown; None after `timeout` s."""
        return self._bridge.call(self._async.take, timeout)

    def report(
        self, task_id: str, result: str, status: ReportStatus = "done", error: str | None = None
    ) -> ReportOutcome:
        """Record the result of a task and queue the report for the parent."""
        return self._bridge.call(self._async.report, task_id, result, status, error)

    def close(self) -> None:
        """Release the child id and close the connections."""
        if not self._bridge.closed:
            try:
                self._bridge.call(self._async.release)
            except Exception as exc:  # closing must not fail because Redis went away
                log.debug("release failed: %s", exc)
        super().close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
