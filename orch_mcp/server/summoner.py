"""The summoner's tools: create, show, list and remove sessions; session_status (the moogle's too)."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field

from .. import delivery, sessions
from ..delivery import SessionStatus
from ..errors import NoSessionError
from ..keys import NamespaceKeys
from ..sessions import MAX_CHILDREN_LIMIT, MAX_TTL_S, SessionConfig, resolve_session
from . import texts
from .adapter import _result, _state, tool_adapter
from .models import Cleanup, OptionalSessionIdArg, SessionIdArg, SessionInfo, SessionList
from .state import ServerState


@tool_adapter
async def init_session(
    ctx: Context[ServerState],
    max_children: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_CHILDREN_LIMIT,
            description="How many chocobo children work in the session "
            "(child ids 1..max_children): one per chocobo agent.",
        ),
    ] = 3,
    mode: Annotated[
        Literal["summoner", "normal"],
        Field(
            description="'summoner' (recommended): one shared report queue and a live monitor channel; "
            "'normal': a report queue per child and a <namespace>-<host>-<seq> prefix."
        ),
    ] = "summoner",
    ttl_s: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_TTL_S,
            description="Seconds an idle session's keys live (renewed while it is in use); "
            "omit for the server's default (REDIS_TTL, 3600).",
        ),
    ] = None,
) -> Annotated[CallToolResult, SessionInfo]:
    """Create a new session for the team and make it the namespace's current one."""
    state = _state(ctx)
    ttl = ttl_s if ttl_s is not None else state.settings.orch.redis.default_ttl
    cfg = await sessions.init_session(
        state.redis, namespace=state.settings.namespace, mode=mode, max_children=max_children, ttl_s=ttl
    )
    return _result(SessionInfo.of(cfg), texts.created_text(cfg))


@tool_adapter
async def get_session(ctx: Context[ServerState], session_id: SessionIdArg) -> Annotated[CallToolResult, SessionInfo]:
    """Show one session: its mode, children, TTL and the names of its queues."""
    cfg = await _resolve(_state(ctx), session_id)
    return _result(SessionInfo.of(cfg), texts.session_text(cfg))


@tool_adapter
async def list_sessions(ctx: Context[ServerState]) -> Annotated[CallToolResult, SessionList]:
    """List the live sessions of this namespace, oldest first, and say which one is current."""
    state = _state(ctx)
    ns = state.settings.namespace
    found = await sessions.list_sessions(state.redis, namespace=ns)
    current: str | None = await state.redis.get(NamespaceKeys(ns).current)
    live = {cfg.session_id for cfg in found}
    current = current if current in live else None
    text = texts.sessions_text(ns, found, current)
    return _result(SessionList(namespace=ns, current=current, sessions=[SessionInfo.of(c) for c in found]), text)


@tool_adapter
async def cleanup_session(ctx: Context[ServerState], session_id: SessionIdArg) -> Annotated[CallToolResult, Cleanup]:
    """Remove every key of a finished session (queues, task records, status stream) and its index entry."""
    state = _state(ctx)
    cfg = await _resolve(state, session_id)
    done = await sessions.cleanup_session(state.redis, cfg)
    return _result(Cleanup(**done.model_dump(), removed_count=len(done.removed_keys)), texts.cleanup_text(done))


@tool_adapter
async def session_status(
    ctx: Context[ServerState], session_id: OptionalSessionIdArg = None
) -> Annotated[CallToolResult, SessionStatus]:
    """Show each child's state (idle, working, offline), queue depth and in-flight task, and task counts."""
    state = _state(ctx)
    if session_id is not None:
        cfg = await _resolve(state, session_id)
    elif state.settings.role == "summoner":  # the summoner follows the namespace's latest session
        cfg = await _resolve(state, state.settings.session_id)
    else:
        cfg = await state.current()
    st = await delivery.session_status(state.redis, cfg)
    return _result(st, texts.status_text(st))


async def _resolve(state: ServerState, ref: str) -> SessionConfig:
    """The session `ref` names; when there is none (yet, or any more), the summoner is told to create one."""
    try:
        return await resolve_session(state.redis, state.settings.namespace, ref)
    except NoSessionError as exc:
        raise NoSessionError(exc.situation, "create a new one with init_session") from None
