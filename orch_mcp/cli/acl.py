"""`orch-mcp acl SESSION [--apply] [--json]`: print (and create) the per-role Redis ACL users of a session."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

import anyio

from .. import acl
from ..acl import AclUser
from ..config import RedisConfig
from ..errors import NoSessionError
from ..redis_client import create_async_client
from ..redis_failures import redis_errors
from ..sessions import SessionConfig, resolve_session
from ..topology import Server
from ..urls import topology
from . import common

EPILOG = """\
Passwords are new random ones (unless given with --user-password) and printed once: keep them. A re-run with
--apply resets the users to the printed rules and passwords, so restart the servers with the new configuration
(or pass the old passwords with --user-password). Per-role users need Redis 7.0 or newer.

examples:
  orch-mcp acl --only summoner --apply          the namespace's summoner, before any session exists
  orch-mcp acl current --apply                  the summoner, the moogle and each chocobo of the current session
  orch-mcp acl 1f58d6a8361044958f3aca2a14a586a6 --only session --apply --json"""


def _label_password(text: str) -> tuple[str, str]:
    label, sep, password = text.partition("=")
    if not sep or not label or not password:
        raise argparse.ArgumentTypeError(f"{text.split('=')[0]!r}=… expected: LABEL=PASSWORD, e.g. chocobo-1=s3cret")
    return label, password


def build_parser() -> argparse.ArgumentParser:
    """The acl command line."""
    parser = common.make_parser(
        "orch-mcp acl",
        "Print the Redis ACL users of one session, one per role (the summoner, the moogle, chocobo 1..N), each "
        "limited to the keys, commands and channels its tools need, with the configuration its `orch-mcp serve` "
        "needs; --apply creates them (ACL SETUSER).",
        EPILOG,
    )
    parser.add_argument(
        "session",
        nargs="?",
        metavar="SESSION",
        help="the session: its id, its prefix, or 'current' (not needed with --only summoner)",
    )
    parser.add_argument(
        "--only",
        choices=("summoner", "session"),
        help="only the namespace's summoner user, or only the session's users (moogle and chocobos)",
    )
    parser.add_argument("--apply", action="store_true", help="create or reset the users on Redis (Redis >= 7.0)")
    parser.add_argument(
        "--user-password",
        action="append",
        type=_label_password,
        default=[],
        metavar="LABEL=PASSWORD",
        help="a user's password instead of a new one; LABEL is summoner, moogle or chocobo-N (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    common.add_connection_args(parser, namespace=True)
    return parser


def serve_env(
    base: RedisConfig, user: AclUser, password: str, namespace: str, session: SessionConfig | None
) -> dict[str, str]:
    """The environment of this role's `orch-mcp serve`: its user in REDIS_URL (and the TLS settings), its identity,
    its session's prefix."""
    env = {"REDIS_URL": base.with_credentials(user.name, password).redis_url, **base.tls_env()}
    env["ORCH_NAMESPACE"] = namespace
    env["ORCH_ROLE"] = user.role
    if session is not None and user.role != "summoner":
        env["ORCH_SESSION_ID"] = session.prefix  # found by prefix: the session index is not this user's to read
    if user.child_id is not None:
        env["ORCH_CHILD_ID"] = str(user.child_id)
    return env


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = common.redis_config(args)
    namespace = common.namespace(args)
    kind = topology(cfg.redis_url)
    cluster = kind == "cluster"  # the users also get what redis-py's cluster client runs on its own
    client = create_async_client(cfg)
    applied: list[Server] = []
    try:
        with redis_errors(cfg):
            session = None
            if args.only != "summoner":
                session = await resolve_session(client, namespace, args.session)
            users = [] if args.only == "session" else [acl.summoner_user(namespace, cluster=cluster)]
            users += acl.session_users(session, cluster=cluster) if session is not None else []
            secrets_ = acl.passwords(users, dict(args.user_password))
            if args.apply:
                applied = await acl.apply(cfg, client, users, secrets_)
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
    return {
        "namespace": namespace,
        "session_id": session.session_id if session else None,
        "prefix": session.prefix if session else None,
        "mode": session.mode if session else None,
        "redis": cfg.display_url,
        "topology": kind,
        "applied": bool(args.apply),
        "applied_on": [{"address": s.address, "role": s.role} for s in applied],
        "users": [
            {
                "role": u.role,
                "child_id": u.child_id,
                "label": u.label,
                "username": u.name,
                "password": secrets_[u.label],
                "rules": list(u.rules),
                "env": serve_env(cfg, u, secrets_[u.label], namespace, session),
            }
            for u in users
        ],
    }


def render(doc: dict[str, Any]) -> str:
    """The users for people: each role's user, password, rules and serve command."""
    where = f"session {doc['session_id']} ({doc['mode']} mode)" if doc["session_id"] else "the namespace"
    kind = {"single": "Redis", "cluster": "the Redis Cluster", "sentinel": "the Sentinel-watched Redis"}[
        doc["topology"]
    ]
    if not doc["applied"]:
        state = f"NOT created yet (run again with --apply) on {kind} at {doc['redis']}"
    elif doc["topology"] == "single":
        state = f"created on Redis at {doc['redis']}"
    else:
        nodes = doc["applied_on"]
        roles = ", ".join(f"{n['address']} ({n['role']})" for n in nodes)
        state = (
            f"created on each of the {len(nodes)} servers of {kind} at {doc['redis']}: {roles} (ACL users are per "
            "server: run --apply again after adding a node)"
        )
    lines = [f"ACL users of {where}, namespace {doc['namespace']}: {state}", ""]
    for user in doc["users"]:
        env = " ".join(f"{name}={shlex.quote(value)}" for name, value in user["env"].items())
        lines += [
            f"{user['label']}: user {user['username']}  password {user['password']}",
            f"  rules: {' '.join(user['rules'])}",
            f"  serve: {env} orch-mcp serve",
            "",
        ]
    lines.append(
        "The passwords are shown once: store them (the MCP client config of each agent gets its role's env). "
        "Or set REDIS_USERNAME and REDIS_PASSWORD instead of the user in REDIS_URL."
    )
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> int:
    """Compute, apply if asked, print."""
    if args.only != "summoner" and not args.session:
        return common.usage_error(
            "orch-mcp acl", "name the session (its id, prefix or 'current'), or pass --only summoner"
        )
    try:
        doc = anyio.run(_run, args)
    except acl.UnknownUserError as exc:
        return common.usage_error("orch-mcp acl", str(exc))
    except NoSessionError as exc:
        return common.fail(
            f"{exc.situation}: create one first (the summoner's init_session, or `orch-mcp init`), then run "
            "`orch-mcp acl SESSION` (`orch-mcp acl --only summoner --apply` makes the summoner's user before any "
            "session)"
        )
    if args.json:
        common.print_json(doc)
    else:
        print(render(doc), flush=True)
    return common.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`orch-mcp acl`."""
    return common.run(build_parser(), handle, argv)


if __name__ == "__main__":
    raise SystemExit(main())
