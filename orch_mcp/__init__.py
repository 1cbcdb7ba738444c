"""orch-mcp: an MCP server backed by Redis that lets a team of LLM agents work together.

The package root exports the seed's public API (`from orch_mcp import initialize_orchestration,
TaskMessage, create_client, …`) plus the reliable Parent / Child. Each name is imported from its
module on first use, so `import orch_mcp` (and with it `orch-mcp serve`) loads none of them.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the checkers know the name)

__version__ = "0.1.0"

#: Public name -> the module defining it (imported on first use).
_EXPORTS = {
    # the seed's names (its app/__init__ and README)
    "RedisConfig": "config",
    "get_default_config": "config",
    "create_client": "redis_client",
    "BaseMessage": "messages",
    "TaskMessage": "messages",
    "ReportMessage": "messages",
    "ShutdownMessage": "messages",
    "StatusMessage": "messages",
    "parse_message": "messages",
    "initialize_orchestration": "orchestration",
    "initialize_summoner_orchestration": "orchestration",
    "get_config": "orchestration",
    "cleanup_session": "orchestration",
    "RedisSender": "sender",
    "send_message": "sender",
    "send_with_publish": "sender",
    "MessageReceiver": "receiver",
    "receive_message": "receiver",
    "receive_task": "receiver",
    "receive_report": "receiver",
    # what they return and raise, and orch-mcp's own additions
    "SendResult": "sender",
    "ReceivedMessage": "receiver",
    "SessionConfig": "sessions",
    "OrchConfig": "config",
    "OrchError": "errors",
    "create_async_client": "redis_client",
    "Parent": "agents",
    "Child": "agents",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # what the type checker sees: the same names, imported at once
    from typing import Any

    from .agents import Child as Child
    from .agents import Parent as Parent
    from .config import OrchConfig as OrchConfig
    from .config import RedisConfig as RedisConfig
    from .config import get_default_config as get_default_config
    from .errors import OrchError as OrchError
    from .messages import BaseMessage as BaseMessage
    from .messages import ReportMessage as ReportMessage
    from .messages import ShutdownMessage as ShutdownMessage
    from .messages import StatusMessage as StatusMessage
    from .messages import TaskMessage as TaskMessage
    from .messages import parse_message as parse_message
    from .orchestration import cleanup_session as cleanup_session
    from .orchestration import get_config as get_config
    from .orchestration import initialize_orchestration as initialize_orchestration
    from .orchestration import initialize_summoner_orchestration as initialize_summoner_orchestration
    from .receiver import MessageReceiver as MessageReceiver
    from .receiver import ReceivedMessage as ReceivedMessage
    from .receiver import receive_message as receive_message
    from .receiver import receive_report as receive_report
    from .receiver import receive_task as receive_task
    from .redis_client import create_async_client as create_async_client
    from .redis_client import create_client as create_client
    from .sender import RedisSender as RedisSender
    from .sender import SendResult as SendResult
    from .sender import send_message as send_message
    from .sender import send_with_publish as send_with_publish
    from .sessions import SessionConfig as SessionConfig


def __getattr__(name: str) -> Any:
    """Import an exported name from its module the first time it is asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
