"""Fixtures of the request path's tests that more than one module needs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.helpers import FLUSHED_TABLES


@pytest.fixture
async def statements(pg_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """Statement-level triggers on every table a flush writes record each INSERT and UPDATE
    statement in ``test_statements``: its transaction id, table and operation (Postgres' own
    record, whatever the client does). Yields the pool to read that table with."""
    triggers = "".join(
        f"CREATE OR REPLACE TRIGGER test_statement AFTER INSERT OR UPDATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION test_record_statement();"
        for table in FLUSHED_TABLES
    )
    await pg_pool.execute(
        "CREATE TABLE IF NOT EXISTS test_statements "
        "(txid bigint NOT NULL, tbl text NOT NULL, op text NOT NULL);"
        "TRUNCATE test_statements;"
        "CREATE OR REPLACE FUNCTION test_record_statement() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN INSERT INTO test_statements VALUES (txid_current(), TG_TABLE_NAME, TG_OP); "
        "RETURN NULL; END $$;" + triggers
    )
    try:
        yield pg_pool
    finally:
        drops = "".join(
            f"DROP TRIGGER IF EXISTS test_statement ON {table};" for table in FLUSHED_TABLES
        )
        await pg_pool.execute(drops + "DROP TABLE IF EXISTS test_statements")
