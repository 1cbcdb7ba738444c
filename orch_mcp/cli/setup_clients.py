"""The MCP client formats of `orch-mcp setup`: Claude Code, Codex CLI, Gemini CLI and a plain mcpServers file.

Each says where its client reads the configuration, what to print, and how to merge our servers
into a file that already exists without touching anything else in it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import toml_tables
from .common import plural

FLAT_LIST = re.compile(r"\[\n\s+([^\[\]{}]*?)\n\s*\]")
GEMINI_TIMEOUT_MS = 60_000  # waits answer within 50 s
CODEX_TOOL_TIMEOUT_S = 60


@dataclass(frozen=True)
class Agent:
    """One agent of the team: its role, its MCP server's name and command line, and its directory."""

    role: str
    child_id: int | None
    name: str
    directory: Path
    command: str
    args: list[str]
    env: dict[str, str]

    @property
    def label(self) -> str:
        """`summoner`, `moogle`, `chocobo 2`."""
        return self.role if self.child_id is None else f"{self.role} {self.child_id}"


@dataclass(frozen=True)
class Team:
    """What `orch-mcp setup` configures: the agents, for one client."""

    client: ClientFormat
    agents: list[Agent]
    base: Path
    redis_display: str
    orch_mcp: list[str]
    secret: bool = False  # the Redis URL holds a password
    embedded_redis: bool = False  # the Redis URL is where `orch-mcp redis start` runs one

    @property
    def children(self) -> int:
        """How many chocobos."""
        return sum(1 for agent in self.agents if agent.child_id is not None)

    @property
    def summary(self) -> str:
        """`1 summoner, 1 moogle and 3 chocobos sharing the Redis at redis://localhost:6379/0`."""
        return f"1 summoner, 1 moogle and {plural(self.children, 'chocobo')} sharing the Redis at {self.redis_display}"

    def shell(self, *words: str) -> str:
        """A shell command line, each word quoted where needed."""
        return " ".join(shlex.quote(w) for w in words)

    def closing(self) -> list[str]:
        """What to do once the agents are configured."""
        redis = self.shell(*self.orch_mcp, "redis", "start")
        children = plural(self.children, "child", "children")
        return [
            f"Redis: `{redis}` once, if nothing serves {self.redis_display} yet."
            if self.embedded_redis
            else f"Redis must be running at {self.redis_display}.",
            f"Then start each agent in its directory, ask the summoner to create a session with {children},",
            "tell the chocobos to follow their orch-mcp instructions, and give the moogle the job.",
        ]


@dataclass(frozen=True)
class ClientFormat:
    """One client: the file it reads, the entry of one server, the text to print."""

    name: str
    title: str
    relative_file: str  # below an agent's directory ("" = one file for the team, BASE/mcp.json)
    entry_fields: dict[str, Any] = field(default_factory=dict)

    def config_file(self, team: Team, agent: Agent) -> Path:
        """Where the client reads this agent's server."""
        return agent.directory / self.relative_file if self.relative_file else team.base / "mcp.json"

    def files(self, team: Team) -> dict[Path, list[Agent]]:
        """Each file to write, with the agents whose servers go in it."""
        files: dict[Path, list[Agent]] = {}
        for agent in team.agents:
            files.setdefault(self.config_file(team, agent), []).append(agent)
        return files

    def entry(self, agent: Agent) -> dict[str, Any]:
        """The agent's server as an mcpServers entry."""
        return {"command": agent.command, "args": agent.args, "env": agent.env, **self.entry_fields}

    def start(self, team: Team, agent: Agent) -> str | None:
        """The command that starts the agent in its directory (None: the client is not a command)."""
        return None

    def machine_fields(self, team: Team, agent: Agent) -> dict[str, Any]:
        """Extra fields of the agent in the --json document."""
        return {"start": self.start(team, agent)}

    def render(self, team: Team) -> str:
        """What to paste: each agent's file content under a comment naming the file and the start command."""
        lines = [f"# orch-mcp for {self.title}: {team.summary}.", "# Put each block in the file named above it."]
        for agent in team.agents:
            lines += ["", f"# {agent.label}: {self.config_file(team, agent)}", f"#   then: {self.start(team, agent)}"]
            lines.append(self.file_text([agent]).rstrip("\n"))
        lines += ["", *(f"# {line}" for line in team.closing())]
        return "\n".join(lines)

    def file_text(self, agents: list[Agent]) -> str:
        """A new file holding these agents' servers."""
        return json_text({"mcpServers": {a.name: self.entry(a) for a in agents}})

    def merge(self, path: Path, old: str, agents: list[Agent]) -> str:
        """`old` (the file's current text) with our servers set and everything else kept."""
        try:
            document = json.loads(old)
        except ValueError as exc:
            raise ConfigError(f"cannot update {path}: it is not valid JSON ({exc}); fix or remove it") from None
        servers = document.get("mcpServers", {}) if isinstance(document, dict) else None
        if not isinstance(servers, dict):
            raise ConfigError(f"cannot update {path}: it is not a JSON object with an mcpServers object")
        servers.update({a.name: self.entry(a) for a in agents})
        document["mcpServers"] = servers
        return json_text(document)

    def after_write(self, team: Team, written: list[Path]) -> str:
        """What `--write` printed: the files, then the command to run in each directory."""
        lines = [f"wrote {path}" for path in written]
        starts = [(a, self.start(team, a)) for a in team.agents]
        if any(start for _, start in starts):
            lines += ["", "next, one terminal per agent:"]
            lines += [f"  {start}   # {a.label}" for a, start in starts if start]
        lines += ["", *self.write_notes(team), *team.closing()]
        return "\n".join(lines)

    def write_notes(self, team: Team) -> list[str]:
        """Anything the client asks on first start."""
        return []


class ClaudeCode(ClientFormat):
    """Claude Code: `claude mcp add` in each agent's directory (local scope), or its .mcp.json (project scope)."""

    def add_command(self, agent: Agent) -> list[str]:
        """`claude mcp add NAME -e K=V -- CMD ARGS` (the name first: -e takes several values)."""
        env = [word for key, value in agent.env.items() for word in ("-e", f"{key}={value}")]
        return ["claude", "mcp", "add", agent.name, *env, "--", agent.command, *agent.args]

    def start(self, team: Team, agent: Agent) -> str:
        return f"cd {shlex.quote(str(agent.directory))} && claude"

    def machine_fields(self, team: Team, agent: Agent) -> dict[str, Any]:
        return {**super().machine_fields(team, agent), "register": self.add_command(agent)}

    def render(self, team: Team) -> str:
        lines = [
            f"# orch-mcp for Claude Code: {team.summary}.",
            "# Run these lines (or pipe them to sh): `claude mcp add` registers a server for the directory",
            "# it runs in, so each agent sees only its own role's tools.",
        ]
        for agent in team.agents:
            where = shlex.quote(str(agent.directory))
            lines += ["", f"# {agent.label}", f"mkdir -p {where} && cd {where}", team.shell(*self.add_command(agent))]
        lines += ["", *(f"# {line}" for line in team.closing())]
        return "\n".join(lines)

    def write_notes(self, team: Team) -> list[str]:
        return ["Claude Code asks once, in each directory, to approve the server in .mcp.json: accept it."]


class CodexCli(ClientFormat):
    """Codex CLI: `[mcp_servers.NAME]` in <dir>/.codex/config.toml, read as that agent's CODEX_HOME."""

    def start(self, team: Team, agent: Agent) -> str:
        where = str(agent.directory)
        return f"cd {shlex.quote(where)} && CODEX_HOME={shlex.quote(where + '/.codex')} codex"

    def file_text(self, agents: list[Agent]) -> str:
        return "\n".join(self.table(a) for a in agents)

    def table(self, agent: Agent) -> str:
        """The agent's `[mcp_servers.NAME]` table."""
        return toml_tables.table(
            f"mcp_servers.{agent.name}",
            {"command": agent.command, "args": agent.args, "env": agent.env, "tool_timeout_sec": CODEX_TOOL_TIMEOUT_S},
        )

    def merge(self, path: Path, old: str, agents: list[Agent]) -> str:
        return toml_tables.replace_tables(path, old, {f"mcp_servers.{a.name}": self.table(a) for a in agents})

    def write_notes(self, team: Team) -> list[str]:
        return [
            "Each agent has its own Codex home (<dir>/.codex): log in once in each (CODEX_HOME=… codex login)",
            "or set OPENAI_API_KEY.",
        ]


class GeminiCli(ClientFormat):
    """Gemini CLI: `mcpServers` in <dir>/.gemini/settings.json (the project settings of that directory)."""

    def start(self, team: Team, agent: Agent) -> str:
        return f"cd {shlex.quote(str(agent.directory))} && gemini"

    def write_notes(self, team: Team) -> list[str]:
        return ["If Gemini CLI asks whether to trust a directory, trust it: it ignores an untrusted one's settings."]


class PlainJson(ClientFormat):
    """One `mcpServers` document for the whole team (Claude Desktop, `claude --mcp-config`, any client)."""

    def render(self, team: Team) -> str:
        return self.file_text(team.agents).rstrip("\n")

    def write_notes(self, team: Team) -> list[str]:
        return ["Give each agent's client only its own entry (Claude Desktop: claude_desktop_config.json)."]


CLIENTS: dict[str, ClientFormat] = {
    "claude": ClaudeCode("claude", "Claude Code", ".mcp.json", {"type": "stdio"}),
    "codex": CodexCli("codex", "Codex CLI", ".codex/config.toml"),
    "gemini": GeminiCli("gemini", "Gemini CLI", ".gemini/settings.json", {"timeout": GEMINI_TIMEOUT_MS}),
    "json": PlainJson("json", "any MCP client", ""),
}


def json_text(document: Any) -> str:
    """`document` indented by 2, with each list of plain values on one line (`"args": ["serve", "--role", …]`)."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    # A raw newline never occurs inside a JSON string, so "[\n" opens a list and ",\n" separates its items.
    text = FLAT_LIST.sub(lambda m: "[" + ", ".join(i.strip() for i in m.group(1).split(",\n")) + "]", text)
    return text + "\n"


def merge_file(team: Team, path: Path, agents: list[Agent]) -> str:
    """The new text of `path`: our servers merged into what it holds, or a new file."""
    try:
        old = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return team.client.file_text(agents)
    except UnicodeDecodeError:
        raise ConfigError(f"cannot update {path}: it is not UTF-8 text; fix or remove it") from None
    return team.client.merge(path, old, agents) if old.strip() else team.client.file_text(agents)


def write_file(path: Path, text: str, *, private: bool) -> None:
    """Replace `path` with `text` atomically, keeping an existing file's mode (a new one holding a password: 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o600 if private else 0o666  # less the umask
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        if path.exists():
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
