"""`orch-mcp setup CLIENT --children N`: what it prints and writes for each client, and that the result runs.

The command runs as the real console script (its absolute path must land in the configuration),
as `python -m orch_mcp`, and in process. The Claude lines run through `sh` with a stand-in `claude`
that records its directory and arguments; a server line taken from the printed JSON starts and
lists its tools over stdio.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from cli_helpers import one_error_line
from mcp import Client, StdioServerParameters

from orch_mcp.cli import setup_cmd, toml_tables
from orch_mcp.cli.main import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has no TOML parser: the TOML is then checked by its lines only
    tomllib = None

ORCH_MCP = str(Path(sys.executable).parent / "orch-mcp")  # the console script of this environment
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "REDIS_"))}
URL = "redis://localhost:6390/2"
AGENTS = ["summoner", "moogle", "chocobo-1", "chocobo-2", "chocobo-3"]
ROLE_ARGS = {
    "summoner": ["serve", "--role", "summoner"],
    "moogle": ["serve", "--role", "moogle"],
    **{f"chocobo-{n}": ["serve", "--role", "chocobo", "--child-id", str(n)] for n in (1, 2, 3)},
}


Setup = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Setup:
    """Run `orch-mcp setup ARGS` in process (fast), with only the given ORCH_/REDIS_ variables set.

    In process, argv[0] is pytest's, so the command found is the console script next to this Python:
    the same path the real console script gives (checked by the tests that run it as a subprocess).
    """
    for name in list(os.environ):
        if name.startswith(("ORCH_", "REDIS_")):
            monkeypatch.delenv(name)

    def call(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        with monkeypatch.context() as patch:
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            code = main(["setup", *args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["orch-mcp", "setup", *args], code, out, err)

    return call


def setup_process(*args: str, python_m: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `orch-mcp setup ARGS` through the console script (or `python -m orch_mcp`)."""
    command = [sys.executable, "-m", "orch_mcp"] if python_m else [ORCH_MCP]
    return subprocess.run(
        [*command, "setup", *args],
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return proc.stdout


def blocks(text: str) -> dict[str, str]:
    """The per-agent blocks of the codex and gemini output: the file named in each `# label: FILE` line → content."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("# ") and ": /" in line:
            current = found.setdefault(line.split(": ", 1)[1], [])
        elif current is not None and not line.startswith("#"):
            current.append(line)
    return {path: "\n".join(lines).strip() for path, lines in found.items()}


def test_claude_prints_one_add_line_per_agent_run_in_its_own_directory(tmp_path: Path) -> None:
    base = tmp_path / "my agents"  # a space: every word must be quoted for the shell
    text = ok(setup_process("claude", "--children", "3", "--dir", str(base), "--url", URL))
    adds = [shlex.split(line) for line in text.splitlines() if line.startswith("claude mcp add ")]
    assert [words[3] for words in adds] == [f"orch-{agent}" for agent in AGENTS]
    for agent, words in zip(AGENTS, adds, strict=True):
        # The name comes before -e (claude's -e takes several values and would swallow it).
        assert words[:8] == ["claude", "mcp", "add", f"orch-{agent}", "-e", f"REDIS_URL={URL}", "--", ORCH_MCP]
        assert words[8:] == ROLE_ARGS[agent]
    assert "orch-mcp redis start" not in text  # not the embedded Redis's address: "must be running" instead
    assert f"Redis must be running at {URL}" in text

    # The output is a shell script: with a stand-in `claude`, each add runs in its agent's directory.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "claude"
    fake.write_text('#!/bin/sh\nprintf \'%s\\n\' "$PWD" "$@" "--end--" >> "$CLAUDE_LOG"\n')
    fake.chmod(0o755)
    log = tmp_path / "claude.log"
    env = {**CLEAN_ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CLAUDE_LOG": str(log)}
    subprocess.run(["sh", "-e"], input=text, text=True, env=env, check=True, timeout=30, cwd=tmp_path)
    calls = [c.strip("\n").split("\n") for c in log.read_text().split("--end--\n") if c]
    assert [(call[0], call[1:]) for call in calls] == [
        (str(base / agent), words[1:]) for agent, words in zip(AGENTS, adds, strict=True)
    ]


def test_claude_default_redis_points_at_the_embedded_one_and_its_directories_are_absolute(
    tmp_path: Path, setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = ok(setup("claude", "--children", "1"))
    assert f"mkdir -p {tmp_path}/orch-agents/chocobo-1 && cd {tmp_path}/orch-agents/chocobo-1" in text
    assert "-e REDIS_URL=redis://localhost:6379/0 --" in text
    assert f"Redis: `{ORCH_MCP} redis start` once" in text


def test_codex_prints_one_mcp_servers_table_per_agent(tmp_path: Path, setup: Setup) -> None:
    text = ok(setup("codex", "--children", "3", "--dir", str(tmp_path), "--url", URL))
    found = blocks(text)
    assert list(found) == [str(tmp_path / agent / ".codex" / "config.toml") for agent in AGENTS]
    for agent in AGENTS:
        home = tmp_path / agent / ".codex"
        assert f"#   then: cd {tmp_path / agent} && CODEX_HOME={home} codex" in text
        assert found[str(home / "config.toml")].startswith(f"[mcp_servers.orch-{agent}]\n")
    if tomllib is not None:
        servers = tomllib.loads(text)["mcp_servers"]  # the blocks together are one valid document too
        assert list(servers) == [f"orch-{agent}" for agent in AGENTS]
        for agent in AGENTS:
            assert servers[f"orch-{agent}"] == {
                "command": ORCH_MCP,
                "args": ROLE_ARGS[agent],
                "env": {"REDIS_URL": URL},
                "tool_timeout_sec": 60,
            }


def test_gemini_prints_the_settings_json_of_each_agent(tmp_path: Path, setup: Setup) -> None:
    text = ok(setup("gemini", "--children", "3", "--dir", str(tmp_path), "--url", URL))
    found = blocks(text)
    assert list(found) == [str(tmp_path / agent / ".gemini" / "settings.json") for agent in AGENTS]
    for agent in AGENTS:
        assert f"#   then: cd {tmp_path / agent} && gemini" in text
        assert json.loads(found[str(tmp_path / agent / ".gemini" / "settings.json")]) == {
            "mcpServers": {
                f"orch-{agent}": {
                    "command": ORCH_MCP,
                    "args": ROLE_ARGS[agent],
                    "env": {"REDIS_URL": URL},
                    "timeout": 60000,
                }
            }
        }


def test_json_prints_one_mcp_servers_document_with_the_options_applied(tmp_path: Path, setup: Setup) -> None:
    text = ok(
        setup(
            "json",
            "--children",
            "2",
            "--name-prefix",
            "team",
            "--session-id",
            "s1",
            env={"ORCH_NAMESPACE": "ns1", "REDIS_URL": URL},
        )
    )
    extra = ["--namespace", "ns1", "--session-id", "s1"]
    assert json.loads(text) == {
        "mcpServers": {
            f"team-{agent}": {"command": ORCH_MCP, "args": [*ROLE_ARGS[agent], *extra], "env": {"REDIS_URL": URL}}
            for agent in AGENTS[:4]
        }
    }


def test_json_flag_describes_every_agent_for_machines(tmp_path: Path, setup: Setup) -> None:
    text = ok(setup("claude", "--children", "2", "--dir", str(tmp_path), "--url", URL, "--json"))
    assert len(text.splitlines()) == 1
    doc = json.loads(text)
    assert (doc["client"], doc["children"], doc["orch_mcp"], doc["written"]) == ("claude", 2, [ORCH_MCP], [])
    assert [(a["role"], a["child_id"], a["name"], a["dir"]) for a in doc["agents"]] == [
        ("summoner", None, "orch-summoner", str(tmp_path / "summoner")),
        ("moogle", None, "orch-moogle", str(tmp_path / "moogle")),
        ("chocobo", 1, "orch-chocobo-1", str(tmp_path / "chocobo-1")),
        ("chocobo", 2, "orch-chocobo-2", str(tmp_path / "chocobo-2")),
    ]
    moogle = doc["agents"][1]
    assert moogle["config_file"] == str(tmp_path / "moogle" / ".mcp.json")
    assert moogle["register"] == [
        "claude",
        "mcp",
        "add",
        "orch-moogle",
        "-e",
        f"REDIS_URL={URL}",
        "--",
        ORCH_MCP,
        *ROLE_ARGS["moogle"],
    ]
    assert moogle["start"] == f"cd {tmp_path / 'moogle'} && claude"


def test_write_claude_merges_into_an_existing_mcp_json(tmp_path: Path, setup: Setup) -> None:
    mine = tmp_path / "moogle" / ".mcp.json"
    mine.parent.mkdir()
    other = {"command": "npx", "args": ["-y", "other-server"]}
    mine.write_text(json.dumps({"mcpServers": {"other": other, "orch-moogle": {"command": "old"}}, "note": 1}))
    text = ok(setup("claude", "--children", "3", "--dir", str(tmp_path), "--url", URL, "--write"))
    for agent in AGENTS:
        path = tmp_path / agent / ".mcp.json"
        assert f"wrote {path}" in text
        assert f"  cd {tmp_path / agent} && claude   # " in text
        servers = json.loads(path.read_text())["mcpServers"]
        ours = {"type": "stdio", "command": ORCH_MCP, "args": ROLE_ARGS[agent], "env": {"REDIS_URL": URL}}
        assert servers == ({"other": other, "orch-moogle": ours} if agent == "moogle" else {f"orch-{agent}": ours})
    assert json.loads(mine.read_text())["note"] == 1
    before = {agent: (tmp_path / agent / ".mcp.json").read_text() for agent in AGENTS}
    ok(setup("claude", "--children", "3", "--dir", str(tmp_path), "--url", URL, "--write"))
    assert {agent: (tmp_path / agent / ".mcp.json").read_text() for agent in AGENTS} == before  # idempotent


def test_write_gemini_and_json(tmp_path: Path, setup: Setup) -> None:
    settings = tmp_path / "chocobo-1" / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"theme": "Dracula", "mcpServers": {"git": {"command": "uvx"}}}))
    ok(setup("gemini", "--children", "1", "--dir", str(tmp_path), "--url", URL, "--write"))
    doc = json.loads(settings.read_text())
    assert doc["theme"] == "Dracula"
    assert set(doc["mcpServers"]) == {"git", "orch-chocobo-1"}
    assert (
        json.loads((tmp_path / "moogle" / ".gemini" / "settings.json").read_text())["mcpServers"]["orch-moogle"]["args"]
        == ROLE_ARGS["moogle"]
    )

    text = ok(setup("json", "--children", "1", "--dir", str(tmp_path), "--url", URL, "--write"))
    assert text.startswith(f"wrote {tmp_path / 'mcp.json'}\n")
    assert set(json.loads((tmp_path / "mcp.json").read_text())["mcpServers"]) == {
        "orch-summoner",
        "orch-moogle",
        "orch-chocobo-1",
    }


CODEX_BEFORE = """\
model = "o3"   # the user's own settings stay

[projects."/somewhere"]
trust_level = "trusted"

[mcp_servers.orch-moogle]
command = "old-orch-mcp"
args = ["serve", "--role", "moogle"]

[mcp_servers.orch-moogle.env]
REDIS_URL = "redis://old:6379/0"

# the user's other server
[mcp_servers.other]
command = "npx"
"""


def test_write_codex_replaces_only_its_own_tables(tmp_path: Path, setup: Setup) -> None:
    config = tmp_path / "moogle" / ".codex" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(CODEX_BEFORE)
    text = ok(setup("codex", "--children", "1", "--dir", str(tmp_path), "--url", URL, "--write"))
    assert f"wrote {config}" in text
    assert f"  cd {tmp_path / 'moogle'} && CODEX_HOME={config.parent} codex   # moogle" in text
    after = config.read_text()
    assert "old-orch-mcp" not in after and "redis://old" not in after
    assert after.startswith('model = "o3"   # the user\'s own settings stay\n')
    assert "# the user's other server\n[mcp_servers.other]\n" in after
    if tomllib is not None:
        doc = tomllib.loads(after)
        assert doc["model"] == "o3" and doc["projects"] == {"/somewhere": {"trust_level": "trusted"}}
        assert doc["mcp_servers"] == {
            "other": {"command": "npx"},
            "orch-moogle": {
                "command": ORCH_MCP,
                "args": ROLE_ARGS["moogle"],
                "env": {"REDIS_URL": URL},
                "tool_timeout_sec": 60,
            },
        }
    ok(setup("codex", "--children", "1", "--dir", str(tmp_path), "--url", URL, "--write"))
    assert config.read_text() == after  # idempotent


def test_write_codex_refuses_a_file_it_cannot_update_safely(tmp_path: Path, setup: Setup) -> None:
    config = tmp_path / "summoner" / ".codex" / "config.toml"
    config.parent.mkdir(parents=True)
    inline = 'mcp_servers = { orch-summoner = { command = "x" } }\n'  # our server, but not as a table
    config.write_text(inline)
    proc = setup("codex", "--children", "1", "--dir", str(tmp_path), "--url", URL, "--write")
    assert proc.returncode == 1
    assert f"cannot update {config} safely: remove its [mcp_servers.orch-summoner] tables" in one_error_line(proc)
    assert config.read_text() == inline
    assert not (tmp_path / "moogle").exists()  # every file is checked before any is written


def test_the_line_check_used_without_tomllib() -> None:
    tables = {"mcp_servers.orch-moogle": ""}
    assert toml_tables.simple_enough(CODEX_BEFORE, tables)
    assert not toml_tables.simple_enough('mcp_servers = { orch-moogle = { command = "x" } }\n', tables)
    assert not toml_tables.simple_enough('x = """\n[mcp_servers.orch-moogle]\n"""\n', tables)
    assert not toml_tables.simple_enough("m = [\n  [1, 2],\n]\n", tables)
    assert not toml_tables.simple_enough("[[servers]]\nname = 1\n", tables)


def test_a_password_stays_out_of_the_messages_and_its_files_are_private(tmp_path: Path, setup: Setup) -> None:
    url = "redis://:s3cret@localhost:6379/0"
    proc = setup("claude", "--children", "1", "--dir", str(tmp_path), "--url", url, "--write")
    assert proc.returncode == 0
    assert "s3cret" not in proc.stdout and "redis://:***@localhost:6379/0" in proc.stdout
    assert (
        one_error_line(proc) == "orch-mcp setup: the configuration holds the Redis password in clear: keep it private"
    )
    written = tmp_path / "chocobo-1" / ".mcp.json"
    assert json.loads(written.read_text())["mcpServers"]["orch-chocobo-1"]["env"] == {"REDIS_URL": url}
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["setup"], "the following arguments are required: CLIENT"),
        (["setup", "cursor"], "argument CLIENT: invalid choice: 'cursor'"),
        (["setup", "claude", "--children", "0"], "argument --children: 0 is out of range"),
        (["setup", "claude", "--children", "x"], "argument --children: 'x' is not a whole number"),
        (["setup", "codex", "--name-prefix", "a b"], "invalid --name-prefix 'a b'"),
        (["setup", "json", "--url", "http://x"], "argument --url: 'http://x' has an unsupported scheme"),
        (["setup", "json", "--session-id", "a*"], "invalid session id 'a*'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("orch-mcp setup: ") and message in err and "(see `orch-mcp setup --help`)" in err


def test_a_directory_that_cannot_be_written_is_a_runtime_error(tmp_path: Path, setup: Setup) -> None:
    (tmp_path / "file").write_text("")
    proc = setup("gemini", "--children", "1", "--dir", str(tmp_path / "file"), "--write")
    assert proc.returncode == 1
    assert one_error_line(proc).startswith(f"orch-mcp: cannot write {tmp_path / 'file' / 'summoner'}")


def test_help_lists_the_clients_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["setup", "--help"]) == 0
    out = capsys.readouterr().out
    assert "claude, codex, gemini or json" in out and "orch-mcp setup claude --children 3" in out
    assert main(["--help"]) == 0
    assert "  setup " in capsys.readouterr().out


def test_the_command_is_this_python_when_run_as_a_module_and_the_console_script_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = ok(setup_process("json", "--children", "1", "--url", URL, python_m=True))
    entry = json.loads(text)["mcpServers"]["orch-chocobo-1"]
    assert (entry["command"], entry["args"]) == (sys.executable, ["-m", "orch_mcp", *ROLE_ARGS["chocobo-1"]])
    assert main(["setup", "json", "--children", "1", "--url", URL]) == 0  # in process: argv[0] is pytest's
    assert json.loads(capsys.readouterr().out)["mcpServers"]["orch-moogle"]["command"] == ORCH_MCP


@pytest.mark.parametrize(
    ("python_m", "name", "tool"),
    [(False, "orch-chocobo-2", "wait_for_task"), (True, "orch-summoner", "init_session")],
    ids=["console-script", "python-m"],
)
async def test_a_printed_server_starts_and_lists_its_tools(
    python_m: bool, name: str, tool: str, redis_url: str
) -> None:
    text = ok(setup_process("json", "--children", "2", "--url", redis_url, python_m=python_m))
    entry = json.loads(text)["mcpServers"][name]
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env={**CLEAN_ENV, **entry["env"]})
    with anyio.fail_after(30):
        async with Client(params) as client:
            assert tool in {t.name for t in (await client.list_tools()).tools}


def test_the_readme_shows_what_setup_claude_prints(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    shown = readme.split("orch-mcp setup claude --children 3 --dir ~/agents", 1)[1].split("```text\n", 1)[1]
    monkeypatch.setenv("HOME", "/home/you")  # the README's user, with orch-mcp installed by pipx
    monkeypatch.setattr(setup_cmd, "orch_mcp_command", lambda: ["/home/you/.local/bin/orch-mcp"])
    text = ok(setup("claude", "--children", "3", "--dir", "~/agents"))
    assert shown.split("```\n", 1)[0] == text
