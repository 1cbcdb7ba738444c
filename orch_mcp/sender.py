"""The seed's sending API: RPUSH a message onto any queue, optionally PUBLISH it too."""

from __future__ import annotations

from pydantic import BaseModel
from typing_extensions import Unpack

from . import queues
from .connection import ConnectionOptions, connection_config
from .messages import BaseMessage
from .sync import SyncBridge, shared_bridge


class SendResult(BaseModel):
    """What a send did: the queue, its new length, and the channel and how many subscribers got it."""

    queue: str
    length: int
    channel: str | None = None
    receivers: int | None = None

    @property
    def success(self) -> bool:
        """Always True: a failed send raises instead."""
        return True


def _text(message: str | BaseMessage) -> str:
    return message if isinstance(message, str) else message.to_json()


class RedisSender:
    """Sends messages with RPUSH; owns a private event loop thread and connection pool (close it, or use `with`)."""

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        **conn: Unpack[ConnectionOptions],
    ) -> None:
        cfg = connection_config(host=host, port=port, **conn)
        self._bridge = SyncBridge(cfg)

    def send_message(self, queue: str, message: str | BaseMessage) -> SendResult:
        """RPUSH one message (text, or a message object sent as JSON) onto `queue`."""
        return self.send_messages(queue, [message])

    def send_messages(self, queue: str, messages: list[str | BaseMessage]) -> SendResult:
        """RPUSH several messages onto `queue` in order, in one command."""
        length = self._bridge.call_with_client(queues.push, queue, *(_text(m) for m in messages))
        return SendResult(queue=queue, length=length)

    def send_with_publish(self, queue: str, message: str | BaseMessage, channel: str) -> SendResult:
        """RPUSH onto `queue` and PUBLISH on `channel`, in one transaction."""
        length, receivers = self._bridge.call_with_client(queues.push_and_publish, queue, _text(message), channel)
        return SendResult(queue=queue, length=length, channel=channel, receivers=receivers)

    def close(self) -> None:
        """Close the connections and the loop thread."""
        self._bridge.close()

    def __enter__(self) -> RedisSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_message(
    queue: str,
    message: str | BaseMessage,
    host: str | None = None,
    port: int | None = None,
    **conn: Unpack[ConnectionOptions],
) -> SendResult:
    """RPUSH one message onto `queue` (connection from the arguments or the environment)."""
    cfg = connection_config(host=host, port=port, **conn)
    length = shared_bridge(cfg).call_with_client(queues.push, queue, _text(message))
    return SendResult(queue=queue, length=length)


def send_with_publish(
    queue: str,
    message: str | BaseMessage,
    channel: str,
    host: str | None = None,
    port: int | None = None,
    **conn: Unpack[ConnectionOptions],
) -> SendResult:
    """RPUSH onto `queue` and PUBLISH on `channel` (connection from the arguments or the environment)."""
    cfg = connection_config(host=host, port=port, **conn)
    length, receivers = shared_bridge(cfg).call_with_client(queues.push_and_publish, queue, _text(message), channel)
    return SendResult(queue=queue, length=length, channel=channel, receivers=receivers)
