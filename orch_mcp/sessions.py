"""Session operations (plain async functions taking the Redis client): create, find, list, refresh, remove.

A session named by a caller (an id, a prefix, 'current') is found by `resolve_session`, the one resolver;
`load_session` and `current_session` are its building blocks.
"""

from __future__ import annotations

import os
import time
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, ValidationError, computed_field

from .errors import ConflictError, InvalidIdentifierError, NoSessionError, NotFoundError
from .keys import NamespaceKeys, SessionKeys, normal_prefix, summoner_prefix
from .redis_client import Redis
from .utils import iso_now, new_id, short_hostname, unix_ms, validate_child_id, validate_identifier

Mode = Literal["summoner", "normal"]
MODES: tuple[Mode, ...] = ("summoner", "normal")
MAX_CHILDREN_LIMIT = 1000
#: The longest a session may live without activity.
MAX_TTL_S = 30 * 24 * 3600

# A session's keys get their TTL renewed at most this often per process (and always by the writes themselves).
TOUCH_INTERVAL_S = 5.0
_last_touch: dict[str, float] = {}
_last_id_ms = 0


def _normal_session_id() -> str:
    """`<unix ms>-<pid>`, the ms made strictly increasing within this process so two ids never collide."""
    global _last_id_ms
    _last_id_ms = max(unix_ms(), _last_id_ms + 1)
    return f"{_last_id_ms}-{os.getpid()}"


class SessionConfig(BaseModel):
    """A session as stored in Redis (`<prefix>:config`), with the names of its queues and channels."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    mode: Mode
    prefix: str
    namespace: str
    max_children: int
    ttl_s: int
    created_at: str

    @property
    def keys(self) -> SessionKeys:
        """The session's key names."""
        return SessionKeys(self.prefix)

    @property
    def name(self) -> str:
        """The prefix without its hash-tag braces (`myproject-host-001`, or the uuid in summoner mode)."""
        return self.prefix.rsplit("{", 1)[-1].rstrip("}")

    @property
    def child_ids(self) -> range:
        """The valid child ids, 1..max_children."""
        return range(1, self.max_children + 1)

    def report_queue(self, child_id: int) -> str:
        """Where child `child_id` queues its reports: the shared queue (summoner) or its own (normal)."""
        return self.keys.reports if self.mode == "summoner" else self.keys.child_reports(child_id)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def task_queues(self) -> dict[str, str]:
        """Child id -> its task queue."""
        return {str(n): self.keys.tasks(n) for n in self.child_ids}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def report_queues(self) -> dict[str, str]:
        """Child id -> the queue its reports go to (one shared queue in summoner mode)."""
        return {str(n): self.report_queue(n) for n in self.child_ids}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def monitor_channel(self) -> str | None:
        """The pub/sub channel mirroring state changes (summoner mode only)."""
        return self.keys.monitor if self.mode == "summoner" else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status_stream(self) -> str:
        """The stream of state changes."""
        return self.keys.status

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dead_letters(self) -> str:
        """The list malformed messages are moved to."""
        return self.keys.dead

    def to_dict(self) -> dict[str, object]:
        """The session as a JSON-compatible dict, names included."""
        return self.model_dump(mode="json")


class CleanupResult(BaseModel):
    """What cleanup_session removed."""

    session_id: str
    prefix: str
    removed_keys: list[str]


def _validate_shape(mode: str, max_children: int, ttl_s: int) -> None:
    if mode not in MODES:
        raise InvalidIdentifierError(f"unknown mode {mode!r}: use 'summoner' or 'normal'")
    if (
        isinstance(max_children, bool)
        or not isinstance(max_children, int)
        or not 1 <= max_children <= MAX_CHILDREN_LIMIT
    ):
        raise InvalidIdentifierError(f"max_children must be between 1 and {MAX_CHILDREN_LIMIT}, got {max_children!r}")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= MAX_TTL_S:
        raise InvalidIdentifierError(f"ttl_s must be between 1 and {MAX_TTL_S} seconds (30 days), got {ttl_s!r}")


async def init_session(
    r: Redis,
    *,
    namespace: str,
    mode: Mode = "summoner",
    max_children: int = 3,
    ttl_s: int = 3600,
    prefix: str | None = None,
    session_id: str | None = None,
) -> SessionConfig:
    """Create a session, index it in the namespace and make it the namespace's current one."""
    validate_identifier(namespace, "namespace")
    _validate_shape(mode, max_children, ttl_s)
    ns = NamespaceKeys(namespace)
    if mode == "summoner":
        sid = validate_identifier(session_id, "session id") if session_id else new_id()
        full_prefix = summoner_prefix(sid)
    else:
        sid = validate_identifier(session_id, "session id") if session_id else _normal_session_id()
        if session_id:
            taken = await r.hget(ns.sessions, sid)
            if taken and await r.exists(SessionKeys(taken).config):
                raise ConflictError(f"session {sid!r} already exists; omit session_id to get a fresh one")
        base = validate_identifier(prefix, "prefix") if prefix else f"{namespace}-{short_hostname()}"
        seq = await r.incr(ns.seq(base))
        full_prefix = normal_prefix(f"{base}-{seq:03d}")
    cfg = SessionConfig(
        session_id=sid,
        mode=mode,
        prefix=full_prefix,
        namespace=namespace,
        max_children=max_children,
        ttl_s=ttl_s,
        created_at=iso_now(),
    )
    stored = cfg.model_dump_json(exclude=set(_NAMES))
    if not await r.set(cfg.keys.config, stored, ex=ttl_s, nx=True):
        raise ConflictError(f"session {sid!r} already exists; omit session_id to get a fresh one")
    async with r.pipeline(transaction=False) as pipe:
        pipe.hset(ns.sessions, sid, full_prefix)
        pipe.set(ns.current, sid)
        pipe.delete(ns.cleaned(sid))  # a session id used again: its old tombstone no longer applies
        await pipe.execute()
    _last_touch[cfg.prefix] = time.monotonic()
    return cfg


_NAMES = ("task_queues", "report_queues", "monitor_channel", "status_stream", "dead_letters")


def _parse_config(text: str, where: str) -> SessionConfig:
    try:
        return SessionConfig.model_validate_json(text)
    except ValidationError as exc:
        raise NotFoundError(
            f"the session config at {where} is unreadable ({exc.error_count()} errors); remove it"
        ) from None


def _prefix_from_name(name: str) -> str:
    """Accept a full prefix (`{x}`, `summoner:{x}`) or its bare name (`x`)."""
    if name.endswith("}") and "{" in name:
        inner = name.rsplit("{", 1)[-1][:-1]
        validate_identifier(inner, "prefix")
        head = name[: -len(inner) - 2]
        if head not in ("", "summoner:"):
            raise InvalidIdentifierError(f"invalid prefix {name!r}: expected '{{name}}' or 'summoner:{{id}}'")
        return name
    return normal_prefix(validate_identifier(name, "prefix"))


async def load_session(
    r: Redis, *, namespace: str, session_id: str | None = None, prefix: str | None = None
) -> SessionConfig:
    """Find a session by id (through the namespace index) or by prefix; NotFoundError if it is gone."""
    ns = NamespaceKeys(validate_identifier(namespace, "namespace"))
    if prefix:
        full = _prefix_from_name(prefix)
        text = await r.get(SessionKeys(full).config)
        if text is None:
            raise NotFoundError(
                f"no session with prefix {prefix!r} (it may have expired); list them with list_sessions"
            )
        return _own(_parse_config(text, SessionKeys(full).config), namespace, prefix)
    if not session_id:
        raise InvalidIdentifierError("give a session_id or a prefix")
    validate_identifier(session_id, "session id")
    full_prefix = await r.hget(ns.sessions, session_id)
    text = None if full_prefix is None else await r.get(SessionKeys(full_prefix).config)
    if full_prefix is not None and text is None:
        await r.hdel(ns.sessions, session_id)
    if full_prefix is None or text is None:
        raise NotFoundError(
            f"session {session_id!r} not found in namespace {namespace!r} (it may have expired or been cleaned up); "
            "list the live ones (list_sessions, or `orch-mcp init list`) "
            "or create one (init_session, or `orch-mcp init`)"
        )
    return _own(_parse_config(text, SessionKeys(full_prefix).config), namespace, session_id)


def _own(cfg: SessionConfig, namespace: str, ref: str) -> SessionConfig:
    """`cfg` if it belongs to `namespace`: no lookup crosses namespaces."""
    if cfg.namespace != namespace:
        raise NotFoundError(
            f"session {ref!r} belongs to namespace {cfg.namespace!r}, not {namespace!r}; "
            "list this namespace's sessions with list_sessions"
        )
    return cfg


async def current_session(r: Redis, *, namespace: str) -> SessionConfig:
    """The session the latest init_session in `namespace` created; NoSessionError if there is none (alive)."""
    sid = await r.get(NamespaceKeys(validate_identifier(namespace, "namespace")).current)
    if sid is None:
        raise NoSessionError(f"no session exists yet in namespace {namespace!r}")
    try:
        return await load_session(r, namespace=namespace, session_id=sid)
    except NotFoundError:
        if await cleaned_up(r, namespace, sid):
            raise NoSessionError(
                f"the current session {sid!r} of namespace {namespace!r} was cleaned up", CLEANED_UP_HINT
            ) from None
        raise NoSessionError(f"the current session {sid!r} of namespace {namespace!r} has expired") from None


#: What an agent of a session that was cleaned up is told to do (the summoner is told to create a new one).
CLEANED_UP_HINT = (
    "its work is over and nothing more will come from it: stop working in it, and ask the summoner whether to "
    "start a new session"
)


async def cleaned_up(r: Redis, namespace: str, session_id: str) -> bool:
    """Whether cleanup_session removed session `session_id` of `namespace` (within the session's TTL since)."""
    return bool(await r.exists(NamespaceKeys(namespace).cleaned(session_id)))


async def resolve_session(
    r: Redis, namespace: str, ref: str | None = None, *, prefix: str | None = None
) -> SessionConfig:
    """The session a caller names; every lookup of a session by what a user typed goes through here.

    `prefix` (a full prefix or its bare name) finds the session by prefix. Otherwise `ref`: None or
    'current' is the namespace's current session; a full prefix (`{myproject-host-001}`,
    `summoner:{<id>}`) finds it by prefix; anything else is a session id, or, if no session has that
    id, a prefix's bare name (`myproject-host-001`).
    """
    if prefix:
        return await load_session(r, namespace=namespace, prefix=prefix)
    if ref is None or ref == "current":
        return await current_session(r, namespace=namespace)
    if "{" in ref:
        return await load_session(r, namespace=namespace, prefix=ref)
    try:
        return await load_session(r, namespace=namespace, session_id=ref)
    except NotFoundError as by_id:
        try:
            return await load_session(r, namespace=namespace, prefix=ref)
        except (NotFoundError, ValueError):
            raise by_id from None


async def list_sessions(r: Redis, *, namespace: str) -> list[SessionConfig]:
    """The live sessions of `namespace`, oldest first; index entries of expired sessions are dropped."""
    ns = NamespaceKeys(validate_identifier(namespace, "namespace"))
    index = cast("dict[str, str]", await r.hgetall(ns.sessions))
    if not index:
        return []
    ids = list(index)
    async with r.pipeline(transaction=False) as pipe:
        for sid in ids:
            pipe.get(SessionKeys(index[sid]).config)
        texts: list[str | None] = await pipe.execute()
    found, gone = [], []
    for sid, text in zip(ids, texts, strict=True):
        if text is None:
            gone.append(sid)
        else:
            found.append(_parse_config(text, SessionKeys(index[sid]).config))
    if gone:
        await r.hdel(ns.sessions, *gone)
    return sorted(found, key=lambda c: c.created_at)


def session_keys(cfg: SessionConfig) -> list[str]:
    """Every key the session may own: a set fixed by its child count (no key per task)."""
    keys = cfg.keys
    return (
        keys.fixed_keys(cfg.max_children)
        + [keys.presence(n) for n in cfg.child_ids]
        + [
            keys.parent_presence,
            keys.reaper,
        ]
    )


async def cleanup_session(r: Redis, cfg: SessionConfig) -> CleanupResult:
    """Remove every key of the session and its index entry; leave a tombstone that says it was cleaned up.

    The tombstone (`<ns>:cleaned:<session_id>`, with the session's TTL) lets the agents still working in it,
    and the namespace's "current" pointer (left as it is), tell "cleaned up" from "never created".
    """
    keys = session_keys(cfg)
    ns = NamespaceKeys(cfg.namespace)
    async with r.pipeline(transaction=False) as pipe:
        pipe.set(ns.cleaned(cfg.session_id), iso_now(), ex=cfg.ttl_s)  # first: whoever finds it gone hears why
        for key in keys:
            pipe.exists(key)
        _, *exists = await pipe.execute()
    removed = [k for k, e in zip(keys, exists, strict=True) if e]
    if removed:
        await r.unlink(*removed)  # frees large record hashes in the background, not blocking Redis
    await r.hdel(ns.sessions, cfg.session_id)
    _last_touch.pop(cfg.prefix, None)
    return CleanupResult(session_id=cfg.session_id, prefix=cfg.prefix, removed_keys=removed)


async def touch_session(r: Redis, cfg: SessionConfig, *, force: bool = False) -> bool:
    """Renew the TTL of every key of an active session (one pipeline, a fixed number of keys), at most every
    TOUCH_INTERVAL_S. EXPIRE never creates a key, so a session that is gone stays gone."""
    if not _due(cfg, cfg.prefix, force):
        return False
    await _expire(r, cfg, cfg.keys.fixed_keys(cfg.max_children))  # the names are made only when due (4 per child)
    return True


async def touch_child(r: Redis, cfg: SessionConfig, child_id: int, *, force: bool = False) -> bool:
    """Renew the TTL of child `child_id`'s own keys (a child touches nothing else)."""
    if not _due(cfg, f"{cfg.prefix}:{child_id}", force):
        return False
    await _expire(r, cfg, cfg.keys.child_keys(child_id))
    return True


def _due(cfg: SessionConfig, who: str, force: bool) -> bool:
    """Whether `who`'s keys are due for a refresh (noted as refreshed now if so)."""
    now = time.monotonic()
    if not force and now - _last_touch.get(who, float("-inf")) < min(TOUCH_INTERVAL_S, cfg.ttl_s / 4):
        return False
    _last_touch[who] = now
    return True


async def _expire(r: Redis, cfg: SessionConfig, keys: list[str]) -> None:
    async with r.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.expire(key, cfg.ttl_s)
        await pipe.execute()


def check_child(cfg: SessionConfig, child_id: int) -> int:
    """Validate a child id against the session."""
    return validate_child_id(child_id, cfg.max_children)
