"""The usage ledger on a real Postgres: one transaction per flush, exact totals through a
lost COMMIT answer and outages, quota events once per threshold."""

from __future__ import annotations

import json
from datetime import date

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from gateway.core.journal import CLI
from gateway.core.store import Store
from gateway.core.store_usage import Batch, UsageStore, crossed, utc_day
from gateway.proxy.lastused import LastUsed
from gateway.proxy.metrics import GatewayMetrics
from gateway.proxy.usage import Ledger
from tests.helpers import FLUSHED_TABLES, Clock, project_with_tokens
from tests.relay import Relay

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
DAY0 = int(T0 // 86_400)


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics(CollectorRegistry())


async def totals(pool: asyncpg.Pool, project_id: str) -> dict[str, int]:
    row = await pool.fetchrow(
        "SELECT COALESCE(sum(proxied), 0) AS proxied, "
        "COALESCE(sum(upstream_errors), 0) AS upstream_errors, "
        "COALESCE(sum(rate_limited), 0) AS rate_limited, "
        "COALESCE(sum(forbidden), 0) AS forbidden FROM usage_daily WHERE project_id = $1",
        project_id,
    )
    return dict(row)


def flushes(metrics: GatewayMetrics, result: str) -> float | None:
    return metrics.registry.get_sample_value("gateway_usage_flushes_total", {"result": result})


def test_each_answer_lands_in_its_count() -> None:
    clock = Clock(T0)
    ledger = Ledger(clock)
    ledger.count("t", "p", 200, True)
    ledger.count("t", "p", 404, True)
    ledger.count("t", "p", 500, True)  # an upstream 500: proxied and an upstream error
    ledger.count("t", "p", 502, False)  # the gateway's own 502 and 504
    ledger.count("t", "p", 504, False)
    ledger.count("t", "p", 429, False)
    ledger.count("t", "p", 403, False)
    ledger.count("t", "p", 401, False)  # expired: none of the four
    ledger.count("t", "p", 400, False)
    clock.now = T0 + 86_400  # the next UTC day is its own row
    ledger.count("t", "p", 200, True)
    batch = ledger.take()
    assert batch is not None
    assert batch.counts == {("t", "p", DAY0): [3, 3, 1, 1], ("t", "p", DAY0 + 1): [1, 0, 0, 0]}
    assert ledger.take() is None
    assert utc_day(DAY0) == date(2027, 1, 15)


def test_quota_thresholds_are_crossed_once() -> None:
    assert crossed(0, 79, 100) == []
    assert crossed(79, 80, 100) == [("quota.warning", 80)]
    assert crossed(80, 99, 100) == []
    assert crossed(99, 100, 100) == [("quota.exhausted", 100)]
    assert crossed(10, 130, 100) == [("quota.warning", 80), ("quota.exhausted", 100)]
    assert crossed(100, 101, 100) == []
    assert crossed(0, 1, 1) == [("quota.warning", 1), ("quota.exhausted", 1)]


async def test_one_transaction_per_flush_whatever_the_load(
    store: Store, statements: asyncpg.Pool, metrics: GatewayMetrics
) -> None:
    project_id, ids = await project_with_tokens(store, 40)
    clock = Clock(T0)
    last_used = LastUsed(UsageStore(statements), metrics, clock=clock)
    ledger = last_used.ledger
    statuses = [(200, True), (500, True), (502, False), (429, False), (403, False)]
    for i in range(5000):
        token_id = ids[i % len(ids)]
        last_used.record(token_id)
        status, answered = statuses[i % len(statuses)]
        ledger.count(token_id, project_id, status, answered)
        ledger.unit(project_id, "day:2027-01-15", 10_000)
    await statements.execute("TRUNCATE test_statements")  # the tokens' creation is not a flush

    assert await last_used.flush()

    txids = await statements.fetch("SELECT DISTINCT txid, tbl FROM test_statements")
    assert len({row["txid"] for row in txids}) == 1
    assert {row["tbl"] for row in txids} == set(FLUSHED_TABLES)
    assert await totals(statements, project_id) == {
        "proxied": 2000,
        "upstream_errors": 2000,
        "rate_limited": 1000,
        "forbidden": 1000,
    }
    assert await UsageStore(statements).quota_used(project_id, "day:2027-01-15") == 5000
    assert flushes(metrics, "ok") == 1

    assert await last_used.flush()  # nothing pending: no transaction at all
    assert await statements.fetchval("SELECT count(DISTINCT txid) FROM test_statements") == 1


async def test_a_lost_commit_answer_is_not_applied_twice(
    database_url: str, store: Store, pg_pool: asyncpg.Pool, metrics: GatewayMetrics
) -> None:
    """The relay passes COMMIT on, lets Postgres commit, and resets the connection instead of
    relaying its answer: the flush fails, the batch is applied, the retry must not add it
    again, and counts recorded meanwhile go out with the retry."""
    project_id, [token_id] = await project_with_tokens(store, 1)
    relay = Relay(database_url)
    await relay.start()
    relayed = await asyncpg.create_pool(relay.url, min_size=1, max_size=2)
    try:
        last_used = LastUsed(UsageStore(relayed), metrics, clock=Clock(T0), timeout=5)
        for _ in range(7):
            last_used.record(token_id)
            last_used.ledger.count(token_id, project_id, 200, True)
        relay.lose_answer_to(b"COMMIT")

        assert not await last_used.flush()

        assert relay.answers_lost == 1
        assert (await totals(pg_pool, project_id))["proxied"] == 7  # committed after all
        assert flushes(metrics, "error") == 1
        assert last_used.usage_pending == 1

        last_used.ledger.count(token_id, project_id, 429, False)
        assert await last_used.flush()  # the same batch id again, and the new counts
        assert await last_used.flush()
    finally:
        await relayed.close()
        await relay.close()
    assert await totals(pg_pool, project_id) == {
        "proxied": 7,
        "upstream_errors": 0,
        "rate_limited": 1,
        "forbidden": 0,
    }
    assert last_used.usage_pending == 0
    assert await pg_pool.fetchval("SELECT count(*) FROM usage_batches") >= 2


async def test_counts_survive_an_outage_in_one_merged_batch(
    database_url: str, store: Store, pg_pool: asyncpg.Pool, metrics: GatewayMetrics
) -> None:
    project_id, [token_id] = await project_with_tokens(store, 1)
    relay = Relay(database_url)
    await relay.start()
    relayed = await asyncpg.create_pool(relay.url, min_size=1, max_size=2)
    try:
        last_used = LastUsed(UsageStore(relayed), metrics, clock=Clock(T0), timeout=5)
        await relay.cut()
        for attempt in range(3):
            last_used.ledger.count(token_id, project_id, 200, True)
            last_used.ledger.count(token_id, project_id, 504, False)
            assert not await last_used.flush()
            # Never sent in a COMMIT: merged, not one batch per failed interval.
            assert last_used.usage_pending == 1, attempt
        await relay.restore()
        assert await last_used.flush()
    finally:
        await relayed.close()
        await relay.close()
    assert await totals(pg_pool, project_id) == {
        "proxied": 3,
        "upstream_errors": 3,
        "rate_limited": 0,
        "forbidden": 0,
    }
    assert flushes(metrics, "error") == 3 and flushes(metrics, "ok") == 1


async def test_revoked_tokens_stay_counted_and_deleted_projects_are_skipped(
    store: Store, pg_pool: asyncpg.Pool, metrics: GatewayMetrics
) -> None:
    kept_project, [revoked] = await project_with_tokens(store, 1)
    gone_project, [orphan] = await project_with_tokens(store, 1)
    last_used = LastUsed(UsageStore(pg_pool), metrics, clock=Clock(T0))
    last_used.ledger.count(revoked, kept_project, 200, True)
    last_used.ledger.count(orphan, gone_project, 200, True)
    last_used.ledger.unit(gone_project, "day:2027-01-15", 5)
    assert await store.revoke_token(kept_project, revoked, actor=CLI)
    assert await store.delete_project(gone_project, actor=CLI)

    assert await last_used.flush()

    assert (await totals(pg_pool, kept_project))["proxied"] == 1
    assert (
        await pg_pool.fetchval("SELECT count(*) FROM usage_daily WHERE token_id = $1", orphan) == 0
    )


async def test_quota_events_are_written_once_per_threshold(
    store: Store, pg_pool: asyncpg.Pool, metrics: GatewayMetrics
) -> None:
    project_id, _ = await project_with_tokens(store, 1)
    usage = UsageStore(pg_pool)
    period = "day:2027-01-15"

    async def flush_units(units: int, limit: int = 10) -> None:
        await usage.flush([], [], [Batch({}, {(project_id, period): [units, limit]})])

    for units in (5, 2, 1, 1, 1, 3):  # 5, 7, 8 (warning), 9, 10 (exhausted), 13
        await flush_units(units)
    batch = Batch({}, {(project_id, period): [4, 10]})
    await usage.flush([], [], [batch])
    await usage.flush([], [], [batch])  # a retried batch crosses nothing again

    rows = await pg_pool.fetch(
        "SELECT type, data FROM outbox_events WHERE project_id = $1 AND type LIKE 'quota.%' "
        "ORDER BY created_at",
        project_id,
    )
    assert [row["type"] for row in rows] == ["quota.warning", "quota.exhausted"]
    warning = json.loads(rows[0]["data"])
    assert warning["project"]["id"] == project_id
    assert warning["quota"] == {
        "limit": 10,
        "period": "day",
        "period_start": "2027-01-15",
        "used": 8,
    }
    assert await usage.quota_used(project_id, period) == 17
