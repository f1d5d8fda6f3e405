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
