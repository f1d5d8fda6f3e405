"""Last-used write-behind on a real Postgres: batching, ordering, outages."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from gateway.core.config import Settings
from gateway.core.journal import CLI
from gateway.core.migrate import migrate
from gateway.core.store import Store
from gateway.core.store_usage import UsageStore
from gateway.proxy.lastused import LastUsed, flushing
from gateway.proxy.metrics import GatewayMetrics
from tests.helpers import Clock, project_with_tokens
from tests.relay import Relay

T0 = 1_800_000_000.0  # a fixed epoch second, so written times can be compared exactly


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics(CollectorRegistry())


async def update_count(pool: asyncpg.Pool) -> int:
    """UPDATE statements on ``tokens`` so far (recorded by the ``statements`` fixture)."""
    n: int = await pool.fetchval(
        "SELECT count(*) FROM test_statements WHERE tbl = 'tokens' AND op = 'UPDATE'"
    )
    return n


async def last_used_at(pool: asyncpg.Pool, token_id: str) -> float | None:
    at: datetime | None = await pool.fetchval(
        "SELECT last_used_at FROM tokens WHERE id = $1", token_id
    )
    return None if at is None else at.timestamp()


def flushes(metrics: GatewayMetrics, result: str) -> float | None:
    return metrics.registry.get_sample_value("gateway_last_used_flushes_total", {"result": result})


def pending_gauge(metrics: GatewayMetrics) -> float | None:
    return metrics.registry.get_sample_value("gateway_last_used_pending")


async def test_one_statement_per_flush_whatever_the_request_count(
    store: Store, pg_pool: asyncpg.Pool, statements: asyncpg.Pool, metrics: GatewayMetrics
) -> None:
    _, ids = await project_with_tokens(store, 40)
    clock = Clock(T0)
    last_used = LastUsed(UsageStore(pg_pool), metrics, clock=clock)
    for i in range(2000):
        clock.now = T0 + i
        last_used.record(ids[i % len(ids)])
    assert pending_gauge(metrics) == len(ids)

    assert await last_used.flush()

    assert await update_count(statements) == 1
    for k, token_id in enumerate(ids):
        # the latest of the uses of token k: i = 2000 - 40 + k
        assert await last_used_at(statements, token_id) == T0 + 1960 + k
    assert pending_gauge(metrics) == 0
    assert flushes(metrics, "ok") == 1

    assert await last_used.flush()  # nothing pending: no statement at all
    assert await update_count(statements) == 1


async def test_last_used_never_moves_backwards(
    store: Store, pg_pool: asyncpg.Pool, metrics: GatewayMetrics
) -> None:
    _, [token_id] = await project_with_tokens(store, 1)
    clock = Clock(T0 + 100)
    last_used = LastUsed(UsageStore(pg_pool), metrics, clock=clock)
    last_used.record(token_id)
    await last_used.flush()

    # Another process (or a late flush) holding an older time must not win.
    clock.now = T0 + 50
    last_used.record(token_id)
    assert await last_used.flush()

    assert await last_used_at(pg_pool, token_id) == T0 + 100


async def test_deleted_tokens_are_skipped(
    store: Store, pg_pool: asyncpg.Pool, metrics: GatewayMetrics
) -> None:
    project_id, [kept, revoked] = await project_with_tokens(store, 2)
    last_used = LastUsed(UsageStore(pg_pool), metrics, clock=Clock(T0))
    last_used.record(kept)
    last_used.record(revoked)
    assert await store.revoke_token(project_id, revoked, actor=CLI)

    assert await last_used.flush()

    assert await last_used_at(pg_pool, kept) == T0
    assert await pg_pool.fetchval("SELECT count(*) FROM tokens WHERE id = $1", revoked) == 0
    assert last_used.pending == 0


async def test_entries_survive_a_database_outage(
    database_url: str,
    pg_pool: asyncpg.Pool,
    metrics: GatewayMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.proxy.lastused")
    _, ids = await project_with_tokens(Store(pg_pool), 3)
    relay = Relay(database_url)
    await relay.start()
    relayed = await asyncpg.create_pool(relay.url, min_size=1, max_size=2)
    try:
        clock = Clock(T0)
        last_used = LastUsed(UsageStore(relayed), metrics, clock=clock, timeout=5)
        for token_id in ids:
            last_used.record(token_id)

        await relay.cut()
        assert not await last_used.flush()
        assert flushes(metrics, "error") == 1
        assert pending_gauge(metrics) == 3

        # Uses during the outage merge with the failed batch; the later time wins.
        clock.now = T0 + 7
        last_used.record(ids[0])
        assert not await last_used.flush()
        assert pending_gauge(metrics) == 3

        await relay.restore()
        assert await last_used.flush()
    finally:
        await relayed.close()
        await relay.close()

    # The outage is said when it starts and when it ends, not at every failed flush.
    said = [
        (r.levelname, r.getMessage()) for r in caplog.records if r.name == "gateway.proxy.lastused"
    ]
    assert [level for level, _ in said] == ["WARNING", "INFO"], said
    assert said[0][1].startswith("writing 3 last-used time(s) failed, will retry")
    assert said[1][1] == "last-used times written again after 2 failed attempt(s)"
    assert [await last_used_at(pg_pool, t) for t in ids] == [T0 + 7, T0, T0]
    assert flushes(metrics, "ok") == 1
    assert pending_gauge(metrics) == 0


async def test_uses_during_a_failing_write_are_merged_later_time_wins(
    store: Store, pg_pool: asyncpg.Pool, metrics: GatewayMetrics
) -> None:
    _, ids = await project_with_tokens(store, 2)
    clock = Clock(T0)
    last_used = LastUsed(UsageStore(pg_pool), metrics, clock=clock)
    for token_id in ids:
        last_used.record(token_id)

    async with pg_pool.acquire() as locker:
        # Hold the row so the flush's UPDATE waits, record a newer use meanwhile, then
        # kill the flush's backend: the write fails while newer entries already exist.
        held = locker.transaction()
        await held.start()
        await locker.execute("SELECT 1 FROM tokens WHERE id = $1 FOR UPDATE", ids[0])
        flush = asyncio.create_task(last_used.flush())
        backend = await waiting_update(pg_pool)
        clock.now = T0 + 7
        last_used.record(ids[0])
        await pg_pool.execute("SELECT pg_terminate_backend($1)", backend)
        assert not await flush
        await held.rollback()

    assert flushes(metrics, "error") == 1
    assert await last_used.flush()
    assert [await last_used_at(pg_pool, t) for t in ids] == [T0 + 7, T0]


async def waiting_update(pool: asyncpg.Pool) -> int:
    """The backend pid of the last-used UPDATE once it waits on a row lock."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid: int | None = await pool.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE tokens%'"
        )
        if pid is not None:
            return pid
        await asyncio.sleep(0.01)
    raise AssertionError("the last-used UPDATE never waited on the lock")


async def test_the_flusher_writes_on_its_interval_and_on_the_way_out(
    settings: Settings, store: Store, pg_pool: asyncpg.Pool, metrics: GatewayMetrics
) -> None:
    _, [periodic, at_exit] = await project_with_tokens(store, 2)
    # LAST_USED_FLUSH_INTERVAL=0.05 in tests
    async with flushing(
        LastUsed(UsageStore(pg_pool), metrics), settings.last_used_flush_interval
    ) as last_used:
        last_used.record(periodic)
        deadline = time.monotonic() + 10
        while await last_used_at(pg_pool, periodic) is None:
            assert time.monotonic() < deadline, "the background flush never wrote"
            await asyncio.sleep(0.01)
        # A use just before shutdown is written on the way out, not lost.
        last_used.record(at_exit)
    assert await last_used_at(pg_pool, at_exit) is not None


async def test_shutdown_flush_gives_up_after_its_deadline(
    database_url: str,
    pg_pool: asyncpg.Pool,
    metrics: GatewayMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, [token_id] = await project_with_tokens(Store(pg_pool), 1)
    relay = Relay(database_url)
    await relay.start()
    relayed = await asyncpg.create_pool(relay.url, min_size=1, max_size=2)
    try:
        last_used = LastUsed(UsageStore(relayed), metrics, clock=Clock(T0))
        last_used.record(token_id)
        await relay.cut()
        started = time.monotonic()
        await last_used.close(within=0.5)
        assert time.monotonic() - started < 3  # a stopping process is not held hostage
        assert last_used.pending == 1
        assert (
            "1 last-used time(s) and 0 usage batch(es) could not be written at shutdown"
            in caplog.text
        )
    finally:
        await relayed.close()
        await relay.close()


async def test_a_schema_error_is_logged_once_then_retried_ever_later(
    empty_database: str, metrics: GatewayMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    """No ``tokens`` table (an unmigrated database): not an outage. The first failure is
    logged with its traceback, each failure is counted, the retries back off, and the
    entries wait; once the table exists the next write succeeds and the pace is back."""
    caplog.set_level(logging.INFO, logger="gateway.proxy.lastused")
    pool = await asyncpg.create_pool(empty_database, min_size=1, max_size=2)
    assert pool is not None
    try:
        last_used = LastUsed(UsageStore(pool), metrics, clock=Clock(T0))
        last_used.record("t1")
        delays = []
        for _ in range(9):
            assert not await last_used.flush()
            delays.append(last_used.delay(5.0))
        assert delays == [10, 20, 40, 80, 160, 300, 300, 300, 300]
        assert flushes(metrics, "error") == 9
        assert last_used.pending == 1 and pending_gauge(metrics) == 1
        [traceback] = [record for record in caplog.records if record.exc_info]
        assert traceback.levelno == logging.ERROR
        assert traceback.exc_info is not None
        assert isinstance(traceback.exc_info[1], asyncpg.UndefinedTableError)
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 9
        assert "will retry:" not in caplog.text  # the outage warning: this is no outage

        async with pool.acquire() as conn:
            await migrate(conn)
        assert await last_used.flush()
        assert last_used.delay(5.0) == 5.0
        assert "written again after 9 failed attempt(s)" in caplog.text
    finally:
        await pool.close()


async def test_a_schema_error_at_shutdown_is_not_retried_for_seconds(
    empty_database: str, metrics: GatewayMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    pool = await asyncpg.create_pool(empty_database, min_size=1, max_size=2)
    assert pool is not None
    try:
        last_used = LastUsed(UsageStore(pool), metrics, clock=Clock(T0))
        last_used.record("t1")
        await last_used.close(within=30)
        assert flushes(metrics, "error") == 1  # one try, not 0.2 s retries for 30 s
        assert (
            "1 last-used time(s) and 0 usage batch(es) could not be written at shutdown"
            in caplog.text
        )
    finally:
        await pool.close()
