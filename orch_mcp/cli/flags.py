"""Flags every command shares, and what they resolve to; light enough for `orch-mcp serve` to check flags at once.

The settings flags (connection, namespace) are made from the settings model (orch_mcp.config), which
also checks them: a flag wins over its environment twin, and a variable a flag replaces is not even
read, so a bad REDIS_URL cannot stop a command given `--url`. A setting that cannot be used, from a
flag or from the environment, is a usage error (exit code 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from ..config import RedisConfig
from ..settings import TLS_FIELDS, NamespaceSettings, RedisSettings, ServeSettings, twin

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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


def add_setting_args(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    model: type[RedisSettings | NamespaceSettings | ServeSettings],
    names: Iterable[str],
    *,
    suppress: bool = False,
) -> None:
    """A flag for each named setting of `model`: its flags, metavar and help (with its variable and default) come
    from the model's field; the value stays text, checked by the model when the settings are loaded."""
    for name in names:
        field = model.model_fields[name]
        t = twin(field)
        parser.add_argument(
            *t.flags,
            dest=name,
            metavar=t.metavar,
            default=argparse.SUPPRESS if suppress else None,
            action="append" if t.repeat else "store",
            help=f"{t.help} {model.default_text(name)}",
        )


def add_connection_args(parser: argparse.ArgumentParser, *, namespace: bool = False, suppress: bool = False) -> None:
    """--url/--redis-url, --host, --port, --db, --username, --password, the --tls-* flags (and --namespace): flags
    win over the environment.

    With `suppress` the flags leave no default behind, so a subcommand can repeat them without
    overwriting what was given before the subcommand name.
    """
    group = parser.add_argument_group("Redis connection (flags win over REDIS_URL, REDIS_HOST, REDIS_PORT, …)")
    add_setting_args(group, RedisSettings, ("url", "host", "port", "db", "username", "password"), suppress=suppress)
    add_tls_args(parser, suppress=suppress)
    if namespace:
        add_setting_args(group, NamespaceSettings, ("namespace",), suppress=suppress)


def add_tls_args(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """--tls-ca-cert, --tls-cert, --tls-key, --tls-verify: the TLS settings of a rediss:// URL."""
    group = parser.add_argument_group("Redis TLS, for a rediss:// URL (flags win over REDIS_TLS_CA_CERT, …)")
    add_setting_args(group, RedisSettings, TLS_FIELDS, suppress=suppress)


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given on the command line, by setting name (a flag left out is not there)."""
    return {name: value for name, value in vars(args).items() if value is not None}


def redis_config(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> RedisConfig:
    """The Redis settings: the environment's, with the connection flags applied; ConfigError if unusable.

    `--url` cannot be combined with --host, --port, --db or --password (the URL names all of them).
    """
    return RedisConfig.from_settings(RedisSettings.load(given(args), env))


def namespace(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> str:
    """The namespace: --namespace, else ORCH_NAMESPACE, else the default; ConfigError if malformed."""
    return NamespaceSettings.load(given(args), env).namespace
