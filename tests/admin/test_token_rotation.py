"""Rotating ``ADMIN_TOKEN`` without downtime (docs/operations.md): during the overlap an
admin instance accepts the old and the new token (``ADMIN_TOKEN=old,new``), so a rolling
restart of several instances never refuses a client holding either one."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
import asyncpg
import pytest

from admin.app import create_app
from gateway.core.config import ConfigError, Secret, Settings

OLD = "old-admin-token-" + "o" * 32
NEW = "new-admin-token-" + "n" * 32


async def accepts(client: Any, token: str) -> bool:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            client.make_url("/v1/projects"), headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status in (200, 401)
        return response.status == 200


async def test_a_rolling_rotation_never_refuses_a_client(
    settings: Settings, pg_pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    def instance(tokens: str) -> Any:
        return aiohttp_client(create_app(dataclasses.replace(settings, admin_token=Secret(tokens))))

    before, overlap, after = (
        await instance(OLD),
        await instance(f"{OLD},{NEW}"),
        await instance(NEW),
    )
    # Step 1: instances restart one by one with both tokens; clients still send the old one.
    assert await accepts(before, OLD) and await accepts(overlap, OLD)
    # Step 2: once every instance accepts both, clients move to the new one.
    assert await accepts(overlap, NEW)
    # Step 3: instances restart with the new token only; the old one stops working.
    assert await accepts(after, NEW)
    assert not await accepts(after, OLD)
    # The list itself is no token, nor is either token with a part of the other.
    for wrong in (f"{OLD},{NEW}", OLD + NEW, OLD[:-1]):
        assert not await accepts(overlap, wrong)


def test_each_token_of_the_list_is_checked() -> None:
    tokens = Settings.from_env({"ADMIN_TOKEN": f"{OLD},{NEW}"}).admin_tokens()
    assert [token.reveal() for token in tokens] == [OLD, NEW]
    for bad, says in [
        (f"{OLD},short", "token 2 must be at least 32 characters (got 5)"),
        (f"{OLD},", "token 2 must be at least 32 characters (got 0)"),
        (f"{OLD}, {NEW}", "token 2 must not contain spaces"),
        ("short", "must be at least 32 characters (got 5)"),
    ]:
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"ADMIN_TOKEN": bad})
        assert str(caught.value).startswith(f"ADMIN_TOKEN: {says}")
        assert OLD not in str(caught.value)
