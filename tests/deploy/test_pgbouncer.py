"""Admin and gateway with ``DATABASE_URL`` through a real PgBouncer in transaction pooling
mode and ``DATABASE_LISTEN_URL`` straight to Postgres (README "Running behind PgBouncer").

PgBouncer (tests/pgbouncer.py) keeps two server connections per database and hands
them out in turn, so the many client connections of these tests share two, and one
client's consecutive transactions change server connection: what breaks named
prepared statements, session-level locks and LISTEN. Migrations through it are
tested in tests/core/test_migrate.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from admin.app import create_app as admin_app
from gateway.core.config import Settings
from tests.admin.test_api import new_project, new_token
from tests.conftest import ADMIN_AUTH, StartGateway
from tests.gatewayproc import echo_app, issue_token, running_gateway, send
from tests.helpers import GatewayClient, bearer, sample, until
from tests.pgbouncer import SERVER_BACKENDS, PgBouncer

# Cheap argon2 parameters for the tokens the admin API issues here.
CHEAP_ARGON2 = {"ARGON2_MEMORY_COST": "1024", "ARGON2_TIME_COST": "1"}


@pytest.fixture
def pooled_settings(
    gateway_settings: Settings, pgbouncer: PgBouncer, database_url: str
) -> Settings:
    return dataclasses.replace(
        gateway_settings,
        database_url=pgbouncer.url(database_url),
        database_listen_url=database_url,
        argon2_memory_cost=1024,
        argon2_time_cost=1,
    )


async def status(gateway: GatewayClient, raw: str) -> int:
    async with gateway.get("/x", headers=bearer(raw)) as response:
        return response.status


async def refused(gateway: GatewayClient, raw: str) -> bool:
    return await status(gateway, raw) == 401


async def test_tokens_live_and_die_through_transaction_pooling(
    pooled_settings: Settings,
    pgbouncer: PgBouncer,
    pg_pool: asyncpg.Pool,
    database_url: str,
    aiohttp_client: Any,
    start_gateway: StartGateway,
) -> None:
    await pgbouncer.fill_pool(database_url)
    admin = await aiohttp_client(admin_app(pooled_settings), headers=ADMIN_AUTH)
    gateway = await start_gateway(pooled_settings)
    project = await new_project(admin, name="pooled")
    tokens = [await new_token(admin, project["id"]) for _ in range(6)]

    # First uses at once: lookups on several of the gateway's pool connections.
    assert await asyncio.gather(*(status(gateway, t["token"]) for t in tokens)) == [200] * 6

    async def all_used() -> bool:
        for token in tokens:
            shown = await admin.get(f"/v1/projects/{project['id']}/tokens/{token['id']}")
            if (await shown.json())["last_used_at"] is None:
                return False
        return True

    await until(all_used, timeout=10, what="last-used times never written")

    async def usage_counted() -> bool:  # the ledger, written in the same flush
        usage = await admin.get(f"/v1/projects/{project['id']}/usage")
        return bool((await usage.json())["totals"]["proxied"] == len(tokens))

    await until(usage_counted, timeout=10, what="usage never written through PgBouncer")

    revoked, kept = tokens[0], tokens[1]
    deleted = await admin.delete(f"/v1/projects/{project['id']}/tokens/{revoked['id']}")
    assert deleted.status == 204
    # The DELETE and its NOTIFY went through PgBouncer; the gateway heard it on its own
    # connection to Postgres (the cached state would be trusted for 30 s otherwise).
    await until(
        lambda: refused(gateway, revoked["token"]),
        timeout=1.0,
        what="revoked token still accepted after 1 s",
    )
    assert sample(gateway.gateway, "gateway_revocations_received_total") == 1
    assert await status(gateway, kept["token"]) == 200

    # All of it over PgBouncer's two server connections to this database, never more.
    backends = await pg_pool.fetch(SERVER_BACKENDS, pgbouncer.application_name)
    assert 1 <= len(backends) <= pgbouncer.pool_size


async def test_gateway_serve_is_ready_and_serves_through_pgbouncer(
    environ: dict[str, str],
    pgbouncer: PgBouncer,
    database_url: str,
    store: Any,
    aiohttp_server: Any,
    tmp_path: Path,
) -> None:
    upstream = await aiohttp_server(echo_app())
    env = {
        **environ,
        "UPSTREAM_URL": str(upstream.make_url("/")),
        "GATEWAY_WORKERS": "2",
        "DATABASE_URL": pgbouncer.url(database_url),
        "DATABASE_LISTEN_URL": database_url,
    }
    raw, _ = await issue_token(store)
    # `gateway serve` migrates first, through PgBouncer.
    async with running_gateway(env, tmp_path) as (gateway, session):
        # Each probe asks Postgres through PgBouncer, between the workers' own queries.
        for _ in range(10):
            async with session.get(gateway.metrics_url + "/readyz") as resp:
                assert resp.status == 200, await resp.text()
            assert await send(gateway, 2, f"Bearer {raw}") == [200, 200]
