"""A quota on the redis backend is exact across gateway processes: three real ``gateway
serve`` processes, concurrent clients, and exactly N requests admitted."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from gateway.core.journal import CLI
from gateway.core.store import Store
from tests.gatewayproc import GatewayProcess, echo_app
from tests.helpers import CHEAP_HASHER, issue

REDIS_URL = "redis://127.0.0.1:6379/0"
QUOTA = 60


async def redis_up() -> bool:
    redis = pytest.importorskip("redis.asyncio", reason="the redis extra is not installed")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.ping()
    except (redis.RedisError, OSError):
        return False
    finally:
        await client.aclose()
    return True


@pytest.mark.slow  # three gateway processes: `make test-slow` (and CI) runs it
async def test_three_processes_admit_exactly_the_quota(
    environ: dict[str, str],
    aiohttp_server: AiohttpServer,
    store: Store,
    pg_pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    if not await redis_up():
        pytest.skip(f"no Redis at {REDIS_URL}")
    upstream: TestServer = await aiohttp_server(echo_app())
    env = {
        **environ,
        "UPSTREAM_URL": str(upstream.make_url("/")),
        "RATE_LIMIT_BACKEND": "redis",
        "REDIS_URL": REDIS_URL,
        "RATE_LIMIT": "100000/minute",
    }
    project = await store.create_project("sold", None, quota=f"{QUOTA}/day", actor=CLI)
    tokens = [await issue(store, project_id=project.id, hasher=CHEAP_HASHER) for _ in range(3)]
    gateways = [GatewayProcess(env, tmp_path / f"g{i}") for i in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        for gateway in gateways:
            gateway.start()
            stack.callback(gateway.kill)
        await asyncio.gather(*(g.wait_healthy(session) for g in gateways))

        async def client(n: int) -> list[int]:
            gateway, token = gateways[n % 3], tokens[n % 3]
            headers = {"Authorization": f"Bearer {token.raw}"}
            statuses = []
            for _ in range(10):
                async with session.get(f"{gateway.url}/x", headers=headers) as resp:
                    await resp.read()
                    statuses.append(resp.status)
            return statuses

        results = await asyncio.gather(*(client(n) for n in range(18)))  # 180 requests
        flat = [status for statuses in results for status in statuses]
        assert flat.count(200) == QUOTA and flat.count(429) == 180 - QUOTA
        for gateway in gateways:
            assert await gateway.stop() == 0
    used = await pg_pool.fetchval(
        "SELECT sum(used) FROM quota_usage WHERE project_id = $1", project.id
    )
    assert used == QUOTA  # what the gateways flushed agrees with what Redis admitted
