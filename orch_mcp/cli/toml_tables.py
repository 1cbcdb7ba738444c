"""Just enough TOML for `orch-mcp setup codex`: write a table, and replace our own tables in a file.

Python 3.10 has no TOML parser and orch-mcp adds no dependency for one: a file is updated by
lines (our `[mcp_servers.NAME]` sections dropped, the new ones appended), and the result is checked
before anything is written: with `tomllib` (3.11+) it must hold exactly the old document with our
tables replaced; without it, the file must be simple enough for the line edit to be exact. Anything
else is refused with a message saying what to do.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError

HEADER = re.compile(r"\s*\[(?!\[)\s*([^\[\]#,]+?)\s*\]\s*(?:#.*)?")
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def table(name: str, values: dict[str, Any]) -> str:
    """`[name]` and one `key = value` line per entry."""
    header = ".".join(_key(part) for part in name.split("."))
    return "\n".join([f"[{header}]", *(f"{_key(k)} = {_value(v)}" for k, v in values.items())]) + "\n"


def replace_tables(path: Path, old: str, tables: dict[str, str]) -> str:
    """`old` without the tables named in `tables` (and their sub-tables), then the new ones at the end."""
    names = set(tables)
    kept: list[str] = []
    held: list[str] = []  # blank and comment lines at the end of a dropped table: they may introduce the next one
    dropping = False
    for line in old.splitlines(keepends=True):
        header = HEADER.fullmatch(line.rstrip("\r\n"))
        if header:
            key = _normalized(header.group(1))
            if dropping and not _ours(key, names):
                kept += held
            dropping = _ours(key, names)
            held = []
        if not dropping:
            kept.append(line)
        elif not line.strip() or line.lstrip().startswith("#"):
            held.append(line)
        else:
            held = []
    head = "".join(kept).rstrip()
    new = (head + "\n\n" if head else "") + "\n".join(tables.values())
    _check(path, old, new, tables)
    return new


def _check(path: Path, old: str, new: str, tables: dict[str, str]) -> None:
    refuse = (
        f"cannot update {path} safely: remove its [{'], ['.join(tables)}] tables yourself, or paste what "
        "`orch-mcp setup codex` prints"
    )
    if sys.version_info >= (3, 11):
        import tomllib

        try:
            before = tomllib.loads(old)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{refuse} (it is not valid TOML: {exc})") from None
        try:
            after = tomllib.loads(new)
        except tomllib.TOMLDecodeError:
            raise ConfigError(refuse) from None
        expected = tomllib.loads("\n".join(tables.values()))
        for name in tables:
            parent = before
            *outer, last = name.split(".")
            for part in outer:
                parent = parent.get(part, {})
            parent.pop(last, None)
        if after != _merged(before, expected):
            raise ConfigError(refuse)
    elif not simple_enough(old, tables):
        raise ConfigError(refuse + " (or run it with Python 3.11 or newer, which can check the result)")


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def simple_enough(text: str, tables: dict[str, str]) -> bool:
    """True if every table starts on a header line, no value spans lines, and our names appear only in headers."""
    last_parts = {name.rsplit(".", 1)[-1] for name in tables}
    for line in text.splitlines():
        stripped = line.strip()
        if '"""' in line or "'''" in line:
            return False
        if stripped.startswith("["):
            if not HEADER.fullmatch(line):
                return False
            continue
        if stripped.startswith("#"):
            continue
        key = stripped.split("=", 1)[0].strip().strip("\"'")
        if key.startswith("mcp_servers") or any(part in line for part in last_parts):
            return False
        if stripped.endswith(("[", "{", ",")):
            return False
    return True


def _ours(key: str, names: set[str]) -> bool:
    return key in names or any(key.startswith(name + ".") for name in names)


def _normalized(key: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in key.split("."))


def _key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _string(text: str) -> str:
    """A TOML basic string."""
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
