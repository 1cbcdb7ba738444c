"""The official MCP Inspector, headless (`npx @modelcontextprotocol/inspector --cli`), lists and calls our tools.

npx fetches the package once and says where its `mcp-inspector` command is; the runs start that command
directly (what npx would start), which spares each run npm's own start-up (about 0.7 s of CPU).
Skipped, with the reason, where `npx` is missing or the inspector package cannot be fetched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import anyio
import pytest

from orch_mcp.redis_client import Redis
from orch_mcp.server import ROLE_TOOLS as SERVER_TOOLS
from orch_mcp.sessions import current_session

PACKAGE = "@modelcontextprotocol/inspector"
FETCH_TIMEOUT_S = 240
ROLE_ARGS = {"summoner": [], "moogle": [], "chocobo": ["--child-id", "1"]}
# What each role declares (tests/test_server.py pins the names): the inspector must list exactly that.
ROLE_TOOLS = {role: {fn.__name__ for fn in tools} for role, tools in SERVER_TOOLS.items()}


@pytest.fixture(scope="module")
def inspector() -> str:
    """The inspector's `mcp-inspector` command, with the package fetched (once) into npm's cache by npx."""
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx is not installed (install Node.js to run the MCP Inspector check)")
    try:
        found = subprocess.run(
            [npx, "-y", "-p", PACKAGE, "-c", "command -v mcp-inspector"],
            capture_output=True,
            text=True,
            timeout=FETCH_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"fetching {PACKAGE} with npx took over {FETCH_TIMEOUT_S} s")
    command = found.stdout.strip()
    if found.returncode != 0 or not command:
        pytest.skip(f"{PACKAGE} is unavailable through npx: {(found.stderr or found.stdout).strip()[-300:]}")
    done = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0 or "--cli" not in done.stdout + done.stderr:
        pytest.skip(f"{PACKAGE} has no headless --cli mode: {(done.stderr or done.stdout).strip()[-300:]}")
    return command


async def inspect(inspector: str, env: dict[str, str], role: str, *method: str) -> dict[str, Any]:
    """Run the inspector CLI against `orch-mcp serve --role <role>` and parse its JSON answer."""
    server_env = [f"{k}={env[k]}" for k in ("REDIS_URL", "ORCH_NAMESPACE")]
    command = [inspector, "--cli", *(a for kv in server_env for a in ("-e", kv))]
    command += [sys.executable, "-m", "orch_mcp", "serve", "--role", role, *ROLE_ARGS[role], "--method", *method]
    with anyio.fail_after(60):
        done = await anyio.run_process(command, env=env, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, f"{command}: {out}\n{done.stderr.decode()}"
    result: dict[str, Any] = json.loads(out[out.index("{") :])
    return result


async def test_inspector_lists_each_roles_tools(inspector: str, env_for: dict[str, str]) -> None:
    found: dict[str, set[str]] = {}

    async def list_role(role: str) -> None:
        listed = await inspect(inspector, env_for, role, "tools/list")
        found[role] = {tool["name"] for tool in listed["tools"]}
        for tool in listed["tools"]:
            assert tool["description"] and "outputSchema" in tool

    async with anyio.create_task_group() as tg:
        for role in ROLE_TOOLS:
            tg.start_soon(list_role, role)
    assert found == ROLE_TOOLS


async def test_inspector_calls_tools(inspector: str, env_for: dict[str, str], r: Redis) -> None:
    created = await inspect(inspector, env_for, "summoner", "tools/call", "--tool-name", "init_session",
                            "--tool-arg", "max_children=2")  # fmt: skip
    assert created["isError"] is False
    assert created["structuredContent"]["max_children"] == 2
    assert "Created session" in created["content"][0]["text"]
    waited = await inspect(inspector, env_for, "chocobo", "tools/call", "--tool-name", "wait_for_task",
                           "--tool-arg", "timeout_s=0")  # fmt: skip
    assert waited["structuredContent"]["status"] == "timeout"
    assert waited["structuredContent"]["session_id"] == created["structuredContent"]["session_id"]
    # The inspector's servers worked on this test's Redis and namespace.
    assert (await current_session(r, namespace="test")).session_id == waited["structuredContent"]["session_id"]
