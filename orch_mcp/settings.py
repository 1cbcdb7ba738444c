"""One settings model for flags and environment: each setting's name, variable, flags, default, range and errors.

Every setting a flag or an environment variable can give is a field of one pydantic-settings model
(`RedisSettings`, `NamespaceSettings`, `OrchSettings` = both plus the message limit, `ServeSettings` = that
plus what `orch-mcp serve` needs). The field holds the setting's name, its environment twin and flags
(`Twin`), its default, its range, and so the text of its errors: a flag, a variable and a value given in
code (RedisConfig, OrchConfig, the server's ServerSettings) are all checked by that field and described
by `problem_text`, and nowhere else. The command line's settings flags are made from the fields too
(orch_mcp.cli.flags.add_setting_args).

A flag wins over its variable, and a variable a flag replaces is not even read (`REPLACES`): `--url`
makes REDIS_HOST unread, `--port` makes REDIS_URL unread. An empty variable counts as unset.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import ssl
import stat
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, cast, get_args
from urllib.parse import parse_qs, urlsplit

from annotated_types import Ge, Gt, Le
from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from typing_extensions import Self

from .errors import ConfigError
from .urls import SCHEMES, parse_target, topology
from .utils import IDENTIFIER_RE, shown, validate_identifier

DEFAULT_NAMESPACE = "orch"
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
URL_SCHEMES = tuple(SCHEMES)

Role = Literal["summoner", "moogle", "chocobo"]
Transport = Literal["stdio", "http"]
TLSVerify = Literal["required", "optional", "none"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

NO_ROLE = "no role given: pass --role summoner, --role moogle or --role chocobo (or set ORCH_ROLE)"
NO_CHILD_ID = "a chocobo needs its child id: pass --child-id N (or set ORCH_CHILD_ID), N = 1, 2, …"


# ---------------------------------------------------------------- what a field carries besides its type


@dataclass(frozen=True)
class Twin:
    """A setting's environment variable, its flags, its name in a sentence, and its help line."""

    env: str
    what: str
    flags: tuple[str, ...] = ()
    help: str = ""
    metavar: str | None = None
    #: A flag that may be given several times (its variable then holds a comma-separated list).
    repeat: bool = False


class ValueProblem(ValueError):
    """A validator's complaint about the form of a value ("has an unsupported scheme; use …"), without the value."""


def url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL (None if it names a server, a cluster or a Sentinel master; see orch_mcp.urls)."""
    if topology(url) != "single":
        try:
            parse_target(url)
        except ValueError as exc:
            return str(exc)
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError as exc:
        return f"is not a valid URL ({exc}); use e.g. redis://localhost:6379/0"
    if parts.scheme not in URL_SCHEMES:
        return (
            "has an unsupported scheme; use redis://host:port/db, rediss:// for TLS, unix:///path/to/redis.sock, "
            "redis+cluster://host:port,host:port or redis+sentinel://host:26379,host:26379/mymaster/0"
        )
    if parts.scheme == "unix" and not parts.path:
        return "names no socket path; use unix:///path/to/redis.sock"
    if parts.scheme != "unix" and not parts.hostname:
        return "names no host; use e.g. redis://localhost:6379/0"
    if any(name.startswith("ssl") for name in parse_qs(parts.query)):
        return f"carries TLS options in its query; give them as {TLS_VARIABLES} (or the --tls-* flags) instead"
    return None


def is_tls_url(url: str | None) -> bool:
    """True for a URL whose scheme asks for TLS: rediss://, and the rediss+… forms of other topologies."""
    return bool(url) and urlsplit(url or "").scheme.startswith("rediss")


# ---------------------------------------------------------------- TLS files

#: The TLS settings (RedisSettings fields), and their variables for messages.
TLS_FIELDS = ("tls_ca_cert", "tls_cert", "tls_key", "tls_verify")
TLS_VARIABLES = "REDIS_TLS_CA_CERT, REDIS_TLS_CERT, REDIS_TLS_KEY and REDIS_TLS_VERIFY"


def _readable_file(path: str | None) -> str | None:
    """The absolute path of a file that can be read (processes started elsewhere get the same file)."""
    if path is None:
        return None
    path = os.path.expanduser(path)
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ValueProblem(f"cannot be read ({exc.strerror or exc}); give the path of a PEM file") from None
    return os.path.abspath(path)


def _ca_file(path: str | None) -> str | None:
    path = _readable_file(path)
    if path is None:
        return None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError:
        raise ValueProblem("holds no PEM certificate; give the CA certificate that signed the server's") from None
    return path


def tls_problem(url: str | None, ca_cert: str | None, cert: str | None, key: str | None, verify: str) -> str | None:
    """What is wrong with the TLS settings taken together (None if they can be used with `url`)."""
    if not is_tls_url(url):
        if ca_cert or cert or key or verify != "required":
            return (
                f"the TLS settings ({TLS_VARIABLES}, or the --tls-* flags) need a rediss:// URL: connect with "
                "rediss://host:port/db, or unset them"
            )
        return None
    if key and not cert:
        return "REDIS_TLS_KEY (--tls-key) needs REDIS_TLS_CERT (--tls-cert), the client certificate it belongs to"
    if cert:
        asked = []

        def passphrase() -> bytes:
            asked.append(True)
            return b""

        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=passphrase)
        except ssl.SSLError as exc:
            if asked:
                return (
                    f"the TLS key {key or cert} is encrypted with a passphrase: give REDIS_TLS_KEY (--tls-key) an "
                    "unencrypted key file, readable by you only"
                )
            return (
                f"the TLS client certificate {cert} and key {key or '(in the same file)'} cannot be used together "
                f"({exc.reason or exc}): set REDIS_TLS_CERT and REDIS_TLS_KEY (--tls-cert, --tls-key) to a PEM "
                "certificate and its private key"
            )
    return None


def _url(url: str | None) -> str | None:
    problem = None if url is None else url_problem(url)
    if problem:
        raise ValueProblem(problem)
    return url


def _identifier(what: str) -> AfterValidator:
    return AfterValidator(lambda value: validate_identifier(value, what))


#: A session's full prefix (`summoner:{<id>}` or `{<name>}`), which a server may be given instead of a session id.
_PREFIX = re.compile(rf"(summoner:)?\{{{IDENTIFIER_RE.pattern}\}}")


def _session_ref(value: str) -> str:
    if value == "current" or _PREFIX.fullmatch(value):
        return value
    return validate_identifier(value, "session id")


def _transport(value: object) -> object:
    if isinstance(value, str):
        value = value.strip().lower()
        return "http" if value == "streamable-http" else value
    return value


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


# ---------------------------------------------------------------- HTTP: who may connect

#: Where a token for the HTTP server comes from, for messages.
TOKEN_SOURCES = "--http-token-file PATH (a file only you can read), --http-token TOKEN or ORCH_HTTP_TOKEN"
#: What a bearer token may hold (RFC 6750's b64token), and how short it may be.
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")
MIN_TOKEN_LENGTH = 16
_TOKEN_RULE = (
    f"a bearer token is {MIN_TOKEN_LENGTH} or more letters, digits and -._~+/= (make one with "
    "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
)


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach: localhost, 127.0.0.0/8, ::1 (any other name is not)."""
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _token(token: str | None) -> str | None:
    # Never echoed: a plain ValueError is a sentence of its own, without the value (see problem_text).
    if token is None:
        return None
    if len(token) < MIN_TOKEN_LENGTH or not set(token) <= _TOKEN_CHARS:
        raise ValueError(f"unusable token: {_TOKEN_RULE}")
    return token


def _token_file(path: str | None) -> str | None:
    if path is None:
        return None
    path = os.path.expanduser(path)
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if sys.platform != "win32" and mode & (stat.S_IRGRP | stat.S_IROTH):
        raise ValueError(f"{path} is readable by other users: make it yours only with `chmod 600 {path}`")
    try:
        _token(token)
    except ValueError:
        raise ValueError(f"{path} holds no usable token: {_TOKEN_RULE}") from None
    return os.path.abspath(path)


def read_token_file(path: str) -> str:
    """The token a token file holds (whitespace around it stripped)."""
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


def _hosts(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value) if isinstance(value, list) else value


def _host_names(hosts: tuple[str, ...]) -> tuple[str, ...]:
    for host in hosts:
        if not host or any(c in host for c in "/ \t@,*") or "://" in host:
            raise ValueError(f"{shown(host)} is not a host name; give a name or address clients use, e.g. orch.lan")
    return hosts


def token_problem(transport: str, host: str, token: bool) -> str | None:
    """Why a server with these settings may not start (None if it may): a bind others can reach needs a token."""
    if transport == "http" and not token and not is_loopback(host):
        return (
            f"HTTP host {host} can be reached from other machines, so the server needs a bearer token: give one "
            f"with {TOKEN_SOURCES}, or listen on 127.0.0.1"
        )
    return None


# ---------------------------------------------------------------- the model's machinery

#: The environment the next model built reads (None: os.environ); see _Settings.load.
_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("orch_mcp_settings_env", default=None)


class _EnvSource(PydanticBaseSettingsSource):
    """Each field's variable (Twin.env) from the environment `_Settings.load` was given; empty means unset."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        env = _ENV.get()
        raw = (os.environ if env is None else env).get(twin(field).env)
        return (raw or None), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            raw, _, _ = self.get_field_value(field, name)
            if raw is not None:
                values[name] = raw
        return values


def twin(field: FieldInfo) -> Twin:
    """The Twin of a settings field."""
    found = next((m for m in field.metadata if isinstance(m, Twin)), None)
    if found is None:
        raise TypeError("every settings field needs a Twin")
    return found


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    #: field given (by a flag) -> fields whose variables it replaces (left at their defaults, not read).
    REPLACES: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (passed as keyword arguments) first, then the environment: no .env file, no secrets directory."""
        return init_settings, _EnvSource(settings_cls)

    @classmethod
    def load(cls, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Self:
        """The settings from `flags` (field name -> value; None = not given) over `env` (default os.environ).

        ConfigError naming the flag or variable if a value cannot be used.
        """
        given = {name: value for name, value in (flags or {}).items() if value is not None and name in cls.model_fields}
        cls.check_flags(given)
        values = dict(given)
        for name in given:
            for other in cls.REPLACES.get(name, ()):
                if other not in given and other in cls.model_fields:
                    values[other] = cls.model_fields[other].default
        token = _ENV.set(env)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(cls._explain(exc.errors()[0], given, os.environ if env is None else env)) from None
        finally:
            _ENV.reset(token)

    @classmethod
    def check_flags(cls, given: Mapping[str, Any]) -> None:
        """Refuse flags that cannot go together (ConfigError)."""

    @classmethod
    def check(cls, name: str, value: Any) -> Any:
        """`value` checked as the setting `name`, as given in code; ConfigError saying what is wrong."""
        try:
            return _adapter(cls, name).validate_python(value, strict=True)
        except ValidationError as exc:
            raise ConfigError(problem_text(cls.model_fields[name], exc.errors()[0], value, "code")) from None

    @classmethod
    def _explain(cls, error: ErrorDetails, given: Mapping[str, Any], env: Mapping[str, str]) -> str:
        if not error["loc"]:  # a rule of the whole model: its own sentence
            return str(error.get("ctx", {}).get("error", error["msg"]))
        name = str(error["loc"][0])
        field = cls.model_fields[name]
        if name in given:
            return problem_text(field, error, given[name], "flag")
        return problem_text(field, error, env.get(twin(field).env), "env")

    @classmethod
    def default_text(cls, name: str) -> str:
        """The help line's default: `(default: VAR or value)`."""
        field = cls.model_fields[name]
        env = twin(field).env
        return f"(default: {env})" if field.default in (None, ()) else f"(default: {env} or {field.default})"


@functools.cache
def _adapter(model: type[_Settings], name: str) -> TypeAdapter[Any]:
    field = model.model_fields[name]
    args = (field.annotation, *field.metadata)  # the field's type with its constraints and validators
    return TypeAdapter(cast(Any, Annotated)[args])


_WHOLE = ("int_parsing", "int_from_float", "int_type")
_NUMBER = ("float_parsing", "float_type", "finite_number")
_RANGE = ("greater_than_equal", "greater_than", "less_than_equal", "less_than")


def bounds_text(field: FieldInfo) -> str:
    """The range of a number field, as advice: `1..65535`, `1 or more`, `a positive number`."""
    low = next((m.ge for m in field.metadata if isinstance(m, Ge)), None)
    above = next((m.gt for m in field.metadata if isinstance(m, Gt)), None)
    high = next((m.le for m in field.metadata if isinstance(m, Le)), None)
    if above is not None:
        return "a positive number" if above == 0 else f"a number above {above}"
    if low is not None and high is not None:
        return f"{low}..{high}"
    return f"{low} or more" if low is not None else "a number"


def _choices(field: FieldInfo) -> tuple[str, ...]:
    annotation = field.annotation
    for arg in (annotation, *get_args(annotation)):
        if getattr(arg, "__origin__", None) is Literal:
            return tuple(str(c) for c in get_args(arg))
    return ()


def _either(words: tuple[str, ...]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def problem_text(field: FieldInfo, error: ErrorDetails, raw: Any, source: Literal["flag", "env", "code"]) -> str:
    """The one-line error for a value of `field` that failed `error`, from a flag, a variable or code.

    A problem with the value's form reads `REDIS_PORT='lots' is not a whole number; use 1..65535`
    (`argument --port: 0 is out of range; use 1..65535` for a flag, `Redis port 0 is …` in code); a rule
    with its own sentence reads `ORCH_NAMESPACE: invalid namespace 'a b': use …`.
    """
    t = twin(field)
    kind = error["type"]
    problem: str | None = None
    sentence: str | None = None
    if kind in _WHOLE:
        problem = f"is not a whole number; use {bounds_text(field)}"
    elif kind in _NUMBER:
        problem = f"is not a number; use {bounds_text(field)}"
    elif kind in _RANGE:
        problem = f"is out of range; use {bounds_text(field)}"
    elif kind == "literal_error":
        flag = f"{t.flags[0]} " if t.flags and source != "code" else ""
        sentence = f"unknown {t.what} {shown(raw)}: use {flag}{_either(_choices(field))}"
    elif kind == "value_error" and not isinstance(error.get("ctx", {}).get("error"), ValueProblem):
        sentence = str(error["ctx"]["error"])
    else:
        problem = str(error.get("ctx", {}).get("error", error["msg"]))
    value = str(raw) if kind in _RANGE else shown(raw)
    flag = t.flags[0] if t.flags else t.env
    if sentence is not None:
        return {"flag": f"argument {flag}: {sentence}", "env": f"{t.env}: {sentence}", "code": sentence}[source]
    return {
        "flag": f"argument {flag}: {value} {problem}",
        "env": f"{t.env}={shown(raw)} {problem}",
        "code": f"{t.what} {value} {problem}",
    }[source]


# ---------------------------------------------------------------- the settings

_CONNECTION = ("host", "port", "db", "username", "password")


class RedisSettings(_Settings):
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
        AfterValidator(_url),
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
        AfterValidator(_ca_file),
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
        AfterValidator(_readable_file),
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
        AfterValidator(_readable_file),
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
        BeforeValidator(_lower),
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


class NamespaceSettings(_Settings):
    """The namespace that separates teams sharing one Redis."""

    namespace: Annotated[
        str,
        Twin("ORCH_NAMESPACE", "namespace", ("--namespace",), "namespace of the sessions on this Redis", "NS"),
        _identifier("namespace"),
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
        AfterValidator(_session_ref),
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
        BeforeValidator(_transport),
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
        AfterValidator(_token),
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
        AfterValidator(_token_file),
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
        BeforeValidator(_hosts),
        AfterValidator(_host_names),
    ] = ()
    log_level: Annotated[LogLevel, Twin("ORCH_LOG_LEVEL", "log level"), BeforeValidator(_upper)] = "WARNING"

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
