"""The bridge behind the synchronous seed API: one private event loop thread per object drives the async core."""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, suppress
from functools import partial
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal
from typing_extensions import Self

from .config import RedisConfig
from .redis_client import Redis, create_client, redis_errors

T = TypeVar("T")


class SyncBridge:
    """Owns an event loop in a background thread and an async Redis client living on it.

    Sync facades (RedisSender, MessageReceiver, Parent, Child, the seed's functions) call
    `self._call(operation, *args)`, which runs `await operation(client, *args)` on that loop: the
    same coroutine the async API and the MCP server use, never a copy of the logic.
    """

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self._client: Redis = self._portal.call(self._open)
        self._closed = False
        _open_bridges.add(self)

    async def _open(self) -> Redis:
        return create_client(self.config)

    def _call(self, operation: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        async def run() -> T:
            return await operation(self._client, *args, **kwargs)

        with redis_errors(self.config):
            return self._portal.call(run)

    def _run(self, operation: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run `await operation(*args, **kwargs)` on the loop (for objects that already hold the client)."""
        with redis_errors(self.config):
            return self._portal.call(partial(operation, *args, **kwargs))

    def _start(self, operation: Callable[[], Awaitable[Any]]) -> None:
        """Start a background task on the loop; it is cancelled by close()."""
        self._portal.start_task_soon(operation)

    @property
    def client(self) -> Redis:
        """The async client (usable only from coroutines run through this bridge)."""
        return self._client

    def close(self) -> None:
        """Close the Redis connections and stop the loop thread, cancelling any wait still running."""
        if self._closed:
            return
        self._closed = True
        _open_bridges.discard(self)
        try:
            self._portal.call(self._client.aclose)
        finally:
            with suppress(RuntimeError):
                self._portal.call(self._portal.stop, True)
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_shared: dict[RedisConfig, SyncBridge] = {}
_shared_lock = threading.Lock()
# Bridges still open at interpreter exit are closed then: a background task (a Child's presence
# renewal) would otherwise keep the loop thread's shutdown waiting for ever.
_open_bridges: weakref.WeakSet[SyncBridge] = weakref.WeakSet()


def shared_bridge(config: RedisConfig) -> SyncBridge:
    """The process-wide bridge for `config`, used by the seed's module-level functions (one loop thread, reused)."""
    with _shared_lock:
        bridge = _shared.get(config)
        if bridge is None or bridge._closed:
            bridge = _shared[config] = SyncBridge(config)
        return bridge


@atexit.register
def close_open_bridges() -> None:
    """Close every bridge still open, shared or not (runs at exit)."""
    with _shared_lock:
        _shared.clear()
    for bridge in list(_open_bridges):
        with suppress(Exception):
            bridge.close()
