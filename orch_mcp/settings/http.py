"""Who may reach the HTTP server: the bearer token (given, or read from a file only its owner can read) and the
host names clients use."""

from __future__ import annotations

import ipaddress
import os
import stat
import sys

from ..utils import shown

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


def check_token(token: str | None) -> str | None:
    """A bearer token of the allowed characters and length (never echoed in the error)."""
    # Never echoed: a plain ValueError is a sentence of its own, without the value (see problem_text).
    if token is None:
        return None
    if len(token) < MIN_TOKEN_LENGTH or not set(token) <= _TOKEN_CHARS:
        raise ValueError(f"unusable token: {_TOKEN_RULE}")
    return token


def check_token_file(path: str | None) -> str | None:
    """The absolute path of a token file only its owner can read, holding a usable token."""
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
        check_token(token)
    except ValueError:
        raise ValueError(f"{path} holds no usable token: {_TOKEN_RULE}") from None
    return os.path.abspath(path)


def read_token_file(path: str) -> str:
    """The token a token file holds (whitespace around it stripped)."""
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


def split_hosts(value: object) -> object:
    """Host names given as one comma-separated variable, as a tuple."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value) if isinstance(value, list) else value


def check_host_names(hosts: tuple[str, ...]) -> tuple[str, ...]:
    """Host names as a Host header carries them (no scheme, path, user or wildcard)."""
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
