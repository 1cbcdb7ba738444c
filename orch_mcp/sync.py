"""The bridge behind the synchronous seed API: one private event loop thread per object drives the async core."""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, suppress
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal
from typing_extensions import Self

from .config import RedisConfig
from .redis_client import Redis, create_async_client
from .redis_failures import redis_errors

T = TypeVar("T")
P = ParamSpec("P")


class SyncBridge:
    """Owns an event loop in a background thread and an async Redis client living on it.

    Sync facades (RedisSender, MessageReceiver, Parent, Child, the seed's functions) run the async
    core on it: `call_with_client(operation, *args)` runs `await operation(client, *args)`, and
    `call(method, *args)` runs `await method(*args)` for objects that already hold the client. Either
    way it is the same coroutine the async API and the MCP server use, never a copy of the logic,
    and redis-py's connection and auth failures come out as the project's errors.
    """

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self._client: Redis = self._portal.call(self._open)
        self._closed = False
        _open_bridges.add(self)

    async def _open(self) -> Redis:
        return create_async_client(self.config)

    def call(self, operation: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `await operation(*args, **kwargs)` on the bridge's loop and return its result (blocking)."""
        with redis_errors(self.config):
            return self._portal.call(partial(operation, *args, **kwargs))

    def call_with_client(
        self, operation: Callable[Concatenate[Redis, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `await operation(client, *args, **kwargs)` with the bridge's client on its loop (blocking)."""
        return self.call(operation, self._client, *args, **kwargs)

    def start_soon(self, operation: Callable[[], Awaitable[Any]]) -> None:
        """Start `operation()` as a background task on the loop; close() cancels it."""
        self._portal.start_task_soon(operation)

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._closed

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
        if bridge is None or bridge.closed:
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
