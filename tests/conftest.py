"""Shared fixtures: a real Postgres (``DATABASE_URL`` or an embedded server), a fresh
database per test session, and settings pointing at it."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from gateway.config import Settings
from gateway.migrate import migrate
from gateway.store import Store

ADMIN_TOKEN = "test-admin-token-" + "x" * 32


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (query string, e.g. a socket dir, kept)."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Postgres server: ``DATABASE_URL`` when set, else an embedded one for this session."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from gateway import db

    data_dir = tmp_path_factory.mktemp("embedded")
    return db.database_url(Settings.from_env({"GATEWAY_DATA_DIR": str(data_dir)}))


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped afterwards."""
    name = f"tollgate_test_{secrets.token_hex(4)}"

    async def create() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(with_database(server_url, name))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield with_database(server_url, name)
    asyncio.run(drop())


@pytest.fixture
def environ(database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment variables for a command or app under test."""
    return {
        "DATABASE_URL": database_url,
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "UPSTREAM_URL": "http://127.0.0.1:9",
        "LAST_USED_FLUSH_INTERVAL": "0.05",
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


ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def admin_client(settings: Settings, pg_pool: asyncpg.Pool, aiohttp_client: Any) -> Any:
    """The admin app on a real HTTP server, sending the admin token by default."""
    from admin.app import create_app

    return await aiohttp_client(create_app(settings), headers=ADMIN_AUTH)
