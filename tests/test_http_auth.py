"""`orch-mcp serve --transport http`: the bearer token on every request, the Host/Origin checks, and the rule that
a host other machines can reach needs a token. Real `orch-mcp serve` processes on free ports, the SDK's
streamable-HTTP client (with headers) and plain HTTP requests for the exact answers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio.streams.text import TextReceiveStream
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import ok

from orch_mcp.config import OrchConfig
from orch_mcp.embedded import free_port
from orch_mcp.errors import ConfigError
from orch_mcp.http_guard import allowed_hosts
from orch_mcp.serve import UsageError, load_settings
from orch_mcp.server import ServerSettings

TOKEN = "s3cret-token-for-the-http-tests"
SUMMONER_TOOLS = {"init_session", "get_session", "list_sessions", "cleanup_session", "session_status"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@dataclass
class Served:
    """A running `orch-mcp serve --transport http`: where it listens and what it wrote on stderr."""

    port: int
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def stderr(self) -> str:
        return "".join(self.log)


@asynccontextmanager
async def http_server(env: Mapping[str, str], *args: str) -> AsyncIterator[Served]:
    """A summoner served over HTTP on a free port with `args`; yields once it accepts connections, stops it after."""
    served = Served(free_port())
    command = [sys.executable, "-m", "orch_mcp", "serve", "--role", "summoner", "--transport", "http"]
    command += ["--http-port", str(served.port), *args]
    with anyio.fail_after(30):
        async with await anyio.open_process(command, env=dict(env), stdin=subprocess.DEVNULL) as process:
            assert process.stderr is not None
            err = TextReceiveStream(process.stderr)
            async for chunk in err:
                served.log.append(chunk)
                if "serving MCP at" in served.stderr:
                    break
            else:
                pytest.fail(f"the HTTP server did not start: {served.stderr}")
            try:
                yield served
            finally:
                process.terminate()
                assert await process.wait() == 0
                served.log += [chunk async for chunk in err]


async def post_initialize(served: Served, headers: Mapping[str, str]) -> httpx2.Response:
    """One MCP initialize request as plain HTTP, with `headers` added."""
    async with httpx2.AsyncClient() as http:
        return await http.post(served.url, json=INITIALIZE, headers={**MCP_HEADERS, **headers})


async def statuses_of_an_mcp_client(served: Served, headers: Mapping[str, str]) -> list[int]:
    """The HTTP statuses the SDK's client got trying to list the tools with `headers`; fails if it succeeded."""
    statuses: list[int] = []

    async def record(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    try:
        async with (
            httpx2.AsyncClient(headers=dict(headers), event_hooks={"response": [record]}) as http,
            Client(streamable_http_client(served.url, http_client=http)) as client,
        ):
            await client.list_tools()
    except Exception:  # the SDK's client raises an MCP error (in task groups) on a refused request
        return statuses
    pytest.fail(f"the client was served without the right token: {statuses}")


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    path.chmod(0o600)
    return path


async def test_every_request_needs_the_token_and_the_tools_work_with_it(
    env_for: dict[str, str], token_file: Path
) -> None:
    env = {**env_for, "ORCH_LOG_LEVEL": "DEBUG"}  # even the most talkative log must not show the token
    async with http_server(env, "--http-token-file", str(token_file)) as served:
        missing = await post_initialize(served, {})
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="orch-mcp"'
        assert missing.json() == {
            "error": "missing_token",
            "error_description": "this MCP server needs a bearer token: send the header `Authorization: Bearer "
            "<token>` with the token the server was started with",
        }
        wrong = await post_initialize(served, {"Authorization": "Bearer not-the-right-token-at-all"})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == 'Bearer realm="orch-mcp", error="invalid_token"'
        assert wrong.json()["error"] == "invalid_token"
        assert (await post_initialize(served, {"Authorization": f"Basic {TOKEN}"})).status_code == 401
        assert (await post_initialize(served, {"Authorization": f"Bearer {TOKEN}x"})).status_code == 401
        async with httpx2.AsyncClient() as http:  # every path, not only the MCP endpoint
            assert (await http.get(f"http://127.0.0.1:{served.port}/")).status_code == 401

        assert set(await statuses_of_an_mcp_client(served, {})) == {401}
        assert set(await statuses_of_an_mcp_client(served, {"Authorization": "Bearer wrong-token-wrong"})) == {401}
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
            Client(streamable_http_client(served.url, http_client=http)) as client,
        ):
            assert {t.name for t in (await client.list_tools()).tools} == SUMMONER_TOOLS
            assert ok(await client.call_tool("init_session", {"max_children": 2}))["max_children"] == 2
            assert ok(await client.call_tool("list_sessions", {}))["current"] is not None

        # With the token, the SDK's DNS-rebinding checks still stand: a forged Host or Origin is refused.
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert (await post_initialize(served, {**auth, "Host": f"localhost:{served.port}"})).status_code == 200
        assert (await post_initialize(served, {**auth, "Host": f"evil.example:{served.port}"})).status_code == 421
        assert (await post_initialize(served, {**auth, "Origin": "http://evil.example"})).status_code == 403
        good_origin = {**auth, "Origin": f"http://localhost:{served.port}"}
        assert (await post_initialize(served, good_origin)).status_code == 200
    assert TOKEN not in served.stderr
    assert "refused an HTTP request from 127.0.0.1: missing_token" in served.stderr
    assert "Invalid Host header: evil.example" in served.stderr


async def test_a_host_others_can_reach_serves_with_a_token_and_its_allowed_host_names(env_for: dict[str, str]) -> None:
    env = {**env_for, "ORCH_HTTP_TOKEN": TOKEN}
    async with http_server(env, "--http-host", "0.0.0.0", "--http-allowed-host", "orch.lan") as served:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert (await post_initialize(served, {})).status_code == 401
        assert (await post_initialize(served, {**auth, "Host": f"orch.lan:{served.port}"})).status_code == 200
        assert (await post_initialize(served, {**auth, "Origin": "https://orch.lan"})).status_code == 200
        assert (await post_initialize(served, {**auth, "Host": f"0.0.0.0:{served.port}"})).status_code == 421
        assert (await post_initialize(served, {**auth, "Host": f"evil.example:{served.port}"})).status_code == 421
        assert (await post_initialize(served, {**auth, "Origin": "http://evil.example"})).status_code == 403
        async with (
            httpx2.AsyncClient(headers=auth) as http,
            Client(streamable_http_client(served.url, http_client=http)) as client,
        ):
            assert {t.name for t in (await client.list_tools()).tools} == SUMMONER_TOOLS
    lines = served.stderr.splitlines()
    assert lines[:2] == [
        f"orch-mcp serve: summoner serving MCP at http://0.0.0.0:{served.port}/mcp (Ctrl+C to stop)",
        "orch-mcp serve: every request needs the bearer token; Host names accepted: 127.0.0.1, localhost, [::1], "
        "orch.lan",
    ]
    assert TOKEN not in served.stderr


def test_a_host_others_can_reach_does_not_start_without_a_token(env_for: dict[str, str]) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orch_mcp",
            "serve",
            "--role",
            "moogle",
            "--transport",
            "http",
            "--http-host",
            "0.0.0.0",
        ],
        env={k: v for k, v in env_for.items() if not k.startswith("ORCH_HTTP_")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "orch-mcp serve: HTTP host 0.0.0.0 can be reached from other machines, so the server needs a bearer token: "
        "give one with --http-token-file PATH (a file only you can read), --http-token TOKEN or ORCH_HTTP_TOKEN, or "
        "listen on 127.0.0.1 (see `orch-mcp serve --help`)"
    ]
    for host in ("::", "192.168.1.5", "orch.lan", "[::]"):
        with pytest.raises(UsageError, match=re.escape(f"HTTP host {host} can be reached from other machines")):
            load_settings(["--role", "moogle", "--transport", "http", "--http-host", host], {})
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):  # loopback: no token needed
        assert load_settings(["--role", "moogle", "--transport", "http", "--http-host", host], {}).http_host == host
    with pytest.raises(ConfigError, match=r"HTTP host 0\.0\.0\.0 can be reached"):  # the same rule for code
        ServerSettings(role="moogle", orch=OrchConfig(), transport="http", http_host="0.0.0.0")


def test_where_the_token_comes_from(tmp_path: Path, token_file: Path) -> None:
    base = ["--role", "moogle", "--transport", "http"]
    assert load_settings([*base, "--http-token-file", str(token_file)], {}).bearer_token == TOKEN  # stripped
    assert load_settings(base, {"ORCH_HTTP_TOKEN_FILE": str(token_file)}).bearer_token == TOKEN
    assert load_settings(base, {"ORCH_HTTP_TOKEN": TOKEN}).bearer_token == TOKEN
    # a flag replaces the other way's variable, as every flag does
    other = "another-token-from-the-flag"
    assert (
        load_settings([*base, "--http-token", other], {"ORCH_HTTP_TOKEN_FILE": str(token_file)}).bearer_token == other
    )
    assert (
        load_settings([*base, "--http-token-file", str(token_file)], {"ORCH_HTTP_TOKEN": other}).bearer_token == TOKEN
    )

    shared = tmp_path / "shared-token"
    shared.write_text(TOKEN)
    shared.chmod(0o640)
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    empty.chmod(0o600)
    rule = "a bearer token is 16 or more letters, digits and -._~+/="
    cases: list[tuple[list[str], dict[str, str], str]] = [
        (
            ["--http-token-file", str(shared)],
            {},
            f"argument --http-token-file: {shared} is readable by other users: make it yours only with "
            f"`chmod 600 {shared}`",
        ),
        (["--http-token-file", str(empty)], {}, f"argument --http-token-file: {empty} holds no usable token: {rule}"),
        (
            ["--http-token-file", str(tmp_path / "none")],
            {},
            f"argument --http-token-file: cannot read {tmp_path / 'none'}: No such file or directory",
        ),
        (["--http-token", "short-secret"], {}, f"argument --http-token: unusable token: {rule}"),
        ([], {"ORCH_HTTP_TOKEN": "has spaces in it, sixteen+"}, f"ORCH_HTTP_TOKEN: unusable token: {rule}"),
        (
            ["--http-token", TOKEN, "--http-token-file", str(token_file)],
            {},
            "--http-token and --http-token-file both give the token: keep one",
        ),
        (
            [],
            {"ORCH_HTTP_TOKEN": TOKEN, "ORCH_HTTP_TOKEN_FILE": str(token_file)},
            "ORCH_HTTP_TOKEN and ORCH_HTTP_TOKEN_FILE both give the token: unset one",
        ),
        (
            ["--http-allowed-host", "http://orch.lan/"],
            {"ORCH_HTTP_TOKEN": TOKEN},
            "argument --http-allowed-host: 'http://orch.lan/' is not a host name",
        ),
    ]
    for args, env, message in cases:
        with pytest.raises(UsageError) as refused:
            load_settings([*base, *args], env)
        assert str(refused.value).startswith(message), (str(refused.value), message)
        assert "short-secret" not in str(refused.value) and "has spaces" not in str(refused.value)
    for flag in (["--http-token", TOKEN], ["--http-token-file", str(token_file)], ["--http-allowed-host", "orch.lan"]):
        with pytest.raises(UsageError, match=f"{flag[0]} applies to --transport http only"):
            load_settings(["--role", "moogle", *flag], {})
    assert load_settings(["--role", "moogle"], {"ORCH_HTTP_TOKEN": TOKEN}).transport == "stdio"  # a shared variable


def test_the_host_names_accepted() -> None:
    loopback = ["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"]
    assert allowed_hosts("127.0.0.1") == loopback
    assert allowed_hosts("0.0.0.0") == allowed_hosts("::") == loopback
    assert allowed_hosts("192.168.1.5", ("orch.lan", "proxy.lan:8443")) == [
        *loopback,
        "192.168.1.5",
        "192.168.1.5:*",
        "orch.lan",
        "orch.lan:*",
        "proxy.lan:8443",
    ]
    assert allowed_hosts("fe80::1")[-2:] == ["[fe80::1]", "[fe80::1]:*"]


def test_the_readme_client_configs_send_the_token() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "claude mcp add --transport http orch-moogle http://" in readme
    assert '--header "Authorization: Bearer ' in readme
    start = readme.index('{\n  "mcpServers"', readme.index("## Serving over HTTP"))
    doc = json.loads(readme[start : readme.index("\n}\n", start) + 2])
    (entry,) = doc["mcpServers"].values()
    assert entry["type"] == "http" and entry["headers"]["Authorization"].startswith("Bearer ")
    assert os.path.basename(entry["url"]) == "mcp"
