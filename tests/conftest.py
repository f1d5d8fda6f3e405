"""Shared fixtures: a real Postgres (``DATABASE_URL`` or an embedded server), a fresh
database per test session, and settings pointing at it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from gateway.core.config import Settings
from gateway.core.events import CHANNEL
from gateway.core.migrate import migrate
from gateway.core.store import Store
from gateway.core.store_webhooks import WebhookStore
from gateway.proxy.app import running, serve
from tests.helpers import GatewayClient, Issued, issue
from tests.pgbouncer import BINARY, MISSING, PgBouncer, running_pgbouncer
from tests.receiver import Receiver

ADMIN_TOKEN = "test-admin-token-" + "x" * 32


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (query string, e.g. a socket dir, kept)."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@pytest.fixture(scope="session")
def server_url() -> str:
    """A Postgres server: ``DATABASE_URL`` when set, else the embedded one.

    The embedded server's data lives in one fixed directory outside pytest's rotating
    temp folders (which a concurrent session may delete under a running server); the
    package reference-counts the processes using it, so concurrent sessions share it
    and the last one out stops it. Each session still gets its own database.
    """
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from gateway.core import db

    data_dir = Path(tempfile.gettempdir()) / f"tollgate-tests-{os.getuid()}"
    return db.database_url(Settings.from_env({"GATEWAY_DATA_DIR": str(data_dir)}))


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A brand-new, empty database on ``server_url``, dropped on exit."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    asyncio.run(_execute(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server_url, name)
    finally:
        asyncio.run(_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _migrate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped afterwards."""
    with scratch_database(server_url, "tollgate_test") as url:
        asyncio.run(_migrate(url))
        yield url


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    """A brand-new, unmigrated database, dropped afterwards."""
    with scratch_database(server_url, "tollgate_empty") as url:
        yield url


@pytest.fixture(scope="session")
def pgbouncer(server_url: str) -> Iterator[PgBouncer]:
    """A real PgBouncer in transaction pooling mode in front of ``server_url``
    (tests/pgbouncer.py); its ``url(database_url)`` reaches any database through it."""
    if BINARY is None:
        pytest.skip(MISSING)
    with running_pgbouncer(server_url) as bouncer:
        yield bouncer


@pytest.fixture
async def own_database(empty_database: str) -> str:
    """A fresh, migrated database of this test's own, for tests that break its schema."""
    await _migrate(empty_database)
    return empty_database


@pytest.fixture
def environ(database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment variables for a command or app under test."""
    return {
        "DATABASE_URL": database_url,
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "UPSTREAM_URL": "http://127.0.0.1:9",
        "LAST_USED_FLUSH_INTERVAL": "0.05",
        # Webhook receivers in tests are local (the guard has tests of its own).
        "WEBHOOK_ALLOW_PRIVATE": "true",
    }


@pytest.fixture
def settings(environ: dict[str, str]) -> Settings:
    return Settings.from_env(environ)


@pytest.fixture
async def pg_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the session database, emptied of projects and tokens first."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
    assert pool is not None
    await pool.execute("TRUNCATE projects CASCADE")
    yield pool
    await pool.close()


@pytest.fixture
def store(pg_pool: asyncpg.Pool) -> Store:
    return Store(pg_pool)


@pytest.fixture
async def events(database_url: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """What a gateway would hear: the store's notifications, on a real connection."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    conn = await asyncpg.connect(database_url)
    await conn.add_listener(CHANNEL, lambda *args: queue.put_nowait(json.loads(args[3])))
    yield queue
    await conn.close()


@pytest.fixture
async def webhooks(pg_pool: asyncpg.Pool) -> WebhookStore:
    """The webhook store, its outbox and notices emptied first (projects are, by pg_pool)."""
    await pg_pool.execute("TRUNCATE outbox_events, event_notices CASCADE")
    return WebhookStore(pg_pool)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on a real socket (see tests/receiver.py)."""
    started = await Receiver().start()
    yield started
    await started.close()


ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def admin_client(settings: Settings, pg_pool: asyncpg.Pool, aiohttp_client: Any) -> Any:
    """The admin app on a real HTTP server, sending the admin token by default."""
    from admin.app import create_app

    return await aiohttp_client(create_app(settings), headers=ADMIN_AUTH)


# ---------------------------------------------------------------- the request path


IssueToken = Callable[..., Awaitable[Issued]]


@pytest.fixture
async def upstream(aiohttp_server: Any) -> Any:
    """A real upstream app on a real socket (see tests/upstream.py)."""
    from tests.upstream import create_upstream

    return await aiohttp_server(create_upstream())


@pytest.fixture
def gateway_settings(settings: Settings, upstream: Any) -> Settings:
    """Settings with UPSTREAM_URL at the upstream's ``/base`` path."""
    return dataclasses.replace(settings, upstream_url=str(upstream.make_url("/base")))


StartGateway = Callable[..., Awaitable[GatewayClient]]


@pytest.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    """Start gateways (``running()`` served on 127.0.0.1 by Tollgate's own server), each
    with a client; all are stopped when the test ends. Options go to ``running()``."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(settings: Settings, **options: Any) -> GatewayClient:
            gateway = await stack.enter_async_context(running(settings, **options))
            server = await stack.enter_async_context(
                serve(gateway, "127.0.0.1", 0, shutdown_timeout=1.0)
            )
            session = await stack.enter_async_context(aiohttp.ClientSession())
            return GatewayClient(gateway, server, session)

        yield start


@pytest.fixture
async def gateway_client(
    gateway_settings: Settings, pg_pool: asyncpg.Pool, start_gateway: StartGateway
) -> GatewayClient:
    return await start_gateway(gateway_settings)


@pytest.fixture
def issue_token(store: Store) -> IssueToken:
    """Create a project (unless given) and a token in it (see ``helpers.issue``)."""

    async def issue_one(**options: Any) -> Issued:
        return await issue(store, **options)

    return issue_one
