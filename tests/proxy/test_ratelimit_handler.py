"""Rate limits through the real gateway app: exact counts and headers, per-token buckets,
project limits changed while running, and the redis backend shared by two gateways and
surviving a Redis outage (a relay in front of the real Redis, never the server stopped).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.core.config import Settings
from gateway.core.journal import CLI
from gateway.core.rates import parse_rate
from gateway.core.store import Store
from gateway.proxy.app import Gateway
from gateway.proxy.ratelimit.redis import RedisLimiter
from tests.conftest import Issued, IssueToken, StartGateway
from tests.relay import Relay

REDIS_URL = "redis://127.0.0.1:6379"
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def bearer(issued: Issued) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued.raw}"}


async def statuses(client: Any, issued: Issued, count: int) -> list[int]:
    answers = []
    for _ in range(count):
        async with client.get("/base/x", headers=bearer(issued)) as response:
            answers.append(response.status)
    return answers


async def test_limit_n_passes_exactly_n_then_429_with_headers(
    gateway_client: Any, issue_token: IssueToken
) -> None:
    issued = await issue_token(rate_limit="5/minute")
    seen = []
    for _ in range(6):
        async with gateway_client.get("/base/x", headers=bearer(issued)) as response:
            body = await response.json()
            seen.append(
                (response.status, {name: response.headers.get(name) for name in RATE_HEADERS})
            )
    assert [status for status, _ in seen[:5]] == [200] * 5
    assert [h["RateLimit-Remaining"] for _, h in seen[:5]] == ["4", "3", "2", "1", "0"]
    assert [h["RateLimit-Reset"] for _, h in seen[:5]] == ["12", "24", "36", "48", "60"]
    assert all(headers["RateLimit-Limit"] == "5" for _, headers in seen)
    assert seen[5] == (
        429,
        {"RateLimit-Limit": "5", "RateLimit-Remaining": "0", "RateLimit-Reset": "60"},
    )
    assert response.headers["Retry-After"] == "12"
    assert response.headers["X-Request-Id"]
    assert body["error"]["code"] == "rate_limited"


async def test_the_default_limit_applies_to_projects_without_one(
    settings: Settings,
    upstream: Any,
    pg_pool: Any,
    start_gateway: StartGateway,
    issue_token: IssueToken,
) -> None:
    settings = dataclasses.replace(
        settings, upstream_url=str(upstream.make_url("/base")), rate_limit=parse_rate("3/hour")
    )
    client = await start_gateway(settings)
    issued = await issue_token(rate_limit=None)
    assert await statuses(client, issued, 4) == [200, 200, 200, 429]


async def test_each_token_has_its_own_bucket(gateway_client: Any, issue_token: IssueToken) -> None:
    first = await issue_token(rate_limit="2/minute")
    second = await issue_token(project_id=first.project_id)
    assert await statuses(gateway_client, first, 3) == [200, 200, 429]
    assert await statuses(gateway_client, second, 3) == [200, 200, 429]


async def until_limit(client: Any, issued: Issued, limit: str) -> Any:
    """Requests until the gateway applies ``limit``; the first such answer's headers."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        async with client.get("/base/x", headers=bearer(issued)) as response:
            if response.headers.get("RateLimit-Limit") == limit:
                return response
        await asyncio.sleep(0.01)
    raise AssertionError(f"the gateway did not apply a limit of {limit} within 5 s")


async def test_a_changed_project_limit_applies_at_once(
    gateway_client: Any, issue_token: IssueToken, store: Store
) -> None:
    issued = await issue_token(rate_limit="2/minute")
    assert await statuses(gateway_client, issued, 3) == [200, 200, 429]

    started = time.monotonic()
    await store.update_project(issued.project_id, rate_limit="4/minute", actor=CLI)
    raised = await until_limit(gateway_client, issued, "4")
    assert time.monotonic() - started < 1  # NOTIFY, not the state cache's 30 s
    assert (raised.status, raised.headers["RateLimit-Remaining"]) == (200, "3")
    assert await statuses(gateway_client, issued, 4) == [200, 200, 200, 429]

    await store.update_project(issued.project_id, rate_limit=None, actor=CLI)  # back to RATE_LIMIT
    await until_limit(gateway_client, issued, "600")


# ---------------------------------------------------------------- the redis backend


@pytest.fixture
async def redis_buckets() -> AsyncIterator[tuple[str, set[str]]]:
    """The Redis URL, and a set of token ids whose buckets are deleted afterwards."""
    redis = pytest.importorskip("redis.asyncio", reason="the redis extra is not installed")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.ping()
    except (redis.RedisError, OSError) as err:
        await client.aclose()
        pytest.skip(f"no Redis at {REDIS_URL}: {err}")
    token_ids: set[str] = set()
    yield REDIS_URL, token_ids
    for token_id in token_ids:  # random ids: no other test shares these buckets
        keys = [key async for key in client.scan_iter(match=f"tollgate:rl:{token_id}:*")]
        if keys:
            await client.delete(*keys)
    await client.aclose()


def redis_settings(settings: Settings, url: str) -> Settings:
    return dataclasses.replace(settings, rate_limit_backend="redis", redis_url=url)


def fallbacks(gateway: Gateway) -> float:
    value = gateway.metrics.registry.get_sample_value("gateway_rate_limit_fallbacks_total")
    assert value is not None
    return value


async def test_two_gateways_on_one_redis_admit_exactly_n_together(
    gateway_settings: Settings,
    pg_pool: Any,
    start_gateway: StartGateway,
    issue_token: IssueToken,
    redis_buckets: tuple[str, set[str]],
) -> None:
    redis_url, token_ids = redis_buckets
    settings = redis_settings(gateway_settings, redis_url)
    one = await start_gateway(settings)
    two = await start_gateway(settings)
    issued = await issue_token(rate_limit="7/minute")
    token_ids.add(issued.token_id)

    async def get(client: Any) -> int:
        async with client.get("/base/x", headers=bearer(issued)) as response:
            return int(response.status)

    answers = await asyncio.gather(*(get(client) for _ in range(10) for client in (one, two)))
    assert sorted(answers) == [200] * 7 + [429] * 13


async def test_redis_outage_keeps_serving_and_is_logged_once(
    gateway_settings: Settings,
    pg_pool: Any,
    start_gateway: StartGateway,
    issue_token: IssueToken,
    redis_buckets: tuple[str, set[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis_url, token_ids = redis_buckets
    caplog.set_level(logging.INFO, logger="gateway.proxy.ratelimit.redis")
    relay = Relay(redis_url)
    await relay.start()
    try:
        client = await start_gateway(redis_settings(gateway_settings, relay.url))
        gateway = client.gateway
        issued = await issue_token(rate_limit="50/hour")
        token_ids.add(issued.token_id)
        limiter = gateway.limiter
        assert isinstance(limiter, RedisLimiter)
        assert await statuses(client, issued, 3) == [200] * 3
        assert fallbacks(gateway) == 0

        await relay.cut()
        assert await statuses(client, issued, 20) == [200] * 20
        assert fallbacks(gateway) == 20
        # Limited per process meanwhile: this gateway's local bucket started full.
        assert await statuses(client, issued, 40) == [200] * 30 + [429] * 10

        await relay.restore()
        deadline = time.monotonic() + 10
        while limiter.degraded:  # the next try comes after a backoff of 0.5 s
            assert time.monotonic() < deadline, "the gateway did not go back to Redis"
            await statuses(client, issued, 1)
            await asyncio.sleep(0.05)
        counted = fallbacks(gateway)
        assert await statuses(client, issued, 3) == [200] * 3  # the shared bucket again
        assert fallbacks(gateway) == counted
    finally:
        await relay.close()

    # At startup, then once when the outage began and once when it ended.
    lines = [(record.levelname, record.getMessage().split(" ")[3]) for record in caplog.records]
    assert lines == [("INFO", "through"), ("WARNING", "failed"), ("INFO", "answers")], caplog.text


async def test_a_gateway_starts_and_serves_while_redis_is_down(
    gateway_settings: Settings,
    pg_pool: Any,
    start_gateway: StartGateway,
    issue_token: IssueToken,
    redis_buckets: tuple[str, set[str]],
) -> None:
    relay = Relay(redis_buckets[0])
    await relay.start()
    await relay.cut()
    try:
        client = await start_gateway(redis_settings(gateway_settings, relay.url))
        gateway = client.gateway
        issued = await issue_token(rate_limit="2/minute")
        assert await statuses(client, issued, 3) == [200, 200, 429]
        assert fallbacks(gateway) == 3
    finally:
        await relay.close()
