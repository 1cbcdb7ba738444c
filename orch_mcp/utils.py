"""Small helpers shared by every layer: identifiers, clocks, validation."""

from __future__ import annotations

import re
import socket
import time
import uuid
from datetime import datetime, timezone

from .errors import InvalidIdentifierError

IDENTIFIER_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def validate_identifier(value: str, what: str) -> str:
    """Return `value` if it is a safe identifier (no glob characters, braces, whitespace), else raise."""
    if not isinstance(value, str) or not IDENTIFIER_RE.fullmatch(value):
        raise InvalidIdentifierError(
            f"invalid {what} {shown(value)}: use 1-128 characters from letters, digits and _ . : - "
            "(no spaces, braces or glob characters like * ? [ ])"
        )
    return value


def shown(value: object, limit: int = 60) -> str:
    """`repr(value)` for an error message, cut short (with its length) if long: a 10 kB id is not echoed whole."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[:limit]}...{size}"


def validate_child_id(child_id: int, max_children: int) -> int:
    """Return `child_id` if it is an int in 1..max_children, else raise."""
    if isinstance(child_id, bool) or not isinstance(child_id, int) or not 1 <= child_id <= max_children:
        raise InvalidIdentifierError(
            f"invalid child id {shown(child_id)}: this session has children 1..{max_children}; pick one of those"
        )
    return child_id


def new_id() -> str:
    """A fresh uuid4 hex string."""
    return uuid.uuid4().hex


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def iso_now() -> str:
    """The current time as ISO 8601 UTC text."""
    return utc_now().isoformat()


def unix_ms() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def short_hostname() -> str:
    """This machine's host name up to the first dot, reduced to identifier characters."""
    name = socket.gethostname().split(".", 1)[0] or "host"
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)[:64]
