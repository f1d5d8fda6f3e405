"""The ``gateway`` command: ``migrate``, ``serve`` and ``up``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from gateway.core import migrate
from gateway.core.clikit import Parser, commands_of, run, subcommand
from gateway.core.config import Settings

from . import serve, up


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied = asyncio.run(migrate.apply(settings))
    if applied:
        print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        print("database is up to date")
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    return serve.serve(settings, migrate=not args.no_migrate)


def _up(settings: Settings, args: argparse.Namespace) -> int:
    return up.up(settings)


def build_parser() -> Parser:
    parser = Parser(prog="gateway", description="Tollgate: the authenticating reverse proxy.")
    subparsers = commands_of(parser)
    subcommand(subparsers, "migrate", _migrate, "apply pending database migrations")
    subcommand(subparsers, "serve", _serve, "run the proxy", migrate_flag=True)
    subcommand(
        subparsers, "up", _up, "local all-in-one: database, admin API, proxy and demo upstream"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run("gateway", build_parser(), argv)
