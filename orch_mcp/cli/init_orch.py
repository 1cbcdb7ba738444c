"""Create, show, list or clean up orchestration sessions.

python -m orch_mcp.cli.init_orch                                  # normal mode
python -m orch_mcp.cli.init_orch --max-children 5 --prefix "myproject"
python -m orch_mcp.cli.init_orch --summoner-mode --max-children 3
python -m orch_mcp.cli.init_orch --summoner-mode --json
python -m orch_mcp.cli.init_orch get --session-id abc123
python -m orch_mcp.cli.init_orch cleanup --session-id abc123
"""

from __future__ import annotations

import argparse

from .. import orchestration, sessions
from ..sessions import MAX_CHILDREN_LIMIT, SessionConfig
from ..sync import SyncBridge
from . import common

EXAMPLES = """examples:
  %(prog)s                                      create a normal-mode session
  %(prog)s --max-children 5 --prefix myproject  prefix {myproject-<n>}
  %(prog)s --summoner-mode --max-children 3     create a summoner-mode session
  %(prog)s --summoner-mode --json               print it as JSON
  %(prog)s get --session-id abc123              show a session (or: get --prefix myproject-001)
  %(prog)s list                                 the live sessions of the namespace
  %(prog)s cleanup --session-id abc123          remove every key of a session"""


def _add_output_args(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: object = argparse.SUPPRESS if suppress else False
    parser.add_argument("--json", action="store_true", default=default, help="print the result as one JSON document")
    common.add_connection_args(parser, namespace=True, suppress=suppress)


def _add_which_args(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--session-id", metavar="ID", default=argparse.SUPPRESS, help="the session's id")
    which.add_argument(
        "--prefix",
        metavar="PREFIX",
        default=argparse.SUPPRESS,
        help="the session's prefix, e.g. myproject-host-001 (normal mode)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The init_orch command line (create by default; get, list and cleanup subcommands)."""
    prog = common.prog_name("init", "orch_mcp.cli.init_orch")
    parser = common.make_parser(
        prog,
        "Create an orchestration session (no subcommand), or show, list or remove sessions.",
        EXAMPLES.replace("%(prog)s", prog),
    )
    # argparse would show the subcommand as required; without one, init creates a session.
    create, manage = f"{prog} [options]", f"{prog} {{get,list,cleanup}} [options]"
    parser.usage = f"{create:<{len(manage)}}   create a session\n       {manage}   show, list or remove sessions"
    parser.add_argument(
        "--summoner-mode",
        action="store_true",
        help="summoner mode: uuid session id, one shared report queue, a monitor channel",
    )
    parser.add_argument(
        "--max-children",
        type=common.int_range(1, MAX_CHILDREN_LIMIT),
        default=3,
        metavar="N",
        help=f"number of child agents, 1..{MAX_CHILDREN_LIMIT} (default: 3)",
    )
    parser.add_argument(
        "--prefix", metavar="PROJECT", help="normal mode: prefix {PROJECT-<seq>} (default PROJECT: <namespace>-<host>)"
    )
    parser.add_argument("--session-id", metavar="ID", help="summoner mode: use this session id instead of a new uuid")
    parser.add_argument(
        "--ttl",
        type=common.int_range(1),
        metavar="SECONDS",
        help="lifetime of an idle session (default: REDIS_TTL or 3600)",
    )
    _add_output_args(parser, suppress=False)
    sub = parser.add_subparsers(
        dest="command",
        metavar="{get,list,cleanup}",
        title="subcommands (optional: without one, init creates a session)",
    )
    get = sub.add_parser("get", help="show a session", description="Show a session's configuration.")
    _add_which_args(get)
    _add_output_args(get, suppress=True)
    listing = sub.add_parser(
        "list",
        help="list the live sessions of the namespace",
        description="List the live sessions of the namespace, oldest first.",
    )
    _add_output_args(listing, suppress=True)
    cleanup = sub.add_parser(
        "cleanup",
        help="remove every key of a session",
        description="Remove every key of a session and its index entry.",
    )
    _add_which_args(cleanup)
    _add_output_args(cleanup, suppress=True)
    for child in (get, listing, cleanup):
        child.prog = f"{prog} {child.prog.rsplit(' ', 1)[-1]}"
    return parser


def _show(session: SessionConfig, args: argparse.Namespace, heading: str, *, created: bool) -> None:
    if args.json:
        common.print_json(session.to_dict())
        return
    print(common.session_text(session, heading))
    if created:
        print()
        print(common.next_steps(session))


def create(args: argparse.Namespace) -> int:
    """Create a session in the mode asked for."""
    cfg = common.redis_config(args)
    ns = common.namespace(args)
    if args.summoner_mode:
        if args.prefix:
            return _usage("--prefix applies to normal mode only; summoner prefixes are summoner:{<session id>}")
        session = orchestration.initialize_summoner_orchestration(
            max_children=args.max_children, session_id=args.session_id, ttl=args.ttl, namespace=ns, redis_config=cfg
        )
    else:
        if args.session_id:
            return _usage("--session-id applies to --summoner-mode only; normal-mode ids are <unix ms>-<pid>")
        session = orchestration.initialize_orchestration(
            prefix=args.prefix, max_children=args.max_children, ttl=args.ttl, namespace=ns, redis_config=cfg
        )
    _show(session, args, f"created session {session.session_id}", created=True)
    return common.EXIT_OK


def _usage(message: str) -> int:
    return common.usage_error(common.prog_name("init", "orch_mcp.cli.init_orch"), message)


def get(args: argparse.Namespace) -> int:
    """Show one session."""
    session = orchestration.get_config(
        session_id=getattr(args, "session_id", None),
        prefix=getattr(args, "prefix", None),
        namespace=common.namespace(args),
        redis_config=common.redis_config(args),
    )
    _show(session, args, f"session {session.session_id}", created=False)
    return common.EXIT_OK


def list_all(args: argparse.Namespace) -> int:
    """List the namespace's live sessions."""
    ns = common.namespace(args)
    with SyncBridge(common.redis_config(args)) as bridge:
        found = bridge.call_with_client(sessions.list_sessions, namespace=ns)
    if args.json:
        common.print_json({"namespace": ns, "sessions": [s.to_dict() for s in found]})
    elif not found:
        print(f"no live sessions in namespace {ns}")
    else:
        print(f"{'SESSION ID':<34} {'MODE':<9} {'CHILDREN':>8}  {'PREFIX':<46} CREATED")
        for s in found:
            print(f"{s.session_id:<34} {s.mode:<9} {s.max_children:>8}  {s.prefix:<46} {s.created_at}")
    return common.EXIT_OK


def cleanup(args: argparse.Namespace) -> int:
    """Remove a session."""
    result = orchestration.cleanup_session(
        session_id=getattr(args, "session_id", None),
        prefix=getattr(args, "prefix", None),
        namespace=common.namespace(args),
        redis_config=common.redis_config(args),
    )
    if args.json:
        common.print_json(result.model_dump(mode="json"))
    else:
        count = len(result.removed_keys)
        print(f"removed session {result.session_id} ({result.prefix}): {count} key{'' if count == 1 else 's'}")
    return common.EXIT_OK


def handle(args: argparse.Namespace) -> int:
    """Dispatch on the subcommand (none: create)."""
    return {"get": get, "list": list_all, "cleanup": cleanup}.get(args.command, create)(args)


def main(argv: list[str] | None = None) -> int:
    """`python -m orch_mcp.cli.init_orch` / `orch-mcp init`."""
    return common.run(build_parser(), handle, argv)


if __name__ == "__main__":
    raise SystemExit(main())
