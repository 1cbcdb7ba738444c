"""What one role's server is: its role, session, child id, transport, and the bounds of its waits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from ..config import OrchConfig
from ..errors import ConfigError
from ..utils import validate_identifier

Role = Literal["summoner", "moogle", "chocobo"]
ROLES: tuple[Role, ...] = get_args(Role)
Transport = Literal["stdio", "http"]
TRANSPORTS: tuple[Transport, ...] = get_args(Transport)

DEFAULT_WAIT_S = 25.0
#: Clients cut tool calls at about 60 s (Codex, Claude Desktop): a wait never asks for more than this.
MAX_WAIT_S = 50.0
#: How often a blocked wait sends a progress notification (one blocking Redis command per interval).
PROGRESS_INTERVAL_S = 2.5
#: A session confirmed to exist less than this long ago is not checked again (see ServerState.current).
SESSION_CHECK_S = 0.25
#: Shortest blocking command: timeout_s=0 means "look once, do not wait".
POLL_S = 0.01


@dataclass(frozen=True)
class ServerSettings:
    """Everything one role's server needs; built by `orch-mcp serve` (or a test) and passed to create_server."""

    role: Role
    orch: OrchConfig = field(default_factory=OrchConfig)
    #: "current": the session the latest init_session of the namespace created (resolved at the first tool call).
    session_id: str = "current"
    #: The chocobo's child id (1..max_children of the session); required for the chocobo role only.
    child_id: int | None = None
    transport: Transport = "stdio"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    #: Length of one blocking slice of a wait, and so the interval between progress notifications.
    progress_interval_s: float = PROGRESS_INTERVAL_S
    #: Calls within this many seconds of the last check that the session exists reuse it unchecked.
    session_check_s: float = SESSION_CHECK_S

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"unknown role {self.role!r}: use one of {', '.join(ROLES)}")
        if self.session_id != "current":
            validate_identifier(self.session_id, "session id")
        if self.role == "chocobo":
            if self.child_id is None:
                raise ConfigError("a chocobo needs its child id: pass --child-id N (or set ORCH_CHILD_ID), N >= 1")
            if isinstance(self.child_id, bool) or not isinstance(self.child_id, int) or self.child_id < 1:
                raise ConfigError(f"invalid child id {self.child_id!r}: use a whole number from 1 up")
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"unknown transport {self.transport!r}: use stdio or http")
        if not 0 < self.http_port < 65536:
            raise ConfigError(f"HTTP port {self.http_port} is out of range: use 1-65535")
        if not self.progress_interval_s > 0:
            raise ConfigError("progress_interval_s must be positive")
        if self.session_check_s < 0:
            raise ConfigError("session_check_s must be 0 or more")

    @property
    def namespace(self) -> str:
        """The namespace the server works in."""
        return self.orch.namespace
