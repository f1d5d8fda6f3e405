"""Migrations: applied once each, in order, under a lock; edited files refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.core.migrate import Migration, MigrationError, bundled_migrations, migrate
from tests.pgbouncer import PgBouncer


@pytest.fixture
async def conn(empty_database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(empty_database)
    yield connection
    await connection.close()


def _gateway(args: list[str], database_url: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_bundled_files_are_ordered_and_shipped() -> None:
    names = [m.name for m in bundled_migrations()]
    assert names[0] == "0001_init.sql"
    assert names == sorted(names)


async def test_second_run_changes_nothing(conn: asyncpg.Connection) -> None:
    first = await migrate(conn)
    assert first == [m.name for m in bundled_migrations()]
    before = await conn.fetch("SELECT name, checksum, applied_at FROM schema_migrations")
    assert await migrate(conn) == []
    assert await conn.fetch("SELECT name, checksum, applied_at FROM schema_migrations") == before


async def test_an_edited_applied_file_is_refused(conn: asyncpg.Connection) -> None:
    await migrate(conn)
    original = bundled_migrations()[0]
    edited = Migration(original.name, original.sql + "\n-- edited\n")
    with pytest.raises(MigrationError, match=r"0001_init\.sql was edited"):
        await migrate(conn, [edited])


async def test_a_failing_file_leaves_nothing_behind(conn: asyncpg.Connection) -> None:
    broken = [
        Migration("0001_ok.sql", "CREATE TABLE a (x int)"),
        Migration("0002_bad.sql", "CREATE TABLE b (x int); SELECT nonsense"),
    ]
    with pytest.raises(asyncpg.PostgresError):
        await migrate(conn, broken)
    assert await conn.fetchval("SELECT to_regclass('b')") is None
    assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1


@pytest.fixture(params=["direct", "pgbouncer"])
def migrate_url(request: pytest.FixtureRequest, empty_database: str) -> str:
    """The empty database, straight or through PgBouncer in transaction pooling mode."""
    if request.param == "direct":
        return empty_database
    bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
    asyncio.run(bouncer.fill_pool(empty_database))
    return bouncer.url(empty_database)


def test_four_processes_at_once_apply_each_file_exactly_once(
    migrate_url: str, empty_database: str, tmp_path: Path
) -> None:
    procs = [_gateway(["migrate"], migrate_url, tmp_path) for _ in range(4)]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], outputs
    applied = [out for out, _ in outputs if out.startswith("applied")]
    assert len(applied) == 1, outputs
    assert sum("up to date" in out for out, _ in outputs) == 3

    async def rows_and_locks() -> tuple[list[str], int]:
        conn = await asyncpg.connect(empty_database)
        try:
            rows = await conn.fetch("SELECT name FROM schema_migrations")
            # No lock stays behind, not even on a server connection a pooler keeps open.
            locks = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            return sorted(r["name"] for r in rows), locks
        finally:
            await conn.close()

    assert asyncio.run(rows_and_locks()) == ([m.name for m in bundled_migrations()], 0)


def test_cli_refuses_an_edited_file_with_one_line(empty_database: str, tmp_path: Path) -> None:
    assert _gateway(["migrate"], empty_database, tmp_path).wait(60) == 0

    async def tamper() -> None:  # what the database looks like after someone edits 0001
        conn = await asyncpg.connect(empty_database)
        try:
            await conn.execute("UPDATE schema_migrations SET checksum = 'other'")
        finally:
            await conn.close()

    asyncio.run(tamper())
    proc = _gateway(["migrate"], empty_database, tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [
        "gateway: migration 0001_init.sql was edited after it was applied (checksum differs); "
        "restore the original file and add a new migration instead"
    ]
