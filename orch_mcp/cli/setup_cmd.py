"""`orch-mcp setup CLIENT --children N`: the MCP client configuration of a whole team, printed or written.

One summoner, one moogle and N chocobos, each in its own directory (BASE/summoner, BASE/moogle,
BASE/chocobo-1 …), each running the absolute path of this `orch-mcp` against one Redis. The formats
of the clients (claude, codex, gemini, json) live in `setup_clients`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import DEFAULT_NAMESPACE, validate_url
from ..errors import OrchError
from ..sessions import MAX_CHILDREN_LIMIT
from ..utils import validate_identifier
from . import common
from .setup_clients import CLIENTS, Agent, Team, merge_file, write_file

PROG = "orch-mcp setup"
NAME_PREFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

EXAMPLES = """\
examples:
  orch-mcp setup claude --children 3                  `claude mcp add` lines, one per agent
  orch-mcp setup claude --children 3 --dir ~/agents --write
                                                      write ~/agents/<agent>/.mcp.json instead
  orch-mcp setup codex --children 2 --url redis://10.0.0.5:6379/0
  orch-mcp setup gemini --children 3 --write          write <agent>/.gemini/settings.json
  orch-mcp setup json --children 3 > mcp.json         one mcpServers document (Claude Desktop, any client)

Each agent gets its own directory (BASE/summoner, BASE/moogle, BASE/chocobo-1 …): start the agent
there, so that it sees only its own role's server."""


def build_parser() -> argparse.ArgumentParser:
    """The setup command line."""
    parser = common.make_parser(
        PROG,
        "Print (or write with --write) the MCP client configuration of a whole team: one summoner,\n"
        "one moogle and N chocobos, each in its own directory, all running this orch-mcp against one Redis.",
        EXAMPLES,
    )
    parser.add_argument("client", metavar="CLIENT", choices=list(CLIENTS), help="claude, codex, gemini or json")
    parser.add_argument(
        "--children",
        type=common.int_range(1, MAX_CHILDREN_LIMIT),
        default=3,
        metavar="N",
        help=f"number of chocobos (child ids 1..N), 1..{MAX_CHILDREN_LIMIT} (default: 3)",
    )
    parser.add_argument(
        "--dir",
        dest="base",
        default="./orch-agents",
        metavar="BASE",
        help="where the agents' directories are: BASE/summoner, BASE/moogle, BASE/chocobo-N (default: ./orch-agents)",
    )
    parser.add_argument(
        "--name-prefix", default="orch", metavar="P", help="MCP server names: P-summoner, P-moogle, P-chocobo-N"
    )
    parser.add_argument(
        "--session-id", metavar="ID", help="pin the agents to this session (default: the namespace's latest)"
    )
    parser.add_argument("--write", action="store_true", help="write the files where the client reads them")
    parser.add_argument("--json", action="store_true", help="print one JSON document for machines")
    common.add_connection_args(parser, namespace=True)
    return parser


def orch_mcp_command() -> list[str]:
    """How an MCP client starts this orch-mcp: the absolute path of the running console script if it is one.

    `python -m orch_mcp` gives this Python with `-m orch_mcp`; anything else (e.g. `main()` called in
    process) the `orch-mcp` next to this Python, else on PATH, else this Python with `-m orch_mcp`.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    name = os.path.basename(argv0).lower().removesuffix(".exe").removesuffix("-script.py")
    if name == "orch-mcp":
        found = argv0 if os.sep in argv0 else shutil.which(argv0)
        if found:
            return [os.path.abspath(found)]  # not realpath: a pipx/uv link stays valid across upgrades
    if not (name == "__main__.py" and os.path.basename(os.path.dirname(argv0)) == "orch_mcp"):
        for found in (shutil.which("orch-mcp", path=os.path.dirname(sys.executable)), shutil.which("orch-mcp")):
            if found:
                return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "orch_mcp"]


def build_team(args: argparse.Namespace) -> Team:
    """The team the arguments describe; OrchError or ValueError for a value that cannot be used."""
    if not args.name_prefix or not set(args.name_prefix) <= NAME_PREFIX_CHARS:
        raise ValueError(f"invalid --name-prefix {args.name_prefix!r}: use letters, digits, _ and -")
    if args.url is not None:
        validate_url(args.url, "--url")
    cfg = common.redis_config(args)
    where = urlsplit(cfg.redis_url)
    namespace = common.namespace(args)
    extra: list[str] = []
    if namespace != DEFAULT_NAMESPACE:
        extra += ["--namespace", namespace]
    if args.session_id is not None and args.session_id != "current":
        extra += ["--session-id", validate_identifier(args.session_id, "session id")]
    base = Path(os.path.abspath(os.path.expanduser(args.base)))
    command = orch_mcp_command()
    env = {"REDIS_URL": cfg.redis_url, **cfg.tls_env()}
    roles: list[tuple[str, int | None]] = [("summoner", None), ("moogle", None)]
    roles += [("chocobo", n) for n in range(1, args.children + 1)]
    agents = []
    for role, child in roles:
        suffix = role if child is None else f"{role}-{child}"
        role_args = ["--role", role] if child is None else ["--role", role, "--child-id", str(child)]
        agents.append(
            Agent(
                role=role,
                child_id=child,
                name=f"{args.name_prefix}-{suffix}",
                directory=base / suffix,
                command=command[0],
                args=[*command[1:], "serve", *role_args, *extra],
                env=env,
            )
        )
    return Team(
        client=CLIENTS[args.client],
        agents=agents,
        base=base,
        redis_display=cfg.display_url,
        orch_mcp=command,
        secret=cfg.display_url != cfg.redis_url,
        embedded_redis=where.scheme == "redis"
        and where.hostname in ("localhost", "127.0.0.1")
        and where.port in (None, 6379),
    )


def handle(args: argparse.Namespace) -> int:
    """Print or write the team's configuration."""
    try:
        team = build_team(args)
    except (OrchError, ValueError) as exc:
        return common.usage_error(PROG, str(exc))
    written: list[Path] = []
    if args.write:
        # Every file is merged before any is written: a file we cannot update safely leaves all of them untouched.
        updates = [(path, merge_file(team, path, agents)) for path, agents in team.client.files(team).items()]
        for path, text in updates:
            try:
                write_file(path, text, private=team.secret)
            except OSError as exc:
                done = f" (after writing {len(written)} of {len(updates)} files)" if written else ""
                return common.fail(f"cannot write {path}: {exc.strerror or exc}{done}")
            written.append(path)
    if args.json:
        common.print_json(json_document(team, written))
    elif args.write:
        print(team.client.after_write(team, written), flush=True)
    else:
        print(team.client.render(team), flush=True)
    if team.secret and not args.json:
        common.note(f"{PROG}: the configuration holds the Redis password in clear: keep it private")
    return common.EXIT_OK


def json_document(team: Team, written: list[Path]) -> dict[str, Any]:
    """The result for machines: every agent's server entry, the files (and whether they were written)."""
    client = team.client
    return {
        "client": client.name,
        "children": team.children,
        "redis": team.redis_display,
        "orch_mcp": team.orch_mcp,
        "base_dir": str(team.base),
        "agents": [
            {
                "role": a.role,
                "child_id": a.child_id,
                "name": a.name,
                "dir": str(a.directory),
                "command": a.command,
                "args": a.args,
                "env": a.env,
                "config_file": str(client.config_file(team, a)),
                **client.machine_fields(team, a),
            }
            for a in team.agents
        ],
        "written": [str(p) for p in written],
    }


def main(argv: list[str] | None = None) -> int:
    """`orch-mcp setup`."""
    return common.run(build_parser(), handle, argv)


if __name__ == "__main__":
    raise SystemExit(main())
