"""Postgres connections: the URL (or the embedded server) and asyncpg pools.

Every connection is opened with :data:`POOLER_SAFE`, so ``DATABASE_URL`` may point at
PgBouncer in transaction pooling mode, where consecutive transactions of one client
connection run on different server connections. asyncpg's statement cache keeps
*named* prepared statements on the server connection for reuse; through such a pooler
the next use lands where the name is unknown ("prepared statement ... does not exist")
or already taken by another client ("... already exists"). With the cache off, asyncpg
uses the unnamed statement and sends Parse again in the same message batch as Bind
and Execute, so no statement outlives its transaction (asyncpg >= 0.29, issue #1058).
The price, a Parse and a plan per query, is paid only off the request path's hot
part (cache misses, the periodic flush, admin calls); README "Running behind
PgBouncer" gives the measured figure and why this is not a setting.

:data:`UNREACHABLE` is the one tuple of errors meaning "Postgres could not be asked":
the network, the server going away, a timeout. Anything else a query raises (a
missing table, a violated constraint, a bad argument) is a bug or a schema mismatch,
and callers let it surface instead of treating it as an outage. A connection used
after it was lost raises asyncpg's plain ``InterfaceError`` (as misuse does): code
holding one connection checks ``is_closed()`` first; pools replace lost ones.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from . import embedded
from .config import ConfigError, Settings, mask_url

CONNECT_TIMEOUT = 10.0

# asyncpg connection options that work directly and through a transaction pooler alike.
POOLER_SAFE: dict[str, Any] = {"statement_cache_size": 0}

UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable network (ConnectionError and its kin)
    TimeoutError,
    # SQLSTATE 08, connection exceptions; with asyncpg's ConnectionDoesNotExistError, the
    # connection lost mid-query. Not asyncpg.InterfaceError as a whole: it also covers
    # DataError (a bad query argument) and misuse of a connection, which are bugs.
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,  # 57P03: starting up, shutting down
    asyncpg.AdminShutdownError,  # 57P01: terminated by an administrator or a restart
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300: overloaded
)


def database_url(settings: Settings) -> str:
    """``DATABASE_URL``, or the URL of the embedded Postgres (started on demand)."""
    if settings.database_url is not None:
        return settings.database_url
    return embedded.start(settings.data_dir)


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """An asyncpg pool; ConfigError if the database cannot be reached."""
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT, **POOLER_SAFE
        )
    except (*UNREACHABLE, asyncpg.PostgresError, ValueError) as err:
        raise _unreachable(url, err) from None
    assert pool is not None
    return pool


async def connect(url: str, *, variable: str = "DATABASE_URL") -> asyncpg.Connection:
    """One connection (migrations, LISTEN); ConfigError naming ``variable`` if it cannot be made."""
    try:
        return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT, **POOLER_SAFE)
    except (*UNREACHABLE, asyncpg.PostgresError, ValueError) as err:
        raise _unreachable(url, err, variable) from None


def _unreachable(url: str, err: BaseException, variable: str = "DATABASE_URL") -> ConfigError:
    lines = str(err).strip().splitlines()
    reason = lines[0] if lines else type(err).__name__
    return ConfigError(variable, f"cannot connect to {mask_url(url)}: {reason}")
