"""One settings model for flags and environment: each setting's name, variable, flags, default, range and errors.

Every setting a flag or an environment variable can give is a field of one pydantic-settings model
(`RedisSettings`, `NamespaceSettings`, `OrchSettings` = both plus the message limit, `ServeSettings` = that
plus what `orch-mcp serve` needs). The field holds the setting's name, its environment twin and flags
(`Twin`), its default, its range, and so the text of its errors: a flag, a variable and a value given in
code (RedisConfig, OrchConfig, the server's ServerSettings) are all checked by that field and described
by `problem_text`, and nowhere else. The command line's settings flags are made from the fields too
(orch_mcp.cli.flags.add_setting_args).

The machinery is in `base`; the checks of single values in `values`, `tls` and `http`.

A flag wins over its variable, and a variable a flag replaces is not even read (`REPLACES`): `--url`
makes REDIS_HOST unread, `--port` makes REDIS_URL unread. An empty variable counts as unset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from typing_extensions import Self

from ..errors import ConfigError
from .base import OrchBaseSettings, Twin, twin
from .http import (
    check_host_names,
    check_token,
    check_token_file,
    is_loopback,
    read_token_file,
    split_hosts,
    token_problem,
)
from .tls import TLS_FIELDS, TLSVerify, ca_file, is_tls_url, readable_file, tls_problem
from .values import URL_SCHEMES, check_url, identifier, lower, session_ref, transport_name, upper, url_problem

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_NAMESPACE",
    "NO_CHILD_ID",
    "NO_ROLE",
    "TLS_FIELDS",
    "URL_SCHEMES",
    "LogLevel",
    "NamespaceSettings",
    "OrchSettings",
    "RedisSettings",
    "Role",
    "ServeSettings",
    "TLSVerify",
    "Transport",
    "is_loopback",
    "is_tls_url",
    "tls_problem",
    "token_problem",
    "twin",
    "url_problem",
]

DEFAULT_NAMESPACE = "orch"
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024

Role = Literal["summoner", "moogle", "chocobo"]
Transport = Literal["stdio", "http"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

NO_ROLE = "no role given: pass --role summoner, --role moogle or --role chocobo (or set ORCH_ROLE)"
NO_CHILD_ID = "a chocobo needs its child id: pass --child-id N (or set ORCH_CHILD_ID), N = 1, 2, …"


_CONNECTION = ("host", "port", "db", "username", "password")


class RedisSettings(OrchBaseSettings):
    """Where Redis is: the seed's REDIS_* variables plus REDIS_URL, which wins when set."""

    REPLACES: ClassVar[dict[str, tuple[str, ...]]] = {"url": _CONNECTION, **{n: ("url",) for n in _CONNECTION}}

    url: Annotated[
        str | None,
        Twin(
            "REDIS_URL",
            "Redis URL",
            ("--url", "--redis-url"),
            "redis://host:port/db, rediss:// for TLS, unix:///path, redis+cluster://host:port,host:port "
            "or redis+sentinel://host:port,host:port/mymaster/db",
            "URL",
        ),
        AfterValidator(check_url),
    ] = None
    host: Annotated[str, Twin("REDIS_HOST", "Redis host", ("--host",), "Redis host", "HOST")] = "localhost"
    port: Annotated[int, Twin("REDIS_PORT", "Redis port", ("--port",), "Redis port", "PORT"), Field(ge=1, le=65535)] = (
        6379
    )
    db: Annotated[int, Twin("REDIS_DB", "Redis db", ("--db",), "Redis database number", "DB"), Field(ge=0)] = 0
    username: Annotated[
        str | None,
        Twin("REDIS_USERNAME", "Redis username", ("--username",), "Redis ACL user (with --password)", "USER"),
    ] = None
    password: Annotated[str | None, Twin("REDIS_PASSWORD", "Redis password", ("--password",), "Redis password")] = None
    socket_timeout: Annotated[float, Twin("REDIS_TIMEOUT", "Redis timeout"), Field(gt=0, allow_inf_nan=False)] = 10.0
    default_ttl: Annotated[int, Twin("REDIS_TTL", "Redis TTL"), Field(ge=1)] = 3600
    tls_ca_cert: Annotated[
        str | None,
        Twin(
            "REDIS_TLS_CA_CERT",
            "Redis TLS CA certificate",
            ("--tls-ca-cert",),
            "PEM file of the CA that signed the server's certificate",
            "PATH",
        ),
        AfterValidator(ca_file),
    ] = None
    tls_cert: Annotated[
        str | None,
        Twin(
            "REDIS_TLS_CERT",
            "Redis TLS client certificate",
            ("--tls-cert",),
            "PEM file of this client's certificate, for a server that requires one",
            "PATH",
        ),
        AfterValidator(readable_file),
    ] = None
    tls_key: Annotated[
        str | None,
        Twin(
            "REDIS_TLS_KEY",
            "Redis TLS client key",
            ("--tls-key",),
            "PEM file of the client certificate's private key, unencrypted",
            "PATH",
        ),
        AfterValidator(readable_file),
    ] = None
    tls_verify: Annotated[
        TLSVerify,
        Twin(
            "REDIS_TLS_VERIFY",
            "Redis TLS verify mode",
            ("--tls-verify",),
            "required = the server's certificate must be signed by the CA and name the URL's "
            "host; optional = signed by the CA, host not checked; none = not checked at all",
            "{required,optional,none}",
        ),
        BeforeValidator(lower),
    ] = "required"

    @classmethod
    def check_flags(cls, given: Mapping[str, Any]) -> None:
        """`--url` names the whole server: it cannot be combined with --host, --port, --db or --password."""
        if "url" in given and (clash := [n for n in _CONNECTION if n in given]):
            flags = ", ".join(f"--{name}" for name in clash)
            raise ConfigError(f"--url names the whole server: drop {flags}, or put it in the URL")

    @model_validator(mode="after")
    def _tls_settings_fit(self) -> Self:
        problem = tls_problem(self.url, self.tls_ca_cert, self.tls_cert, self.tls_key, self.tls_verify)
        if problem:
            raise ValueError(problem)
        return self


class NamespaceSettings(OrchBaseSettings):
    """The namespace that separates teams sharing one Redis."""

    namespace: Annotated[
        str,
        Twin("ORCH_NAMESPACE", "namespace", ("--namespace",), "namespace of the sessions on this Redis", "NS"),
        identifier("namespace"),
    ] = DEFAULT_NAMESPACE


class OrchSettings(RedisSettings, NamespaceSettings):
    """Redis, namespace, and the message size limit: what the orchestration layer needs."""

    max_message_bytes: Annotated[int, Twin("ORCH_MAX_MESSAGE_BYTES", "message size limit"), Field(ge=1)] = (
        DEFAULT_MAX_MESSAGE_BYTES
    )


class ServeSettings(OrchSettings):
    """What `orch-mcp serve` is given: the role's identity, its transport, and everything above."""

    role: Annotated[
        Role | None, Twin("ORCH_ROLE", "role", ("--role",), "the agent's role, required", "{summoner,moogle,chocobo}")
    ] = None
    session_id: Annotated[
        str,
        Twin(
            "ORCH_SESSION_ID",
            "session id",
            ("--session-id",),
            "the session to work in (its id or full prefix); 'current' = the namespace's latest, resolved at the first "
            "tool call",
            "ID",
        ),
        AfterValidator(session_ref),
    ] = "current"
    child_id: Annotated[
        int | None,
        Twin(
            "ORCH_CHILD_ID",
            "child id",
            ("--child-id",),
            "chocobo only, and required there: its child id, 1..max_children",
            "N",
        ),
        Field(ge=1),
    ] = None
    transport: Annotated[
        Transport,
        Twin(
            "ORCH_TRANSPORT",
            "transport",
            ("--transport",),
            "stdio, or http: streamable HTTP at http://HOST:PORT/mcp",
            "{stdio,http}",
        ),
        BeforeValidator(transport_name),
    ] = "stdio"
    http_host: Annotated[
        str,
        Twin(
            "ORCH_HTTP_HOST", "HTTP host", ("--http-host",), "with --transport http: the address to listen on", "HOST"
        ),
    ] = "127.0.0.1"
    http_port: Annotated[
        int,
        Twin("ORCH_HTTP_PORT", "HTTP port", ("--http-port",), "with --transport http: the port", "PORT"),
        Field(ge=1, le=65535),
    ] = 8000
    http_token: Annotated[
        str | None,
        Twin(
            "ORCH_HTTP_TOKEN",
            "HTTP token",
            ("--http-token",),
            "with --transport http: the bearer token every request must carry (required unless HOST is loopback; "
            "other users can read a flag: prefer --http-token-file or the variable)",
            "TOKEN",
        ),
        AfterValidator(check_token),
        Field(repr=False),
    ] = None
    http_token_file: Annotated[
        str | None,
        Twin(
            "ORCH_HTTP_TOKEN_FILE",
            "HTTP token file",
            ("--http-token-file",),
            "with --transport http: a file holding the bearer token, readable by its owner only",
            "PATH",
        ),
        AfterValidator(check_token_file),
    ] = None
    http_allowed_hosts: Annotated[
        tuple[str, ...],
        Twin(
            "ORCH_HTTP_ALLOWED_HOSTS",
            "HTTP allowed host",
            ("--http-allowed-host",),
            "with --transport http: a host name clients reach the server by (the Host header); repeat for more. "
            "localhost, 127.0.0.1, [::1] and HOST are always allowed",
            "NAME",
            repeat=True,
        ),
        BeforeValidator(split_hosts),
        AfterValidator(check_host_names),
    ] = ()
    log_level: Annotated[LogLevel, Twin("ORCH_LOG_LEVEL", "log level"), BeforeValidator(upper)] = "WARNING"

    #: A token flag replaces the other way of giving the token: `--http-token-file` leaves ORCH_HTTP_TOKEN unread.
    REPLACES: ClassVar[dict[str, tuple[str, ...]]] = {
        **RedisSettings.REPLACES,
        "http_token": ("http_token_file",),
        "http_token_file": ("http_token",),
    }

    @classmethod
    def check_flags(cls, given: Mapping[str, Any]) -> None:
        """As RedisSettings; and the token is given one way."""
        super().check_flags(given)
        if "http_token" in given and "http_token_file" in given:
            raise ConfigError("--http-token and --http-token-file both give the token: keep one")

    @property
    def bearer_token(self) -> str | None:
        """The token HTTP requests must carry (read from the token file if that is how it was given)."""
        return read_token_file(self.http_token_file) if self.http_token_file else self.http_token

    @model_validator(mode="before")
    @classmethod
    def _child_id_is_a_chocobos(cls, data: Any) -> Any:
        # ORCH_CHILD_ID matters to a chocobo only: an environment a team shares may set it for every role.
        if isinstance(data, dict) and data.get("role") != "chocobo":
            data = {k: v for k, v in data.items() if k != "child_id"}
        return data

    @model_validator(mode="after")
    def _role_and_child(self) -> Self:
        if self.role is None:
            raise ValueError(NO_ROLE)
        if self.role == "chocobo" and self.child_id is None:
            raise ValueError(NO_CHILD_ID)
        if self.http_token and self.http_token_file:
            raise ValueError("ORCH_HTTP_TOKEN and ORCH_HTTP_TOKEN_FILE both give the token: unset one")
        problem = token_problem(self.transport, self.http_host, bool(self.http_token or self.http_token_file))
        if problem:
            raise ValueError(problem)
        return self
