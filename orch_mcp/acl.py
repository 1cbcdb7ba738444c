"""Per-role Redis ACL users (Redis >= 7.0): the rules of the summoner, the moogle and each chocobo, and applying them.

Every key pattern comes from orch_mcp.keys. A role's rules list the commands its tools run (directly, and inside
the transition scripts, whose commands Redis checks one by one) and the keys and channels they touch:

- summoner: namespace-wide; the namespace keys (`<ns>:*`), every summoner-mode session (`summoner:{*}:*`: those
  prefixes do not carry the namespace) and the normal-mode sessions of the namespace's default project
  (`{<ns>-*}:*`), and their monitor channels. It creates sessions, so its user exists before any session does.
- moogle: every key of its session (`<prefix>:*`) and its monitor channel; of the namespace only its session's
  tombstone (`<ns>:cleaned:<id>`, read-only). It finds its session by prefix (ORCH_SESSION_ID=<prefix>).
- chocobo n: its own queue, in-flight list, records hash, presence and report list; the session's bookkeeping
  its scripts write (task_child, counts, last_seen, stopped, leases, status stream, dead letters) and its report
  path (summoner mode: the shared report list and the monitor channel; normal mode: its own list and the
  doorbell); the session config and its tombstone read-only. Redis asks for read and write access to every key
  passed to a script (EVALSHA), so a selector allows EVALSHA over the keys its scripts are given, while the
  commands inside the scripts are checked against the root rules, where the config is read-only.

On a Redis Cluster every user also gets what redis-py's cluster client runs on its own (CLUSTER_CLIENT), and the
users are created on every node; behind Sentinel on the master and every replica (ACL users are per server).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .config import RedisConfig
from .delivery import scripts, scripts_recovery
from .delivery.lua import Transition
from .delivery.reaper import LOCK as REAPER_LOCK
from .errors import ConfigError
from .keys import NamespaceKeys, normal_sessions_pattern, summoner_sessions_pattern
from .redis_client import Redis, create_async_client
from .redis_failures import redis_errors
from .sessions import SessionConfig
from .topology import Server, servers

AclRole = Literal["summoner", "moogle", "chocobo"]
MIN_REDIS = (7, 0)

#: What redis-py sends on a connection: AUTH/HELLO, SELECT for a db, PING (health checks). (It also tries CLIENT
#: SETINFO, Redis 7.2+, and goes on if refused.)
CONNECTION = ("auth", "hello", "select", "ping", "quit", "reset")
#: What redis-py's cluster client runs on its own (redis/cluster.py, redis/asyncio/cluster.py): CLUSTER SLOTS when it
#: starts and after a MOVED or a lost node; COMMAND when it starts (its table of where each command's keys are), and
#: COMMAND GETKEYS for a command whose keys move (XREAD); ASKING before a command redirected by ASK while a slot
#: migrates. (READONLY only when reading from replicas, which ours does not.)
CLUSTER_CLIENT = ("cluster|slots", "command", "asking")
#: How redis-py runs a registered script (EVALSHA, and SCRIPT LOAD after NOSCRIPT).
SCRIPTING = ("evalsha", "script|load")
#: What the chocobo's server runs outside its scripts.
CHILD_DIRECT = ("get", "exists", "expire", "llen", "lrange", "lindex", "blmove")
#: What the moogle's server runs outside the scripts (waits, status, listings, the reaper, the session refresh).
PARENT_DIRECT = (
    *CHILD_DIRECT,
    "lmove",
    "lrem",
    "hget",
    "hmget",
    "hgetall",
    "hscan",
    "zrangebyscore",
    "zrem",
    "xrevrange",
    "time",
    "multi",
    "exec",
    "discard",
    "ttl",  # TTL and XREAD: what `orch-mcp status` and `orch-mcp watch` read, so this user can run them too
    "xread",
)
#: What the summoner runs besides: create, list and remove sessions.
SUMMONER_DIRECT = (*PARENT_DIRECT, "set", "hset", "hdel", "incrby", "unlink")

#: The scripts a chocobo runs (take, claim, report, heartbeat, shutdown, dead letters, presence).
CHILD_SCRIPTS: tuple[Transition, ...] = (
    scripts.TRY_TAKE,
    scripts.CLAIM,
    scripts.STOPPED,
    scripts.REPORT,
    scripts.HEARTBEAT,
    scripts.DEAD,
    scripts_recovery.PRESENCE,
    scripts_recovery.RELEASE,
)
#: Every script (the moogle and the summoner run the parent's and the reaper's too).
ALL_SCRIPTS: tuple[Transition, ...] = (
    *CHILD_SCRIPTS,
    scripts.SEND,
    scripts.SHUTDOWN,
    scripts.CANCEL,
    scripts.MOVE_REPORT,
    scripts_recovery.RESTORE_REPORT,
    scripts_recovery.REAP_ABSENT,
    scripts_recovery.REAP_DEADLINE,
    scripts_recovery.REQUEUE,
    REAPER_LOCK,
)

_CALL = re.compile(r"redis\.call\('([A-Z]+)'")
#: A helper of the shared Lua text: `local function name(...)` up to its `end` at the start of a line.
_FUNCTION = re.compile(r"^local function (\w+)\(.*?^end$", re.S | re.M)


def _called(text: str) -> set[str]:
    """The commands a script runs: its own, and those of the helpers it calls (directly or through others)."""
    helpers = {m.group(1): m.group(0) for m in _FUNCTION.finditer(text)}
    todo, used = [_FUNCTION.sub("", text)], set[str]()
    found = set(_CALL.findall(todo[0]))
    while todo:
        chunk = todo.pop()
        for name, body in helpers.items():
            if name not in used and re.search(rf"\b{name}\(", chunk):
                used.add(name)
                todo.append(body)
                found |= set(_CALL.findall(body))
    return found


def script_commands(transitions: Iterable[Transition]) -> tuple[str, ...]:
    """The commands the scripts run (read from their text, so the rules follow the scripts)."""
    return tuple(sorted({name.lower() for t in transitions for name in _called(t.text)}))


@dataclass(frozen=True)
class AclUser:
    """One role's Redis user: its name and its ACL rules (without the password)."""

    role: AclRole
    name: str
    rules: tuple[str, ...]
    child_id: int | None = None

    @property
    def label(self) -> str:
        """`summoner`, `moogle`, `chocobo-2`: the name `--user-password LABEL=…` uses."""
        return self.role if self.child_id is None else f"{self.role}-{self.child_id}"

    def setuser_args(self, password: str) -> list[str]:
        """ACL SETUSER's arguments: everything reset first, so a re-run leaves exactly these rules."""
        return ["ACL", "SETUSER", self.name, "reset", "on", f">{password}", *self.rules]


def _commands(*groups: Iterable[str]) -> list[str]:
    names = sorted({name for group in groups for name in group})
    return ["-@all", *(f"+{name}" for name in names)]


def _keys(patterns: Iterable[str], *, read_only: bool = False) -> list[str]:
    mark = "%R~" if read_only else "~"
    return [mark + p for p in dict.fromkeys(patterns)]


def username(namespace: str, role: AclRole, session_id: str | None = None, child_id: int | None = None) -> str:
    """`<ns>.summoner`, `<ns>.<session id>.moogle`, `<ns>.<session id>.chocobo.<n>`."""
    parts = [namespace, *([session_id] if session_id else []), role, *([str(child_id)] if child_id else [])]
    return ".".join(parts)


def _client(cluster: bool) -> tuple[str, ...]:
    return CLUSTER_CLIENT if cluster else ()


def summoner_user(namespace: str, *, cluster: bool = False) -> AclUser:
    """The namespace's summoner: every session of the namespace, and the namespace's keys (`cluster`: on a cluster)."""
    summoner, normal = summoner_sessions_pattern(), normal_sessions_pattern(namespace)
    rules = [
        "resetkeys",
        "resetchannels",
        *_commands(CONNECTION, SCRIPTING, SUMMONER_DIRECT, script_commands(ALL_SCRIPTS), _client(cluster)),
        *_keys([NamespaceKeys(namespace).pattern, summoner.pattern, normal.pattern]),
        f"&{summoner.monitor}",
    ]
    return AclUser("summoner", username(namespace, "summoner"), tuple(rules))


def moogle_user(cfg: SessionConfig, *, cluster: bool = False) -> AclUser:
    """The session's moogle: every key of the session, its tombstone read-only."""
    rules = [
        "resetkeys",
        "resetchannels",
        *_commands(CONNECTION, SCRIPTING, PARENT_DIRECT, script_commands(ALL_SCRIPTS), _client(cluster)),
        *_keys([cfg.keys.pattern]),
        *_keys([NamespaceKeys(cfg.namespace).cleaned(cfg.session_id)], read_only=True),
        *([f"&{cfg.monitor_channel}"] if cfg.monitor_channel else []),
    ]
    return AclUser("moogle", username(cfg.namespace, "moogle", cfg.session_id), tuple(rules))


def chocobo_user(cfg: SessionConfig, child_id: int, *, cluster: bool = False) -> AclUser:
    """Chocobo `child_id`: its own keys, the bookkeeping its scripts write, its report path; the config read-only."""
    k = cfg.keys
    own = [k.tasks(child_id), k.inflight(child_id), k.records(child_id), k.presence(child_id)]
    own.append(k.child_reports(child_id))  # its report list (normal mode); its refresh renews it in both modes
    shared = [k.task_child, k.counts, k.last_seen, k.stopped, k.leases, k.status, k.dead]
    path = [k.reports] if cfg.mode == "summoner" else [k.doorbell]
    # Every key its scripts are given (Redis wants read and write on each): allowed by the selector for EVALSHA.
    given = [*own, *shared, k.reports, k.doorbell, k.config]
    selector = " ".join(["+evalsha", *_keys(given)])
    rules = [
        "resetkeys",
        "resetchannels",
        *_commands(CONNECTION, SCRIPTING, CHILD_DIRECT, script_commands(CHILD_SCRIPTS), _client(cluster)),
        *_keys([*own, *shared, *path]),
        *_keys([k.config, NamespaceKeys(cfg.namespace).cleaned(cfg.session_id)], read_only=True),
        *([f"&{cfg.monitor_channel}"] if cfg.monitor_channel else []),
        f"({selector})",
    ]
    return AclUser("chocobo", username(cfg.namespace, "chocobo", cfg.session_id, child_id), tuple(rules), child_id)


def session_users(cfg: SessionConfig, *, cluster: bool = False) -> list[AclUser]:
    """The session's moogle and chocobos 1..max_children."""
    return [moogle_user(cfg, cluster=cluster), *(chocobo_user(cfg, n, cluster=cluster) for n in cfg.child_ids)]


def labels(users: Sequence[AclUser]) -> list[str]:
    """The users' labels, for messages."""
    return [u.label for u in users]


class UnknownUserError(ConfigError):
    """A password was given for a user label that is not one of these users."""


def passwords(users: Sequence[AclUser], given: dict[str, str]) -> dict[str, str]:
    """Each user's password: the one given for its label, else a new random one; ConfigError for an unknown label."""
    known = {u.label for u in users}
    if unknown := sorted(set(given) - known):
        raise UnknownUserError(f"no user {', '.join(unknown)} here: give passwords for {', '.join(labels(users))}")
    return {u.label: given.get(u.label) or secrets.token_urlsafe(24) for u in users}


async def server_version(r: Redis) -> tuple[int, int, str]:
    """The server's (major, minor, version text), from INFO server."""
    info = cast("dict[str, object]", await r.info("server"))
    text = str(info.get("redis_version", "0.0"))
    parts = [int(p) if p.isdigit() else 0 for p in text.split(".")[:2]] + [0, 0]
    return parts[0], parts[1], text


async def _require_redis_7(r: Redis, where: str) -> None:
    major, minor, text = await server_version(r)
    if (major, minor) < MIN_REDIS:
        raise ConfigError(
            f"Redis {text}{where} has no per-role ACL users (read-only key patterns and selectors need Redis 7.0 or "
            "newer): run Redis 7 (e.g. `docker compose up -d`) to use `orch-mcp acl --apply`"
        )


async def apply(cfg: RedisConfig, r: Redis, users: Sequence[AclUser], secrets_: dict[str, str]) -> list[Server]:
    """Create or reset the users (ACL SETUSER) on every server `cfg` names (`r`: its client), after checking that
    each is Redis >= 7.0; the servers they were created on."""
    targets = await servers(cfg, r)
    if len(targets) == 1 and targets[0].config is cfg:  # one server: the client at hand
        await _require_redis_7(r, "")
        for user in users:
            await r.execute_command(*user.setuser_args(secrets_[user.label]))
        return targets
    clients = [create_async_client(s.config) for s in targets]
    try:
        for server, client in zip(targets, clients, strict=True):  # every node is checked before any user is made
            with redis_errors(server.config):
                try:
                    await _require_redis_7(client, f" on {server.role} {server.address}")
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    raise ConfigError(
                        f"{server.role} {server.address} does not answer ({exc}), and ACL users are per server: "
                        "bring it back (or remove it from the setup), then run `orch-mcp acl --apply` again"
                    ) from exc
        for server, client in zip(targets, clients, strict=True):
            with redis_errors(server.config):
                for user in users:
                    await client.execute_command(*user.setuser_args(secrets_[user.label]))
    finally:
        for client in clients:
            await client.aclose()
    return targets
