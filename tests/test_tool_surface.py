"""The tool surface as a client sees it: titles, annotations, capabilities, and the texts of bad calls.

Everything here is read through a real MCP client (`mcp.Client(server)` in-process, over the
2025 handshake wire ("legacy", what stdio clients speak today) and the 2026-07-28 one, and once over
stdio with a real `orch-mcp serve`): what `initialize` advertises, what `tools/list` lists, what a
model reads when its arguments are wrong; and, against the real Redis, that read-only tools change no
key and repeats of idempotent ones change nothing. The expected hints are written here again on
purpose: the server's table (orch_mcp/server/catalog.py) must agree with the decisions below.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp_helpers import error, ok, serve_params, settings, text
from mcp_types import METHOD_NOT_FOUND, CallToolResult
from pydantic import ValidationError

from orch_mcp.config import OrchConfig
from orch_mcp.server import ROLE_TOOLS, create_server
from orch_mcp.server.app import UNSERVED_METHODS

ROLES = ("summoner", "moogle", "chocobo")
MODES = ("legacy", "auto")  # legacy: the initialize handshake; auto: 2026-07-28 in process
EVERY_ROLE_ON_EVERY_WIRE = pytest.mark.parametrize(("role", "mode"), [(role, mode) for role in ROLES for mode in MODES])

#: tool -> (readOnlyHint, destructiveHint, idempotentHint); openWorldHint is false for every tool (only this Redis).
HINTS: dict[str, tuple[bool, bool, bool]] = {
    "init_session": (False, True, False),  # moves the team to a new session, leaving the old one's work behind
    "get_session": (True, False, True),
    "list_sessions": (True, False, True),
    "cleanup_session": (False, True, True),  # a repeat finds nothing to remove
    "session_status": (True, False, True),
    "send_task": (False, False, False),  # adds a task each call
    "wait_for_report": (False, False, False),  # takes a report off the queue; it stays in the task's record
    "get_task": (True, False, True),
    "list_tasks": (True, False, True),
    "cancel_task": (False, True, True),  # abandons work; a repeat is refused and changes nothing
    "requeue_task": (False, True, False),  # ends the current delivery, each call starts another
    "shutdown": (False, True, False),  # stops children; each call queues another shutdown
    "wait_for_task": (False, False, False),  # takes a task
    "heartbeat": (False, False, False),  # pushes the deadline from now: each call does more
    "report": (False, False, True),  # the same report again is a duplicate that changes nothing
}


def server_for(orch: OrchConfig, role: str) -> Any:
    return create_server(settings(orch, role, 1 if role == "chocobo" else None))


# ---------------------------------------------------------------- what tools/list shows


@EVERY_ROLE_ON_EVERY_WIRE
async def test_every_tool_has_a_title_its_hints_and_a_one_line_description(
    orch_config: OrchConfig, role: str, mode: str
) -> None:
    async with Client(server_for(orch_config, role), mode=mode) as client:
        tools = (await client.list_tools()).tools
    assert [t.name for t in tools] == [fn.__name__ for fn in ROLE_TOOLS[role]]  # type: ignore[index]
    for tool in tools:
        assert tool.name in HINTS, f"{tool.name}: no hints decided in this test"
        assert tool.title and tool.title[0].isupper() and len(tool.title) <= 40, (tool.name, tool.title)
        hints = tool.annotations
        assert hints is not None, f"{tool.name} has no annotations"
        assert hints.title == tool.title
        got = (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint)
        assert got == HINTS[tool.name], f"{tool.name}: (readOnly, destructive, idempotent) = {got}"
        assert hints.open_world_hint is False, tool.name
        description = tool.description or ""
        assert description and "\n" not in description and len(description) <= 200, (tool.name, description)


async def test_titles_differ_across_the_whole_surface(orch_config: OrchConfig) -> None:
    titles: dict[str, str] = {}
    for role in ROLES:
        async with Client(server_for(orch_config, role)) as client:
            for tool in (await client.list_tools()).tools:
                titles[tool.name] = tool.title or ""
    assert len(set(titles.values())) == len(titles), titles


# ---------------------------------------------------------------- the hints hold


async def snapshot(redis_url: str) -> dict[bytes, bytes]:
    """Every key of the database and its value (DUMP: exact, whatever the type; TTLs left out)."""
    raw = aioredis.from_url(redis_url)
    try:
        return {key: await raw.dump(key) async for key in raw.scan_iter()}
    finally:
        await raw.aclose()


async def a_session_at_work(orch: OrchConfig) -> tuple[str, dict[str, str]]:
    """A session with a task done (report collected), one working, one queued; every server closed again."""
    async with Client(server_for(orch, "summoner")) as summoner:
        sid = ok(await summoner.call_tool("init_session", {"max_children": 2}))["session_id"]
    tasks: dict[str, str] = {}
    async with Client(server_for(orch, "moogle")) as moogle, Client(server_for(orch, "chocobo")) as chocobo:
        for state in ("done", "working", "queued"):
            tasks[state] = ok(await moogle.call_tool("send_task", {"child_id": 1, "prompt": state}))["task_id"]
        for state in ("done", "working"):  # a task in flight comes back until it is reported: report the first
            got = ok(await chocobo.call_tool("wait_for_task", {"timeout_s": 5}))
            assert got["task"]["task_id"] == tasks[state], got
            if state == "done":
                ok(await chocobo.call_tool("report", {"task_id": tasks["done"], "result": "r"}))
        assert ok(await moogle.call_tool("wait_for_report", {"timeout_s": 5}))["status"] == "report"
    return sid, tasks


async def test_read_only_tools_change_no_key_and_repeats_of_idempotent_ones_change_nothing(
    orch_config: OrchConfig, redis_url: str
) -> None:
    with anyio.fail_after(30):
        sid, tasks = await a_session_at_work(orch_config)
        args = {"get_session": {"session_id": sid}, "get_task": {"task_id": tasks["working"]}}
        for role in ("summoner", "moogle"):
            async with Client(server_for(orch_config, role)) as client:
                for fn in ROLE_TOOLS[role]:  # type: ignore[index]
                    if not HINTS[fn.__name__][0]:
                        continue
                    before = await snapshot(redis_url)
                    ok(await client.call_tool(fn.__name__, args.get(fn.__name__, {})))
                    assert await snapshot(redis_url) == before, f"{fn.__name__} (read-only) changed a key"
        async with Client(server_for(orch_config, "moogle")) as moogle:
            before = await snapshot(redis_url)
            ok(await moogle.call_tool("cancel_task", {"task_id": tasks["working"]}))
            assert await snapshot(redis_url) != before, "the snapshot misses what cancel_task changes"
            before = await snapshot(redis_url)
            assert "already cancelled" in error(await moogle.call_tool("cancel_task", {"task_id": tasks["working"]}))
            assert await snapshot(redis_url) == before, "a repeated cancel_task changed a key"
        async with Client(server_for(orch_config, "summoner")) as summoner:
            ok(await summoner.call_tool("cleanup_session", {"session_id": sid}))
            before = await snapshot(redis_url)
            assert "not found" in error(await summoner.call_tool("cleanup_session", {"session_id": sid}))
            assert await snapshot(redis_url) == before, "a repeated cleanup_session changed a key"


# ---------------------------------------------------------------- what initialize advertises


@EVERY_ROLE_ON_EVERY_WIRE
async def test_initialize_advertises_tools_only_and_what_is_advertised_works(
    orch_config: OrchConfig, role: str, mode: str
) -> None:
    async with Client(server_for(orch_config, role), mode=mode) as client:
        caps = client.server_capabilities
        assert caps.tools is not None and not caps.tools.list_changed  # the list never changes
        assert (caps.prompts, caps.resources, caps.logging, caps.completions) == (None, None, None, None), caps
        assert not caps.extensions and not caps.experimental, caps
        assert (await client.list_tools()).tools
        for call in (client.list_prompts, client.list_resources, client.list_resource_templates):
            with pytest.raises(MCPError) as refused:  # not advertised: not served either
                await call()
            assert refused.value.error.code == METHOD_NOT_FOUND, refused.value.error


# ---------------------------------------------------------------- what a bad call reads like

#: (role, tool, arguments, what the model reads after "Error executing tool <tool>: ")
BAD: list[tuple[str, str, dict[str, Any], str]] = [
    ("moogle", "send_task", {"child_id": 0, "prompt": "x"}, "child_id must be at least 1 (you sent 0)"),
    ("moogle", "send_task", {"child_id": 1}, "prompt is required"),
    (
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": ""},
        "prompt must be at least 1 character long (you sent an empty string)",
    ),
    ("moogle", "send_task", {"child_id": 1.5}, "child_id must be an integer (you sent 1.5); prompt is required"),
    (
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": "x", "context": [1]},
        "context must be a JSON object (you sent [1])",
    ),
    (
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": "x", "max_deliveries": 101},
        "max_deliveries must be at most 100 (you sent 101)",
    ),
    (
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": "x", "deadline_s": 0},
        "deadline_s must be greater than 0 (you sent 0)",
    ),
    (
        "moogle",
        "send_task",
        {"child_id": 1, "prompt": "x", "foo": 1},
        "unknown argument 'foo': send_task takes child_id, prompt, context, priority, deadline_s, max_deliveries",
    ),
    ("moogle", "wait_for_report", {"timeout_s": 51}, "timeout_s must be at most 50 (you sent 51)"),
    ("moogle", "wait_for_report", {"timeout_s": "soon"}, 'timeout_s must be a number (you sent "soon")'),
    ("moogle", "shutdown", {"now": "maybe"}, 'now must be true or false (you sent "maybe")'),
    ("moogle", "get_task", {}, "task_id is required"),
    ("moogle", "get_task", {"task_id": ["a"]}, 'task_id must be a string (you sent ["a"])'),
    ("summoner", "init_session", {"mode": "fast"}, "mode must be 'summoner' or 'normal' (you sent \"fast\")"),
    (
        "summoner",
        "init_session",
        {"max_children": 0, "ttl_s": 0},
        "max_children must be at least 1 (you sent 0); ttl_s must be at least 1 (you sent 0)",
    ),
    ("summoner", "list_sessions", {"namespace": "x"}, "unknown argument 'namespace': list_sessions takes no arguments"),
    ("chocobo", "report", {"task_id": "t"}, "result is required"),
    (
        "chocobo",
        "report",
        {"task_id": "t", "result": "r", "status": "ok"},
        "status must be 'done' or 'failed' (you sent \"ok\")",
    ),
    ("chocobo", "wait_for_task", {"timeout_s": []}, "timeout_s must be a number (you sent [])"),
    (
        "chocobo",
        "heartbeat",
        {"task_id": "t", "progress": 50},
        "unknown argument 'progress': heartbeat takes task_id, note",
    ),
]


def assert_one_sentence(result: CallToolResult, tool: str) -> str:
    """A tool error whose text is one line for a model: no pydantic dump, no web link."""
    assert result.is_error, f"{tool} accepted it: {result.structured_content}"
    body = text(result)
    assert "\n" not in body and len(body) < 300, body
    for word in ("pydantic", "http", "input_value", "validation error", "[type="):
        assert word not in body.lower(), f"{word!r} in {body!r}"
    return body


@pytest.mark.parametrize("mode", MODES)
async def test_bad_arguments_read_as_one_sentence_naming_the_argument(orch_config: OrchConfig, mode: str) -> None:
    servers = {role: server_for(orch_config, role) for role in ROLES}
    for role, tool, args, expected in BAD:
        async with Client(servers[role], mode=mode) as client:
            body = assert_one_sentence(await client.call_tool(tool, args), tool)
        assert body == f"Error executing tool {tool}: {expected}", (role, tool, args)


async def test_a_long_or_odd_value_is_shown_short_on_one_line(orch_config: OrchConfig) -> None:
    async with Client(server_for(orch_config, "moogle")) as client:
        body = assert_one_sentence(
            await client.call_tool("send_task", {"child_id": 1, "prompt": "x", "priority": "line\n" * 500}), "send_task"
        )
    assert body.startswith('Error executing tool send_task: priority must be an integer (you sent "line\\nline')
    assert body.endswith("... (2500 characters))"), body


@pytest.mark.parametrize(
    ("role", "tool", "holder"),
    [
        ("moogle", "report", "it belongs to the chocobo (another orch-mcp server)"),
        ("moogle", "init_session", "it belongs to the summoner (another orch-mcp server)"),
        ("chocobo", "session_status", "it belongs to the summoner and the moogle (another orch-mcp server)"),
        ("summoner", "wait_for_task", "it belongs to the chocobo (another orch-mcp server)"),
        ("summoner", "frobnicate", "no orch-mcp role has a tool by that name"),
    ],
)
async def test_a_tool_of_another_role_says_whose_it_is_and_what_this_role_has(
    orch_config: OrchConfig, role: str, tool: str, holder: str
) -> None:
    async with Client(server_for(orch_config, role)) as client:
        body = assert_one_sentence(await client.call_tool(tool, {}), tool)
    own = ", ".join(fn.__name__ for fn in ROLE_TOOLS[role])  # type: ignore[index]
    assert body == f"Unknown tool {tool}: {holder}; this server is the {role}'s, whose tools are {own}"


# ---------------------------------------------------------------- the SDK hooks this relies on


def test_the_sdk_hooks_behind_the_texts_are_still_there() -> None:
    """Decision 15 rests on mcp 2.3 internals: if one of these fails, re-check orch_mcp/server/arguments.py and app.py.

    - the pin: mcp >= 2.3, < 2.4 (middleware is provisional in 2.x);
    - `Tool.fn_metadata.validate_arguments` raises pydantic's ValidationError for bad arguments (the
      middleware runs it again to learn what was wrong);
    - the low-level server keeps its handlers in `_request_handlers` (where `_tools_only` withdraws the
      prompts and resources handlers, upstream python-sdk#2473).
    The texts tests above fail too, over both wires, if the middleware stops seeing the SDK's error results.
    """
    assert tuple(int(part) for part in version("mcp").split(".")[:2]) == (2, 3), version("mcp")

    async def probe(n: int) -> None:
        """Take a number."""

    with pytest.raises(ValidationError):
        Tool.from_function(probe).fn_metadata.validate_arguments({"n": "x"})
    # a plain MCPServer still registers what ours withdraws (when upstream fixes #2473, drop app._tools_only)
    assert set(UNSERVED_METHODS) <= set(MCPServer("probe")._lowlevel_server._request_handlers)


# ---------------------------------------------------------------- over stdio, as a real client sees it


@pytest.mark.slow
async def test_over_stdio_the_same_surface(env_for: dict[str, str]) -> None:
    async with Client(serve_params("moogle", env_for)) as client:
        caps = client.server_capabilities
        assert caps.tools is not None and caps.prompts is None and caps.resources is None, caps
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["cancel_task"].title == "Cancel a task"
        hints = tools["cancel_task"].annotations
        assert hints is not None and hints.destructive_hint is True and hints.idempotent_hint is True
        body = assert_one_sentence(await client.call_tool("send_task", {"child_id": 0, "prompt": "x"}), "send_task")
        assert body == "Error executing tool send_task: child_id must be at least 1 (you sent 0)"
        body = assert_one_sentence(await client.call_tool("report", {}), "report")
        assert body.startswith("Unknown tool report: it belongs to the chocobo"), body
