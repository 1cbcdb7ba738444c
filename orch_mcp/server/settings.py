"""What one role's server is: its role, session, child id, transport, and the bounds of its waits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

from ..config import OrchConfig
from ..errors import ConfigError
from ..settings import NO_CHILD_ID, ServeSettings, token_problem
from ..settings import Role as Role
from ..settings import Transport as Transport

ROLES: tuple[Role, ...] = get_args(Role)
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
    #: The bearer token every HTTP request must carry (None: none asked, allowed on a loopback host only).
    http_token: str | None = field(default=None, repr=False)
    #: Host names clients may reach the HTTP server by, besides the loopback names and http_host.
    http_allowed_hosts: tuple[str, ...] = ()
    #: Length of one blocking slice of a wait, and so the interval between progress notifications.
    progress_interval_s: float = PROGRESS_INTERVAL_S
    #: Calls within this many seconds of the last check that the session exists reuse it unchecked.
    session_check_s: float = SESSION_CHECK_S

    def __post_init__(self) -> None:
        # Each value is checked by its field of the settings model, the one place its range and error text live.
        for name in ("role", "session_id", "transport", "http_host", "http_port", "http_token", "http_allowed_hosts"):
            ServeSettings.check(name, getattr(self, name))
        if problem := token_problem(self.transport, self.http_host, self.http_token is not None):
            raise ConfigError(problem)
        if self.role == "chocobo":
            if self.child_id is None:
                raise ConfigError(NO_CHILD_ID)
            ServeSettings.check("child_id", self.child_id)
        if not self.progress_interval_s > 0:
            raise ConfigError("progress_interval_s must be positive")
        if self.session_check_s < 0:
            raise ConfigError("session_check_s must be 0 or more")

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> ServerSettings:
        """The server the loaded settings of `orch-mcp serve` describe."""
        if settings.role is None:  # ServeSettings refuses this already; the check narrows the type
            raise ConfigError("no role given")
        return cls(
            role=settings.role,
            orch=OrchConfig.from_settings(settings),
            session_id=settings.session_id,
            child_id=settings.child_id,
            transport=settings.transport,
            http_host=settings.http_host,
            http_port=settings.http_port,
            http_token=settings.bearer_token,
            http_allowed_hosts=settings.http_allowed_hosts,
        )

    @property
    def namespace(self) -> str:
        """The namespace the server works in."""
        return self.orch.namespace
