"""The seed's receiving API: blocking pop from any queue (plain BLPOP meaning: what is popped is the caller's)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from pydantic import BaseModel
from typing_extensions import Unpack

from . import queues
from .connection import ConnectionOptions, connection_config
from .errors import MessageError
from .messages import Message, ReportMessage, TaskMessage, parse_message
from .redis_client import block_slice
from .sync import SyncBridge, shared_bridge
from .utils import iso_now


class ReceivedMessage(BaseModel):
    """A popped message: its queue, the raw text, and the parsed message (None if it is not a valid one)."""

    queue: str
    raw_data: str
    received_at: str
    message: Message | None = None
    parse_error: str | None = None

    @classmethod
    def from_raw(cls, queue: str, raw: str) -> ReceivedMessage:
        """Wrap a popped text, parsing it when it is a message."""
        try:
            return cls(queue=queue, raw_data=raw, received_at=iso_now(), message=parse_message(raw))
        except MessageError as exc:
            return cls(queue=queue, raw_data=raw, received_at=iso_now(), parse_error=str(exc))


Queues = str | list[str]


def _as_list(queue: Queues) -> list[str]:
    return [queue] if isinstance(queue, str) else list(queue)


class MessageReceiver:
    """Receives with BLPOP; owns a private event loop thread and connection pool (close it, or use `with`)."""

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        **conn: Unpack[ConnectionOptions],
    ) -> None:
        cfg = connection_config(host=host, port=port, **conn)
        self._bridge = SyncBridge(cfg)

    def receive(self, queue: Queues, timeout: float = 0) -> ReceivedMessage | None:
        """Pop the next message from `queue` (or the first non-empty of several); None after `timeout` s (0: wait)."""
        return _receive(self._bridge, queue, timeout)

    def receive_iter(
        self, queue: Queues, timeout: float = 5, max_messages: int | None = None
    ) -> Iterator[ReceivedMessage]:
        """Yield messages as they arrive; stops after `timeout` s with none, or after `max_messages`."""
        count = 0
        while max_messages is None or count < max_messages:
            received = self.receive(queue, timeout)
            if received is None:
                return
            count += 1
            yield received

    def close(self) -> None:
        """Close the connections and the loop thread (cancelling a wait still running in it)."""
        self._bridge.close()

    def __enter__(self) -> MessageReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _receive(bridge: SyncBridge, queue: Queues, timeout: float) -> ReceivedMessage | None:
    popped = bridge.call_with_client(queues.pop, _as_list(queue), timeout, block_slice(bridge.config))
    return None if popped is None else ReceivedMessage.from_raw(*popped)


def receive_message(
    queue: Queues,
    timeout: float = 0,
    host: str | None = None,
    port: int | None = None,
    **conn: Unpack[ConnectionOptions],
) -> ReceivedMessage | None:
    """Pop the next message from `queue`; None after `timeout` s (0: wait for ever)."""
    cfg = connection_config(host=host, port=port, **conn)
    return _receive(shared_bridge(cfg), queue, timeout)


def receive_task(
    queue: Queues,
    timeout: float = 0,
    host: str | None = None,
    port: int | None = None,
    **conn: Unpack[ConnectionOptions],
) -> TaskMessage | None:
    """Pop the next task message; MessageError (with the raw text) if what was popped is not a task."""
    received = receive_message(queue, timeout, host, port, **conn)
    return None if received is None else _expect(received, TaskMessage)


def receive_report(
    queue: Queues,
    timeout: float = 0,
    host: str | None = None,
    port: int | None = None,
    **conn: Unpack[ConnectionOptions],
) -> ReportMessage | None:
    """Pop the next report message; MessageError (with the raw text) if what was popped is not a report."""
    received = receive_message(queue, timeout, host, port, **conn)
    return None if received is None else _expect(received, ReportMessage)


M = TypeVar("M", TaskMessage, ReportMessage)


def _expect(received: ReceivedMessage, cls: type[M]) -> M:
    if isinstance(received.message, cls):
        return received.message
    problem = received.parse_error or f"got a {received.message.type if received.message else '?'} message"
    raise MessageError(
        f"expected a {cls.__name__} from {received.queue!r} but {problem}; the popped text was: {received.raw_data!r}"
    )
