"""The project's exceptions: one base class, each message saying what was wrong and what to do."""

from __future__ import annotations


class OrchError(Exception):
    """Base class of every error orch-mcp raises on purpose; its message is meant for the user or the model."""


class ConfigError(OrchError):
    """A setting (environment variable, flag or argument) has a value that cannot be used."""


class MessageError(OrchError, ValueError):
    """A message is not valid: bad JSON, not an object, unknown type, missing or ill-typed fields."""


class InvalidIdentifierError(OrchError, ValueError):
    """A session id, prefix, namespace, task id or child id is malformed or out of range."""


class NotFoundError(OrchError):
    """A session or task does not exist (or has expired)."""


class NoSessionError(NotFoundError):
    """No session exists yet in this namespace (or its current one expired)."""

    def __init__(self, situation: str, hint: str = "have the summoner call init_session first") -> None:
        super().__init__(f"{situation}: {hint}")
        #: What is missing, without the advice (each front end gives its own).
        self.situation = situation


class SessionGoneError(NotFoundError):
    """The session was cleaned up or expired while an agent was working in it."""

    def __init__(self, session_id: str, *, cleaned_up: bool = False) -> None:
        why = (
            "it was cleaned up with cleanup_session: its work is over" if cleaned_up else "it was cleaned up or expired"
        )
        super().__init__(
            f"session {session_id!r} no longer exists ({why}); nothing more will come from it: stop working in it, "
            "and ask the summoner whether to start a new session"
        )
        self.session_id = session_id
        #: True when cleanup_session removed it (its tombstone says so), False when that is not known.
        self.cleaned_up = cleaned_up


class DamagedRecordError(OrchError):
    """A task record in Redis cannot be read: it is reported as damaged, never replaced by defaults."""


class LimitError(OrchError, ValueError):
    """A message is larger than the configured limit."""


class ConflictError(OrchError):
    """The operation clashes with the current state (for example a child id already served by a live process)."""


class RedisUnavailableError(OrchError, ConnectionError):
    """Redis cannot be reached."""
