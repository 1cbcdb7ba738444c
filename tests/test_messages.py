"""The four message types: create, to_json, parse_message by `type`, and one error class for every bad input."""

from __future__ import annotations

import json
import re
from datetime import timezone
from typing import Any

import pytest

from orch_mcp.errors import MessageError, OrchError
from orch_mcp.messages import (
    MESSAGE_TYPES,
    ReportMessage,
    ShutdownMessage,
    StatusMessage,
    TaskMessage,
    parse_message,
)

HEX32 = re.compile(r"[0-9a-f]{32}")


def valid_task() -> dict[str, Any]:
    return TaskMessage.create("do it", "sid", 2, context={"k": [1, 2]}, priority=3).to_dict()


def test_create_fills_ids_and_utc_time() -> None:
    task = TaskMessage.create("do it", "sid", 2)
    assert HEX32.fullmatch(task.message_id) and HEX32.fullmatch(task.task_id)
    assert task.created_at.tzinfo == timezone.utc
    assert (task.type, task.context, task.priority) == ("task", {}, 0)
    assert TaskMessage.create("x", "sid", 1).task_id != task.task_id


@pytest.mark.parametrize(
    "message",
    [
        TaskMessage.create("do it", "sid", 2, context={"a": {"b": None}}, priority=-1),
        ReportMessage.create("t1", "sid", 2, result="42", status="failed", error="boom"),
        ShutdownMessage.create("sid"),
        ShutdownMessage.create("sid", child_id=3, reason="done"),
        StatusMessage.create("sid", "working", child_id=1, task_id="t1", detail="x"),
    ],
)
def test_round_trip_through_json(message: Any) -> None:
    parsed = parse_message(message.to_json())
    assert type(parsed) is type(message)
    assert parsed == message
    assert parse_message(message.to_json().encode()) == message  # bytes, as Redis may hand them over
    data = json.loads(message.to_json())
    assert {"type", "message_id", "session_id", "created_at"} <= set(data)


def test_message_types_table() -> None:
    assert {k: v.__name__ for k, v in MESSAGE_TYPES.items()} == {
        "task": "TaskMessage",
        "report": "ReportMessage",
        "shutdown": "ShutdownMessage",
        "status": "StatusMessage",
    }


def test_naive_time_is_taken_as_utc() -> None:
    data = valid_task()
    data["created_at"] = "2024-01-02T03:04:05"
    parsed = parse_message(json.dumps(data))
    assert parsed.created_at.tzinfo == timezone.utc and parsed.created_at.hour == 3


def test_unknown_extra_fields_are_ignored() -> None:
    data = valid_task()
    data["from_the_future"] = 1
    assert isinstance(parse_message(json.dumps(data)), TaskMessage)


def with_changes(**changes: Any) -> str:
    data = valid_task()
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # not JSON at all, or not decodable
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        ("1" * 5000, "not valid JSON"),  # an integer too long to convert
        ("[" * 100_000, "not valid JSON"),  # nesting deeper than the decoder's recursion limit
        # JSON, but not an object
        ("[1, 2]", "must be a JSON object, got list"),
        ('"task"', "must be a JSON object, got str"),
        ("null", "must be a JSON object, got NoneType"),
        ("42", "must be a JSON object, got int"),
        # type missing, unknown, or not a string
        ('{"prompt": "x"}', "no 'type' field"),
        ('{"type": null}', "no 'type' field"),
        ('{"type": "tsak"}', "unknown message type 'tsak'"),
        ('{"type": ["task"]}', "unknown message type"),
        ('{"type": {"a": 1}}', "unknown message type"),
        ('{"type": 1}', "unknown message type"),
        # the type alone is not a message
        ('{"type": "task"}', "missing field 'task_id'"),
        ('{"type": "report"}', "missing field 'task_id'"),
        ('{"type": "shutdown"}', "missing field 'message_id'"),
        ('{"type": "status"}', "missing field 'state'"),
        # missing fields
        (with_changes(prompt=...), "missing field 'prompt'"),
        (with_changes(child_id=...), "missing field 'child_id'"),
        (with_changes(session_id=...), "missing field 'session_id'"),
        (with_changes(created_at=...), "missing field 'created_at'"),
        # ill-typed or out-of-range fields
        (with_changes(child_id="2"), "child_id"),
        (with_changes(child_id=0), "child_id"),
        (with_changes(child_id=True), "child_id"),
        (with_changes(child_id=1.5), "child_id"),
        (with_changes(prompt=""), "prompt"),
        (with_changes(prompt=7), "prompt"),
        (with_changes(context="{}"), "context"),
        (with_changes(context=[1]), "context"),
        (with_changes(priority="high"), "priority"),
        (with_changes(session_id=5), "session_id"),
        (with_changes(created_at="yesterday"), "created_at"),
        (with_changes(task_id=""), "task_id"),
    ],
)
def test_every_bad_input_is_one_error_naming_the_problem(text: str | bytes, words: str) -> None:
    with pytest.raises(MessageError) as info:
        parse_message(text)
    assert words in str(info.value)
    assert isinstance(info.value, OrchError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("report", "words"),
    [
        ({"status": "maybe"}, "status"),
        ({"result": 42}, "result"),
        ({"error": 1}, "error"),
        ({"child_id": -1}, "child_id"),
    ],
)
def test_bad_report_fields(report: dict[str, Any], words: str) -> None:
    data = ReportMessage.create("t1", "sid", 1, result="ok").to_dict() | report
    with pytest.raises(MessageError, match=words):
        parse_message(json.dumps(data))


def test_create_validates_too() -> None:
    with pytest.raises(MessageError, match="prompt"):
        TaskMessage.create("", "sid", 1)
    with pytest.raises(MessageError, match="child_id"):
        TaskMessage.create("x", "sid", 0)
    with pytest.raises(MessageError, match="status"):
        ReportMessage.create("t", "sid", 1, status="nope")  # type: ignore[arg-type]
    with pytest.raises(MessageError, match="state"):
        StatusMessage.create("sid", "")
