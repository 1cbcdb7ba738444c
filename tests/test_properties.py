"""Property-based tests (hypothesis): `parse_message` on any input, and every tool of every role on any arguments.

`parse_message` either returns a message or raises `MessageError`, whatever the bytes; a message made
by `create` survives `to_json` -> `parse_message` unchanged; a field of the wrong type or out of range
is always a `MessageError`. The tools are driven through real in-process servers on the test Redis
with arguments derived from each tool's own input schema (so tools added later are covered too): a
bad argument is always a tool error whose text names it, and no argument ever makes a tool crash.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp_helpers import settings as server_settings
from mcp_helpers import text
from mcp_types import CallToolResult, Tool
from pydantic import TypeAdapter, ValidationError

from orch_mcp.config import OrchConfig, RedisConfig
from orch_mcp.embedded import EmbeddedRedis
from orch_mcp.errors import MessageError
from orch_mcp.messages import (
    MESSAGE_TYPES,
    PRIORITY_MAX,
    PRIORITY_MIN,
    ReportMessage,
    ShutdownMessage,
    StatusMessage,
    TaskMessage,
    parse_message,
)
from orch_mcp.server import ROLE_TOOLS, create_server

FAST = settings(max_examples=60, deadline=None, database=None)
CHEAP = settings(max_examples=200, deadline=None, database=None)
#: Over all the tools at once: each call is a real round trip (and a wait_for_report poll costs ~0.1 s).
TOOLS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- strategies

#: Any code point, lone surrogates included (hypothesis leaves them out by default).
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
#: Text that UTF-8 can encode.
clean_text = st.text(max_size=40)
ids = st.text("abcdef0123456789", min_size=1, max_size=32)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite_floats | clean_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(clean_text, inner, max_size=4),
    max_leaves=12,
)


def _wild(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """JSON-ish values with the odd ones too: NaN, infinities, lone surrogates, huge integers."""
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.integers(min_value=10**18) | st.floats() | any_text,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=12,
    )


wild_values = _wild(any_text)
#: The same for tool arguments, whose keys are clean: a client cannot even send a lone surrogate in a key.
wild_arguments = _wild(clean_text)
contexts = st.dictionaries(clean_text, json_values, max_size=4)


def _messages() -> st.SearchStrategy[TaskMessage | ReportMessage | ShutdownMessage | StatusMessage]:
    child = st.integers(1, 1000)
    return st.one_of(
        st.builds(
            TaskMessage.create,
            prompt=clean_text.filter(bool),
            session_id=ids,
            child_id=child,
            context=contexts,
            priority=st.integers(PRIORITY_MIN, PRIORITY_MAX),
            task_id=ids,
        ),
        st.builds(
            ReportMessage.create,
            task_id=ids,
            session_id=ids,
            child_id=child,
            result=clean_text,
            status=st.sampled_from(["done", "failed"]),
            error=st.none() | clean_text,
        ),
        st.builds(ShutdownMessage.create, session_id=ids, child_id=st.none() | child, reason=st.none() | clean_text),
        st.builds(
            StatusMessage.create,
            session_id=ids,
            state=clean_text.filter(bool),
            child_id=st.none() | child,
            task_id=st.none() | ids,
            detail=st.none() | clean_text,
        ),
    )


messages = _messages()


def _parses_or_refuses(raw: str | bytes) -> None:
    try:
        parse_message(raw)
    except MessageError as exc:
        assert str(exc), "a MessageError must say what is wrong"
        str(exc).encode("utf-8")  # the reason is stored with the dead letter: it must be encodable


# ---------------------------------------------------------------- parse_message


@CHEAP
@given(st.binary(max_size=200))
@example(b"\xff\xfe{\x00}\x00")  # UTF-16, which json.loads alone would read
@example('{"type": "task"}'.encode("utf-32"))
def test_any_bytes_parse_or_raise_message_error(raw: bytes) -> None:
    _parses_or_refuses(raw)


@CHEAP
@given(any_text)
def test_any_text_parses_or_raises_message_error(raw: str) -> None:
    _parses_or_refuses(raw)


@FAST
@given(wild_values)
def test_any_json_value_parses_or_raises_message_error(value: Any) -> None:
    _parses_or_refuses(json.dumps(value))


@FAST
@given(messages, st.sampled_from(["type", "message_id", "session_id", "created_at"]), wild_values)
# Times that exist, but not in UTC (they once escaped as OverflowError).
@example(TaskMessage.create("p", "s", 1), "created_at", "9999-12-31T23:59:59-05:00")
@example(ReportMessage.create("t", "s", 1), "created_at", "0001-01-01T00:00:00+05:00")
def test_any_value_in_any_field_parses_or_raises_message_error(msg: Any, field: str, value: Any) -> None:
    data = msg.to_dict()
    data[field] = value
    _parses_or_refuses(json.dumps(data))
    _parses_or_refuses(json.dumps(data).encode("utf-8", "surrogatepass"))  # lone surrogates as raw bytes


@FAST
@given(messages, st.data())
def test_any_value_in_a_type_specific_field_parses_or_raises_message_error(msg: Any, data: st.DataObject) -> None:
    fields = msg.to_dict()
    name = data.draw(st.sampled_from(sorted(fields)))
    fields[name] = data.draw(wild_values)
    _parses_or_refuses(json.dumps(fields))


@FAST
@given(messages)
def test_create_to_json_parse_round_trip(msg: Any) -> None:
    assert parse_message(msg.to_json()) == msg
    assert parse_message(msg.to_json().encode("utf-8")) == msg
    assert type(parse_message(msg.to_json())) is type(msg)


@FAST
@given(messages, st.sampled_from(["utf-16", "utf-32", "utf-8-sig", "latin-1"]))
@example(ReportMessage.create("0", "0", 1, "\u00c2\x80\u00c2\x80"), "latin-1")  # Latin-1 that is also UTF-8
def test_only_utf8_bytes_are_read(msg: Any, encoding: str) -> None:
    try:
        raw = msg.to_json().encode(encoding)
    except UnicodeEncodeError:  # text beyond Latin-1
        return
    if raw == msg.to_json().encode("utf-8"):  # Latin-1 of pure ASCII text is the same bytes
        assert parse_message(raw) == msg
        return
    if encoding == "latin-1":
        with contextlib.suppress(UnicodeDecodeError):
            # Latin-1 text can spell UTF-8 by chance ('Â\x80' is the bytes C2 80, UTF-8 for U+0080): such bytes are
            # read as that UTF-8 text, exactly as if it had been sent (never guessed to be Latin-1).
            as_utf8 = raw.decode("utf-8")
            assert read(raw) == read(as_utf8)
            return
    with pytest.raises(MessageError, match="not valid JSON"):
        parse_message(raw)


def read(data: str | bytes) -> object:
    """What parse_message makes of `data`: the message, or the text of its MessageError."""
    try:
        return parse_message(data)
    except MessageError as exc:
        return str(exc)


def _not_int_at_least(low: int, high: int | None = None) -> st.SearchStrategy[Any]:
    """JSON values that are not an int in low..high (a strict int field refuses all of them)."""
    out_of_range = st.integers(max_value=low - 1)
    if high is not None:
        out_of_range |= st.integers(min_value=high + 1)
    return out_of_range | st.booleans() | st.none() | finite_floats | clean_text | st.lists(json_values, max_size=2)


NOT_STR = st.none() | st.booleans() | st.integers() | finite_floats | st.lists(json_values, max_size=2)
NOT_STR_OR_EMPTY = NOT_STR | st.just("")
BAD_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "task": {
        "task_id": NOT_STR_OR_EMPTY,
        "child_id": _not_int_at_least(1),
        "prompt": NOT_STR_OR_EMPTY,
        "context": st.none() | st.integers() | clean_text | st.lists(json_values, max_size=2),
        "priority": _not_int_at_least(PRIORITY_MIN, PRIORITY_MAX),
        "message_id": NOT_STR_OR_EMPTY,
        "session_id": NOT_STR,
        "created_at": st.none() | st.booleans() | st.lists(json_values, max_size=2) | st.just("yesterday"),
    },
    "report": {
        "task_id": NOT_STR_OR_EMPTY,
        "child_id": _not_int_at_least(1),
        "status": clean_text.filter(lambda s: s not in ("done", "failed")) | NOT_STR,
        "result": NOT_STR,
        "error": st.booleans() | st.integers() | st.lists(json_values, max_size=2),
    },
    "shutdown": {"child_id": _not_int_at_least(1), "reason": NOT_STR},
    "status": {"state": NOT_STR_OR_EMPTY, "child_id": _not_int_at_least(1), "task_id": NOT_STR, "detail": NOT_STR},
}


@FAST
@given(messages, st.data())
def test_a_field_of_the_wrong_type_is_always_a_message_error(msg: Any, data: st.DataObject) -> None:
    fields = msg.to_dict()
    name = data.draw(st.sampled_from(sorted(BAD_FIELDS[msg.type])))
    value = data.draw(BAD_FIELDS[msg.type][name])
    if value is None and (name in ("error", "reason", "task_id", "detail") or msg.type in ("shutdown", "status")):
        return  # a nullable field
    fields[name] = value
    with pytest.raises(MessageError) as info:
        parse_message(json.dumps(fields))
    assert name in str(info.value)


@FAST
@given(messages, st.sampled_from(["type", "message_id", "session_id", "created_at"]))
def test_a_missing_common_field_is_always_a_message_error(msg: Any, name: str) -> None:
    fields = msg.to_dict()
    del fields[name]
    with pytest.raises(MessageError, match=name):
        parse_message(json.dumps(fields))


@FAST
@given(messages, clean_text.filter(lambda s: s not in MESSAGE_TYPES) | NOT_STR)
def test_an_unknown_type_is_always_a_message_error(msg: Any, kind: Any) -> None:
    fields = msg.to_dict()
    fields["type"] = kind
    with pytest.raises(MessageError, match="type"):
        parse_message(json.dumps(fields))


@FAST
@given(st.data())
def test_text_that_utf8_cannot_encode_is_refused_by_create_and_parse(data: st.DataObject) -> None:
    surrogate = data.draw(st.characters(categories=["Cs"]))
    bad = data.draw(clean_text) + surrogate + data.draw(clean_text)
    where = data.draw(st.sampled_from(["prompt", "context value", "context key", "session_id"]))
    args: dict[str, Any] = {"prompt": "p", "session_id": "s", "child_id": 1, "context": {}}
    if where == "prompt":
        args["prompt"] = bad
    elif where == "context value":
        args["context"] = {"k": [bad]}
    elif where == "context key":
        args["context"] = {bad: 1}
    else:
        args["session_id"] = bad
    with pytest.raises(MessageError, match="lone surrogate"):
        TaskMessage.create(**args)
    fields = TaskMessage.create("p", "s", 1).to_dict()
    fields["prompt" if where == "prompt" else "session_id"] = bad
    with pytest.raises(MessageError, match="lone surrogate"):
        parse_message(json.dumps(fields))  # json.dumps spells it as the escape \udXXX


@FAST
@given(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]))
def test_numbers_json_cannot_carry_are_refused(number: str) -> None:
    fields = TaskMessage.create("p", "s", 1).to_json()
    with pytest.raises(MessageError):
        parse_message(fields[:-1] + f', "context": {{"x": {number}}}}}')
    with pytest.raises(MessageError, match="JSON cannot carry"):
        TaskMessage.create("p", "s", 1, context={"x": float(number)})


# ---------------------------------------------------------------- the tools' arguments


@dataclass
class Servers:
    """In-process servers of every role on a session of the test Redis, called from synchronous tests."""

    portal: BlockingPortal
    clients: dict[str, Client]
    tools: dict[str, list[Tool]]

    def call(self, role: str, tool: str, args: dict[str, Any]) -> CallToolResult:
        async def call() -> CallToolResult:
            with anyio.fail_after(10):
                return await self.clients[role].call_tool(tool, args)

        return self.portal.call(call)


@pytest.fixture(scope="module")
def servers(redis_server: EmbeddedRedis) -> Iterator[Servers]:
    orch = OrchConfig(redis=RedisConfig(url=redis_server.url), namespace="props", max_message_bytes=2000)
    roles = {"summoner": None, "moogle": None, "chocobo": 1}
    with start_blocking_portal() as portal, ExitStack() as stack:
        clients = {
            role: stack.enter_context(
                portal.wrap_async_context_manager(
                    Client(create_server(server_settings(orch, role, child, session_check_s=0)))
                )
            )
            for role, child in roles.items()
        }
        found = Servers(portal, clients, {})
        found.tools = {role: portal.call(c.list_tools).tools for role, c in clients.items()}
        assert not found.call("summoner", "init_session", {"max_children": 2}).is_error
        yield found


#: (role, tool) for every tool each role lists.
TOOL_CASES = [(role, fn.__name__) for role, fns in ROLE_TOOLS.items() for fn in fns]


def _schema_of(servers: Servers, role: str, name: str) -> dict[str, Any]:
    tool = next(t for t in servers.tools[role] if t.name == name)
    return tool.input_schema


def _branches(prop: dict[str, Any]) -> list[dict[str, Any]]:
    return list(prop["anyOf"]) if "anyOf" in prop else [prop]


def _valid(name: str, prop: dict[str, Any]) -> Any:
    """A value the argument accepts (the waits never block: 0 s)."""
    branch = _branches(prop)[0]
    if "enum" in branch:
        return branch["enum"][0]
    kind = branch.get("type")
    if kind == "integer":
        return max(branch.get("minimum", 1), 1)
    if kind == "number":
        return branch.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "object":
        return {}
    if kind == "string":
        return "current" if name == "session_id" else "x"
    return None


def _not_in(known: list[Any]) -> Callable[[str], bool]:
    return lambda value: value not in known


def _hard_invalid(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values no branch of the argument's schema accepts, even in pydantic's lax mode."""
    branches = _branches(prop)
    kinds = {b.get("type") for b in branches}
    options: list[st.SearchStrategy[Any]] = [st.lists(json_values, min_size=1, max_size=3)]
    if "object" not in kinds:
        options.append(st.dictionaries(clean_text, json_values, min_size=1, max_size=3))
    if "null" not in kinds:
        options.append(st.none())
    for branch in branches:
        if "enum" in branch:
            options.append(clean_text.filter(_not_in(branch["enum"])))
        if branch.get("type") in ("integer", "number"):
            if "minimum" in branch:
                options.append(st.integers(max_value=math.floor(branch["minimum"]) - 1))
            if "maximum" in branch:
                options.append(st.integers(min_value=math.floor(branch["maximum"]) + 1))
            options.append(st.sampled_from(["many", "", "1e", "one hundred"]))
        if branch.get("type") == "string" and branch.get("minLength", 0) >= 1:
            options.append(st.just(""))
    return st.one_of(options)


def _never_block(schema: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """A wait's timeout_s set to 0 when the server would accept it (a property test never waits)."""
    if "timeout_s" in schema.get("properties", {}):
        value = args.get("timeout_s", 25)
        try:
            accepted = TypeAdapter(float).validate_python(value)
        except ValidationError:
            return args
        if not math.isnan(accepted) and accepted > 0:
            args = {**args, "timeout_s": 0}
    return args


def _well_formed(result: CallToolResult, tool: str) -> None:
    """An answer the model can act on: a structured result, or an error that says what is wrong (never a crash)."""
    body = text(result)
    if not result.is_error:
        assert isinstance(result.structured_content, dict), body
        return
    detail = body.removeprefix(f"Error executing tool {tool}").removeprefix(":").strip()
    assert detail, f"{tool} crashed: the model reads only {body!r}"
    assert "Error executing tool" not in detail and "Traceback" not in body, body
    assert len(body) < 3000, f"{tool} answered {len(body)} characters: {body[:200]!r}..."


@TOOLS
@given(st.data())
def test_any_arguments_get_an_answer_never_a_crash(servers: Servers, data: st.DataObject) -> None:
    role, tool = data.draw(st.sampled_from(TOOL_CASES))
    schema = _schema_of(servers, role, tool)
    names = sorted(schema.get("properties", {}))
    arg_names = st.sampled_from(names) | clean_text if names else clean_text
    args = data.draw(st.dictionaries(arg_names, wild_arguments, max_size=4))
    _well_formed(servers.call(role, tool, _never_block(schema, args)), tool)


@TOOLS
@given(st.data())
def test_a_bad_argument_is_always_a_tool_error_naming_it(servers: Servers, data: st.DataObject) -> None:
    role, tool = data.draw(st.sampled_from([case for case in TOOL_CASES if case[1] != "list_sessions"]))
    schema = _schema_of(servers, role, tool)
    props: dict[str, Any] = schema["properties"]
    base = _never_block(schema, {name: _valid(name, prop) for name, prop in props.items()})
    name = data.draw(st.sampled_from(sorted(props)))
    value = data.draw(_hard_invalid(props[name]))
    result = servers.call(role, tool, {**base, name: value})
    assert result.is_error, f"{tool}({name}={value!r}) was accepted: {result.structured_content}"
    _well_formed(result, tool)
    assert name in text(result), text(result)


@pytest.mark.parametrize(("role", "tool"), [case for case in TOOL_CASES if case[1] != "list_sessions"])
def test_a_missing_required_argument_is_a_tool_error_naming_it(servers: Servers, role: str, tool: str) -> None:
    schema = _schema_of(servers, role, tool)
    props: dict[str, Any] = schema["properties"]
    for name in schema.get("required", []):
        args = _never_block(schema, {n: _valid(n, p) for n, p in props.items() if n != name})
        result = servers.call(role, tool, args)
        assert result.is_error, f"{tool} without {name} was accepted"
        _well_formed(result, tool)
        assert name in text(result) and "required" in text(result).lower(), text(result)
