"""Expiry notices: token.expiring 7 days and 1 day before, token.expired after, each once,
however many admin instances look at the same time."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import asyncpg
from standardwebhooks import Webhook as Verifier

from admin import signing
from admin.app import create_app
from admin.delivery import DeliveryOptions
from admin.notices import NoticeScheduler
from gateway.core.config import Settings
from gateway.core.journal import CLI
from gateway.core.store import Store
from gateway.core.store_webhooks import WebhookStore
from tests.conftest import ADMIN_AUTH
from tests.helpers import CHEAP_HASHER, issue, until
from tests.receiver import Receiver


async def expiring(store: Store, pool: asyncpg.Pool, project_id: str, interval: str) -> str:
    """A token of the project expiring at now() + ``interval`` (negative: in the past)."""
    token_id = (await issue(store, project_id=project_id, hasher=CHEAP_HASHER)).token_id
    await pool.execute(
        "UPDATE tokens SET expires_at = now() + $1::text::interval WHERE id = $2",
        interval,
        token_id,
    )
    return token_id


def scheduler(webhooks: WebhookStore) -> NoticeScheduler:
    return NoticeScheduler(webhooks, interval=60, keep_days=30)


async def outbox(pool: asyncpg.Pool) -> list[tuple[str, str, str | None]]:
    rows = await pool.fetch("SELECT type, data FROM outbox_events ORDER BY created_at")
    found = []
    for row in rows:
        data = json.loads(row["data"])
        found.append((row["type"], data["token"]["id"], data.get("within")))
    return found


async def test_each_notice_is_emitted_once_when_due(
    store: Store, webhooks: WebhookStore, pg_pool: asyncpg.Pool
) -> None:
    project = await store.create_project("expiring", None, actor=CLI)
    week = await expiring(store, pg_pool, project.id, "3 days")
    day = await expiring(store, pg_pool, project.id, "5 hours")
    expired = await expiring(store, pg_pool, project.id, "-1 minute")
    await expiring(store, pg_pool, project.id, "20 days")  # not yet
    await expiring(store, pg_pool, project.id, "-30 days")  # expired before notices existed
    await issue(store, project_id=project.id, hasher=CHEAP_HASHER, expires_in_days=None)
    await pg_pool.execute("TRUNCATE outbox_events CASCADE")  # token.created events aside
    looker = scheduler(webhooks)

    emitted = await looker.run_once()
    assert {(n.type, n.token_id, n.within) for n in emitted} == {
        ("token.expiring", week, "7d"),
        ("token.expiring", day, "1d"),
        ("token.expired", expired, None),
    }
    assert await looker.run_once() == []
    assert sorted(await outbox(pg_pool)) == sorted(
        [
            ("token.expiring", week, "7d"),
            ("token.expiring", day, "1d"),
            ("token.expired", expired, None),
        ]
    )
    # A day later the first one gets its 1-day notice, and only that.
    await pg_pool.execute(
        "UPDATE tokens SET expires_at = now() + interval '20 hours' WHERE id = $1", week
    )
    assert [(n.type, n.token_id, n.within) for n in await looker.run_once()] == [
        ("token.expiring", week, "1d")
    ]


async def test_racing_instances_emit_each_notice_exactly_once(
    store: Store, webhooks: WebhookStore, pg_pool: asyncpg.Pool, database_url: str
) -> None:
    project = await store.create_project("expiring", None, actor=CLI)
    due = {await expiring(store, pg_pool, project.id, f"{n + 1} hours") for n in range(12)}
    await pg_pool.execute("TRUNCATE outbox_events CASCADE")
    pools = [await asyncpg.create_pool(database_url, min_size=2, max_size=2) for _ in range(3)]
    try:
        lookers = [scheduler(WebhookStore(pool)) for pool in pools for _ in range(2)]
        totals = []
        for _ in range(3):
            rounds = await asyncio.gather(*(looker.run_once() for looker in lookers))
            totals.append(sum(len(found) for found in rounds))
        assert totals == [12, 0, 0]
    finally:
        for pool in pools:
            await pool.close()
    events = await outbox(pg_pool)
    assert len(events) == 12 and {token_id for _, token_id, _ in events} == due


def test_the_scheduler_looks_at_least_once_a_minute() -> None:
    assert DeliveryOptions().notice_interval <= 60


async def test_a_running_admin_sends_the_notices_to_subscribed_webhooks(
    settings: Settings,
    store: Store,
    webhooks: WebhookStore,
    pg_pool: asyncpg.Pool,
    receiver: Receiver,
    aiohttp_client: Any,
) -> None:
    project = await store.create_project("expiring", None, actor=CLI)
    secret = signing.new_secret()
    await webhooks.create(
        project.id, url=receiver.url(), events=["token.expiring"], secret=secret, actor=CLI
    )
    token_id = await expiring(store, pg_pool, project.id, "2 days")
    fast = replace(DeliveryOptions(), notice_interval=0.05, poll_interval=0.05)
    await aiohttp_client(create_app(settings, delivery=fast), headers=ADMIN_AUTH)
    await until(lambda: receiver.received, what="the notice delivered")
    (item,) = receiver.received
    body = Verifier(secret).verify(item.body, item.headers)
    assert body["type"] == "token.expiring"
    assert body["data"]["within"] == "7d" and body["data"]["token"]["id"] == token_id
