"""What a model reads when a call's arguments are wrong, or the tool is not this server's (DESIGN decision 15).

The SDK answers a bad argument with pydantic's dump (several lines, `input_value=`, a link to
errors.pydantic.dev) and a tool of another role with "Unknown tool: X". The middleware below
rewrites both into one sentence that names the argument, or says which role has the tool and what
this server's role can call. An argument the tool does not take is refused by the tool adapter with
`unknown_arguments_text` (the SDK would drop it silently, and the call would run without it).

The hook: `argument_texts` is a `ServerMiddleware` (provisional in mcp 2.x), which sees a
`tools/call` result as the wire dict the SDK made (`isError`, `content`); for a refused call it
validates the arguments again with the tool's own validator (`Tool.fn_metadata.validate_arguments`,
exactly what the SDK ran) to learn what was wrong, and replaces the text, keeping the rest of the
result (the SDK's envelope) as it is. `mcp` is pinned below the next minor for it, and
tests/test_tool_surface.py fails if the SDK changes any of this.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.mcpserver.tools import Tool
from pydantic import ValidationError
from pydantic_core import ErrorDetails

#: Longest rendering of a value the caller sent, in a text.
SHOWN_MAX = 60


def argument_errors_text(tool: str, exc: ValidationError) -> str:
    """One sentence for a tool's argument errors: each argument named, with what it must be and what was sent."""
    parts = list(dict.fromkeys(_sentence(err) for err in exc.errors()))
    return f"Error executing tool {tool}: {'; '.join(parts)}"


def unknown_arguments_text(tool: str, unknown: Sequence[str], known: Sequence[str]) -> str:
    """The refusal of arguments a tool does not take."""
    names = ", ".join(repr(name) for name in unknown)
    takes = ", ".join(known) if known else "no arguments"
    return f"unknown argument{'s' if len(unknown) > 1 else ''} {names}: {tool} takes {takes}"


def unknown_tool_text(name: str, role: str, role_tools: Mapping[str, Sequence[str]]) -> str:
    """The refusal of a tool this server does not list: which role has it, and what this role can call."""
    holders = [other for other, names in role_tools.items() if name in names and other != role]
    if holders:
        whose = f"it belongs to the {' and the '.join(holders)} (another orch-mcp server)"
    else:
        whose = "no orch-mcp role has a tool by that name"
    return f"Unknown tool {name}: {whose}; this server is the {role}'s, whose tools are {', '.join(role_tools[role])}"


def argument_texts(role: str, tools: Iterable[Tool], role_tools: Mapping[str, Sequence[str]]) -> ServerMiddleware[Any]:
    """The middleware that rewrites the SDK's texts for bad arguments and unknown tools (see the module doc)."""
    by_name = {tool.name: tool for tool in tools}

    async def rewrite(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "tools/call" or not isinstance(result, dict) or result.get("isError") is not True:
            return result
        params = ctx.params or {}
        name = str(params.get("name"))
        tool = by_name.get(name)
        if tool is None:
            text = unknown_tool_text(name, role, role_tools)
        else:
            arguments = params.get("arguments") or {}
            try:
                tool.fn_metadata.validate_arguments(dict(arguments))
            except ValidationError as exc:
                text = argument_errors_text(name, exc)
            else:
                return result  # the arguments were valid: the tool's own error, already written for a model
        return {**result, "content": [{"type": "text", "text": text}]}

    return rewrite


def _sentence(err: ErrorDetails) -> str:
    """One pydantic error as a clause about the argument: "child_id must be at least 1 (you sent 0)"."""
    name = _location(err["loc"])
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    sent = f" (you sent {_shown(err['input'])})" if "input" in err else ""
    if kind == "missing":
        return f"{name} is required"
    if kind in _BOUNDS:
        bound = ctx[_BOUND_KEYS[kind]]
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound  # 0, not 0.0
        return f"{name} must be {_BOUNDS[kind]} {_shown(bound)}{sent}"
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        return f"{name} must be at least {least} character{'s' if least != 1 else ''} long{sent}"
    if kind == "string_too_long":
        return f"{name} must be at most {ctx.get('max_length')} characters long (you sent {_size(err['input'])})"
    if kind == "string_unicode":
        return f"{name} must be valid Unicode text: it holds a lone surrogate, which UTF-8 cannot carry{sent}"
    if kind in ("literal_error", "enum"):
        return f"{name} must be {ctx.get('expected')}{sent}"
    for kinds, what in _TYPES:
        if kind in kinds:
            return f"{name} must be {what}{sent}"
    message = err["msg"]
    return f"{name}: {message[:1].lower()}{message[1:]}{sent}"


_BOUNDS = {
    "greater_than_equal": "at least",
    "greater_than": "greater than",
    "less_than_equal": "at most",
    "less_than": "less than",
}
_BOUND_KEYS = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}
_TYPES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("int_type", "int_parsing", "int_from_float", "int_parsing_size"), "an integer"),
    (("float_type", "float_parsing", "finite_number"), "a number"),
    (("bool_type", "bool_parsing"), "true or false"),
    (("string_type",), "a string"),
    (("dict_type", "model_type", "model_attributes_type"), "a JSON object"),
    (("list_type", "tuple_type", "set_type"), "a JSON array"),
)


def _location(loc: tuple[int | str, ...]) -> str:
    """An argument's path as a model writes it: `context.files[0]`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the arguments"


def _shown(value: Any) -> str:
    """A value as JSON on one line, cut short when long."""
    if value == "":
        return "an empty string"
    try:
        text = json.dumps(value, ensure_ascii=True, default=str)
    except ValueError:  # e.g. a circular structure (never from JSON-RPC, but this must not fail)
        text = repr(value)
    if len(text) > SHOWN_MAX:
        return f"{text[: SHOWN_MAX - 20]}... ({_size(value)})"
    return text


def _size(value: Any) -> str:
    if isinstance(value, str):
        return f"{len(value)} characters"
    if isinstance(value, list | dict):
        return f"{len(value)} items"
    return type(value).__name__
