"""Flags every command shares, and what they resolve to; light enough for `orch-mcp serve` to check flags at once.

A flag wins over its environment twin, and a variable a flag replaces is not even read: a bad
REDIS_URL cannot stop a command given `--url`. A setting that cannot be used, from a flag or from the
environment, is a usage error (exit code 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from ..config import DEFAULT_NAMESPACE, RedisConfig, get_default_config, validate_url
from ..errors import ConfigError
from ..utils import validate_identifier

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Connection flag -> the variable it replaces.
CONNECTION_FLAGS = {"host": "REDIS_HOST", "port": "REDIS_PORT", "db": "REDIS_DB", "password": "REDIS_PASSWORD"}


def prog_name(command: str, module: str) -> str:
    """`python -m orch_mcp.cli.rpush` when run as that module, else `orch-mcp rpush`."""
    main_file = os.path.basename(sys.argv[0]) if sys.argv else ""
    if main_file and main_file == module.rsplit(".", 1)[-1] + ".py":
        return f"python -m {module}"
    return f"orch-mcp {command}"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def make_parser(
    prog: str, description: str, epilog: str | None = None, *, parser_class: type[Parser] = Parser
) -> Parser:
    """A parser with the project's error style; the description and epilog keep their line breaks."""
    return parser_class(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in low..high (a usage error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{value} is out of range; use {low}..{high}" if high is not None else f"{value} is below {low}"
            )
        return value

    return parse


def seconds(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is negative; use 0 or more seconds")
    return value


def add_connection_args(parser: argparse.ArgumentParser, *, namespace: bool = False, suppress: bool = False) -> None:
    """--url/--redis-url, --host, --port, --db, --password (and --namespace): flags win over the environment.

    With `suppress` the flags leave no default behind, so a subcommand can repeat them without
    overwriting what was given before the subcommand name.
    """
    default: Any = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("Redis connection (flags win over REDIS_URL, REDIS_HOST, REDIS_PORT, …)")
    group.add_argument(
        "--url",
        "--redis-url",
        dest="url",
        metavar="URL",
        default=default,
        help="redis://host:port/db, rediss:// for TLS or unix:///path (default: REDIS_URL)",
    )
    group.add_argument("--host", default=default, help="Redis host (default: REDIS_HOST or localhost)")
    group.add_argument(
        "--port", type=int_range(1, 65535), default=default, help="Redis port (default: REDIS_PORT or 6379)"
    )
    group.add_argument(
        "--db", type=int_range(0), default=default, help="Redis database number (default: REDIS_DB or 0)"
    )
    group.add_argument("--password", default=default, help="Redis password (default: REDIS_PASSWORD)")
    if namespace:
        group.add_argument(
            "--namespace",
            default=default,
            metavar="NS",
            help="namespace of the sessions on this Redis (default: ORCH_NAMESPACE or orch)",
        )


def redis_config(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> RedisConfig:
    """The Redis settings: the environment's, with the connection flags applied; ConfigError if unusable.

    `--url` cannot be combined with --host, --port, --db or --password (the URL names all of them).
    """
    env = os.environ if env is None else env
    url: str | None = getattr(args, "url", None)
    given = {name: getattr(args, name, None) for name in CONNECTION_FLAGS}
    given = {name: value for name, value in given.items() if value is not None}
    if url is not None:
        validate_url(url, "--url")
        if given:
            flags = ", ".join(f"--{name}" for name in given)
            raise ConfigError(f"--url names the whole server: drop {flags}, or put it in the URL")
    shadowed = {CONNECTION_FLAGS[name] for name in given}
    if url is not None or given:
        shadowed |= {"REDIS_URL", *(CONNECTION_FLAGS.values() if url is not None else ())}
    return get_default_config({k: v for k, v in env.items() if k not in shadowed}).with_overrides(url=url, **given)


def namespace(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> str:
    """The namespace: --namespace, else ORCH_NAMESPACE, else the default; InvalidIdentifierError if malformed."""
    env = os.environ if env is None else env
    flag: str | None = getattr(args, "namespace", None)
    if flag is not None:
        return validate_identifier(flag, "namespace")
    try:
        return validate_identifier(env.get("ORCH_NAMESPACE") or DEFAULT_NAMESPACE, "namespace")
    except ValueError as exc:
        raise ConfigError(f"ORCH_NAMESPACE: {exc}") from None
