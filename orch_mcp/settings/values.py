"""Checks of single settings values: Redis URLs, identifiers, session references, case-folded choices."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from pydantic import AfterValidator

from ..urls import SCHEMES, parse_target, topology
from ..utils import IDENTIFIER_RE, validate_identifier
from .base import ValueProblem
from .tls import TLS_VARIABLES

#: The URL schemes a Redis URL may have (orch_mcp.urls says what each names).
URL_SCHEMES = tuple(SCHEMES)


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


def check_url(url: str | None) -> str | None:
    """A Redis URL (or None) that names a server, a cluster or a Sentinel master; else ValueProblem."""
    problem = None if url is None else url_problem(url)
    if problem:
        raise ValueProblem(problem)
    return url


def identifier(what: str) -> AfterValidator:
    """A validator of an identifier (namespace, session id) named `what` in its error."""
    return AfterValidator(lambda value: validate_identifier(value, what))


#: A session's full prefix (`summoner:{<id>}` or `{<name>}`), which a server may be given instead of a session id.
_PREFIX = re.compile(rf"(summoner:)?\{{{IDENTIFIER_RE.pattern}\}}")


def session_ref(value: str) -> str:
    """A session reference: 'current', a session id, or a full prefix."""
    if value == "current" or _PREFIX.fullmatch(value):
        return value
    return validate_identifier(value, "session id")


def transport_name(value: object) -> object:
    """The transport, case-folded; streamable-http is http."""
    if isinstance(value, str):
        value = value.strip().lower()
        return "http" if value == "streamable-http" else value
    return value


def upper(value: object) -> object:
    """A choice upper-cased (log levels)."""
    return value.strip().upper() if isinstance(value, str) else value


def lower(value: object) -> object:
    """A choice lower-cased (TLS verify modes)."""
    return value.strip().lower() if isinstance(value, str) else value
