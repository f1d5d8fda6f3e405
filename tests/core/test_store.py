"""The store on a real Postgres: notifications, pagination, forward-only last use."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from gateway.core import events
from gateway.core.journal import CLI
from gateway.core.store import InvalidCursor, Store
from gateway.core.tokens import generate
from tests.helpers import until


async def _token(store: Store, project_id: str, days: int | None = 30) -> str:
    token = generate("tg")
    created = await store.create_token(
        project_id,
        token.id,
        secret_hash="$argon2id$x",
        description="",
        expires_in_days=days,
        actor=CLI,
    )
    assert created is not None
    return token.id


async def test_pagination_walks_every_token_newest_first(store: Store) -> None:
    project = await store.create_project("p", None, actor=CLI)
    ids = [await _token(store, project.id) for _ in range(7)]
    seen, cursor = [], None
    while True:
        page = await store.list_tokens(project.id, limit=3, cursor=cursor)
        seen += [t.id for t in page.tokens]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))


async def test_bad_cursor_is_rejected(store: Store) -> None:
    with pytest.raises(InvalidCursor):
        await store.list_tokens("x", limit=3, cursor="not-a-cursor")


async def test_revoke_and_delete_notify_in_the_same_transaction(
    store: Store, database_url: str
) -> None:
    received: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    await listener.add_listener(events.CHANNEL, lambda *a: received.put_nowait(json.loads(a[3])))
    try:
        project = await store.create_project("p", None, actor=CLI)
        token_id = await _token(store, project.id)
        assert await store.revoke_token(project.id, token_id, actor=CLI)
        event = await asyncio.wait_for(received.get(), 5)
        assert event["kind"] == "token_revoked" and event["token_id"] == token_id
        assert not await store.revoke_token(
            project.id, token_id, actor=CLI
        )  # already gone, no event
        await _token(store, project.id)
        assert await store.delete_project(project.id, actor=CLI)
        event = await asyncio.wait_for(received.get(), 5)
        assert event == {**event, "kind": "project_deleted", "project_id": project.id}
        assert await store.get_project(project.id) is None
        assert (await store.list_tokens(project.id, limit=10)).tokens == []
        assert received.empty()
    finally:
        await listener.close()


async def test_last_used_only_moves_forward_and_skips_deleted(store: Store) -> None:
    project = await store.create_project("p", None, actor=CLI)
    token_id = await _token(store, project.id)
    later = datetime.now(UTC)
    await store.touch_last_used([token_id, "gone"], [later, later])
    await store.touch_last_used([token_id], [later - timedelta(hours=1)])
    token = await store.get_token(project.id, token_id)
    assert token is not None and token.last_used_at == later


async def test_deleting_a_project_outlives_a_deadlock_with_a_flush(
    database_url: str, pg_pool: asyncpg.Pool
) -> None:
    """A gateway's flush locks a token, then (usage rows' keys) its project; the delete
    locks the project, then its tokens. Postgres aborts one of the two: the delete is retried.

    Postgres checks a wait for a deadlock once, deadlock_timeout after it began: the
    delete's check comes 3 s after it waits (the cycle is closed well before, even on a
    busy machine), the flush's never within the test, so the delete is the one aborted."""
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=2, server_settings={"deadlock_timeout": "3s"}
    )
    assert pool is not None
    try:
        store = Store(pool)
        project = await store.create_project("p", None, actor=CLI)
        token_id = await _token(store, project.id)
        async with pg_pool.acquire() as flush, flush.transaction():
            await flush.execute("SET LOCAL deadlock_timeout = '60s'")
            await flush.execute("UPDATE tokens SET last_used_at = now() WHERE id = $1", token_id)
            deleting = asyncio.ensure_future(store.delete_project(project.id, actor=CLI))
            await until(
                lambda: pg_pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'DELETE FROM projects%'"
                ),
                what="the delete waiting for the token",
            )
            # The flush's next step: its usage row's key share on the project (a deadlock).
            await flush.fetchval("SELECT id FROM projects WHERE id = $1 FOR KEY SHARE", project.id)
        assert await asyncio.wait_for(deleting, 30)
        assert await store.get_project(project.id) is None
    finally:
        await pool.close()
