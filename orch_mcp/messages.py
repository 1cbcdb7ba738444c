"""The four message types agents exchange, as pydantic models, and `parse_message` to read any of them.

Every way a message can be bad (bytes that are not UTF-8, not JSON, not an object, unknown `type`,
missing or ill-typed fields, text that cannot be encoded again) raises `MessageError`, whose text
names the problem.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from typing_extensions import Self

from .errors import MessageError
from .utils import new_id, shown, utc_now

ChildId = Annotated[int, Field(ge=1, strict=True)]
#: A task's priority lies in this range: enough for any ordering, and never a number a Lua double cannot hold.
PRIORITY_MIN, PRIORITY_MAX = -1_000_000, 1_000_000
Priority = Annotated[int, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX, strict=True)]
ReportStatus = Literal["done", "failed"]


class BaseMessage(BaseModel):
    """Fields every message has."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str
    message_id: str = Field(min_length=1)
    session_id: str
    created_at: datetime

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        try:
            return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        except OverflowError:  # 9999-12-31T23:59-05:00 is past the last datetime in UTC
            raise ValueError("the time is out of range in UTC") from None

    @classmethod
    def _new(cls, **fields: Any) -> Self:
        _check_json_values(fields, cls.__name__)
        try:
            return cls(message_id=new_id(), created_at=utc_now(), **fields)
        except ValidationError as exc:
            raise MessageError(_describe(exc, cls.__name__)) from None

    def to_json(self) -> str:
        """The message as compact JSON text."""
        return self.model_dump_json()

    def to_dict(self) -> dict[str, Any]:
        """The message as a JSON-compatible dict."""
        return self.model_dump(mode="json")


class TaskMessage(BaseMessage):
    """Parent -> child: a piece of work."""

    type: Literal["task"] = "task"
    task_id: str = Field(min_length=1)
    child_id: ChildId
    prompt: str = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = 0

    @classmethod
    def create(
        cls,
        prompt: str,
        session_id: str,
        child_id: int,
        context: dict[str, Any] | None = None,
        priority: int = 0,
        task_id: str | None = None,
    ) -> TaskMessage:
        """A new task with fresh message and task ids."""
        return cls._new(
            prompt=prompt,
            session_id=session_id,
            child_id=child_id,
            context=context or {},
            priority=priority,
            task_id=task_id or new_id(),
        )


class ReportMessage(BaseMessage):
    """Child -> parent: the outcome of a task."""

    type: Literal["report"] = "report"
    task_id: str = Field(min_length=1)
    child_id: ChildId
    status: ReportStatus = "done"
    result: str = ""
    error: str | None = None

    @classmethod
    def create(
        cls,
        task_id: str,
        session_id: str,
        child_id: int,
        result: str = "",
        status: ReportStatus = "done",
        error: str | None = None,
    ) -> ReportMessage:
        """A new report for `task_id`."""
        return cls._new(
            task_id=task_id, session_id=session_id, child_id=child_id, result=result, status=status, error=error
        )


class ShutdownMessage(BaseMessage):
    """Parent -> child (or all children when `child_id` is None): stop after this."""

    type: Literal["shutdown"] = "shutdown"
    child_id: ChildId | None = None
    reason: str | None = None

    @classmethod
    def create(cls, session_id: str, child_id: int | None = None, reason: str | None = None) -> ShutdownMessage:
        """A new shutdown order."""
        return cls._new(session_id=session_id, child_id=child_id, reason=reason)


class StatusMessage(BaseMessage):
    """Anyone -> monitor: an agent or task changed state."""

    type: Literal["status"] = "status"
    child_id: ChildId | None = None
    state: str = Field(min_length=1)
    task_id: str | None = None
    detail: str | None = None

    @classmethod
    def create(
        cls,
        session_id: str,
        state: str,
        child_id: int | None = None,
        task_id: str | None = None,
        detail: str | None = None,
    ) -> StatusMessage:
        """A new status notice."""
        return cls._new(session_id=session_id, state=state, child_id=child_id, task_id=task_id, detail=detail)


Message: TypeAlias = TaskMessage | ReportMessage | ShutdownMessage | StatusMessage
MESSAGE_TYPES: dict[str, type[BaseMessage]] = {
    "task": TaskMessage,
    "report": ReportMessage,
    "shutdown": ShutdownMessage,
    "status": StatusMessage,
}
_ADAPTER: TypeAdapter[Message] = TypeAdapter(Annotated[Message, Field(discriminator="type")])


def parse_message(text: str | bytes) -> Message:
    """Read a message from JSON text (bytes must be UTF-8), choosing the class by its `type`; MessageError if bad."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")  # strictly UTF-8: json.loads would also guess UTF-16 and UTF-32
        except UnicodeDecodeError as exc:
            raise MessageError(
                f"message is not valid JSON: it is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}: "
                f"{exc.reason}); a message is JSON text encoded as UTF-8"
            ) from None
    elif not isinstance(text, str):
        raise MessageError(f"message must be JSON text (str or UTF-8 bytes), got {type(text).__name__}")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, over-long ints, deep nesting, NaN/Infinity
        raise MessageError(f"message is not valid JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise MessageError(f"message must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        known = ", ".join(MESSAGE_TYPES)
        if kind is None:
            raise MessageError(f"message has no 'type' field; it must be one of: {known}")
        raise MessageError(f"unknown message type {shown(kind)}; it must be one of: {known}")
    _check_json_values(data, f"{kind} message")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise MessageError(_describe(exc, f"{kind} message", tagged=True)) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _check_json_values(value: object, what: str) -> None:
    """Raise MessageError if `value` holds text that UTF-8 cannot encode (a lone surrogate such as "\\ud800",
    which JSON escapes can spell) or a number JSON cannot carry (NaN, infinity): such a message could be
    read but never written again. Iterative, so any depth json.loads accepted is fine."""
    stack: list[tuple[object, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                code = ord(item[exc.start])
                raise MessageError(
                    f"invalid {what}: {where or 'the message'} holds a lone surrogate (\\u{code:04x} at character "
                    f"{exc.start}), which is not Unicode text; send UTF-8 text only"
                ) from None
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise MessageError(f"invalid {what}: {where or 'the message'} is {item}, which JSON cannot carry")
        elif isinstance(item, dict):
            for key, sub in item.items():
                stack.append((key, f"a key of {where}" if where else "a key"))
                name = shown(key, 40) if not isinstance(key, str) or not key.isidentifier() else key[:40]
                stack.append((sub, f"{where}.{name}" if where else name))
        elif isinstance(item, (list, tuple)):
            stack.extend((sub, f"{where}[{i}]") for i, sub in enumerate(item))


def _describe(exc: ValidationError, what: str, *, tagged: bool = False) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        # Through the discriminated union every location starts with the tag (the type): drop just that,
        # not every part that happens to equal a type name (a report's `status` field is one).
        loc = err["loc"][1:] if tagged else err["loc"]
        where = ".".join(str(p) for p in loc) or "message"
        problems.append("missing field " + repr(where) if err["type"] == "missing" else f"{where}: {err['msg']}")
    return f"invalid {what}: " + "; ".join(problems)
