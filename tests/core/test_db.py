"""``db.UNREACHABLE``: what counts as "Postgres could not be asked", on real errors."""

from __future__ import annotations

import asyncio

import asyncpg

from gateway.core import db
from tests.helpers import free_port
from tests.relay import Relay


async def raised(query: object) -> BaseException:
    try:
        await query  # type: ignore[misc]
    except Exception as err:
        return err
    raise AssertionError("no error")


async def test_outages_are_unreachable(database_url: str) -> None:
    """Refused, cut mid-query, terminated mid-query (a restart or an administrator)."""
    refused = await raised(asyncpg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/x"))
    relay = Relay(database_url)
    await relay.start()
    relayed = await asyncpg.connect(relay.url)
    victim = await asyncpg.connect(database_url)
    killer = await asyncpg.connect(database_url)
    try:
        sleeping = asyncio.create_task(relayed.execute("SELECT pg_sleep(10)"))
        await asyncio.sleep(0.1)
        await relay.cut()
        cut = await raised(sleeping)
        pid = await victim.fetchval("SELECT pg_backend_pid()")
        sleeping = asyncio.create_task(victim.execute("SELECT pg_sleep(10)"))
        await asyncio.sleep(0.1)
        await killer.execute("SELECT pg_terminate_backend($1)", pid)
        terminated = await raised(sleeping)
    finally:
        for conn in (relayed, victim, killer):
            conn.terminate()
        await relay.close()
    for err in (refused, cut, terminated):
        assert isinstance(err, db.UNREACHABLE), repr(err)


async def test_bugs_and_schema_errors_are_not(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        errors = [
            await raised(conn.fetchval("SELECT count(*) FROM no_such_table")),
            await raised(conn.fetchval("SELECT $1::int", "not a number")),  # DataError
            await raised(conn.execute("INSERT INTO projects (id) VALUES (NULL)")),
        ]
        async with conn.transaction():
            busy = conn.fetchval("SELECT pg_sleep(0.2)")
            task = asyncio.ensure_future(busy)
            await asyncio.sleep(0)
            errors.append(await raised(conn.fetchval("SELECT 1")))  # another one in progress
            await task
    finally:
        await conn.close()
    assert [type(err) for err in errors] == [
        asyncpg.UndefinedTableError,
        asyncpg.DataError,
        asyncpg.NotNullViolationError,
        asyncpg.InterfaceError,
    ]
    for err in errors:
        assert not isinstance(err, db.UNREACHABLE), repr(err)
