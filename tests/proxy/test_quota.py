"""Project quotas through the real gateway app: exact counts and headers, a changed quota
applied at once (NOTIFY), units kept when raised, events once, and the redis backend's
one round trip for limit and quota together."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from gateway.core.config import Settings
from gateway.core.journal import CLI
from gateway.core.rates import parse_quota
from gateway.core.store import Store
from tests.conftest import Issued, IssueToken, StartGateway
from tests.helpers import GatewayClient, sample
from tests.relay import Relay

REDIS_URL = "redis://127.0.0.1:6379"


def bearer(issued: Issued) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued.raw}"}


def seconds_to_midnight() -> float:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


async def quota_project(store: Store, quota: str, rate_limit: str | None = None) -> str:
    return (await store.create_project("quota", rate_limit, quota=quota, actor=CLI)).id


async def answers(client: Any, issued: Issued, count: int) -> list[tuple[int, dict[str, str]]]:
    seen = []
    for _ in range(count):
        async with client.get("/base/x", headers=bearer(issued)) as response:
            await response.read()
            seen.append((response.status, dict(response.headers)))
    return seen


def test_periods_are_utc_calendar_days_and_months() -> None:
    moment = datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC).timestamp()
    assert parse_quota("5/day").period(moment) == ("day:2026-12-31", 30)
    assert parse_quota("5/month").period(moment) == ("month:2026-12", 30)
    assert parse_quota("5/month").period(moment + 31) == ("month:2027-01", 31 * 86_400 - 1)
    assert str(parse_quota(" 1000/day ")) == "1000/day"
    with pytest.raises(ValueError, match="N/day or N/month"):
        parse_quota("5/week")


async def test_a_quota_admits_exactly_n_then_429_until_the_period_resets(
    gateway_client: GatewayClient, issue_token: IssueToken, store: Store, pg_pool: asyncpg.Pool
) -> None:
    project_id = await quota_project(store, "5/day")
    issued = await issue_token(project_id=project_id)

    seen = await answers(gateway_client, issued, 7)

    assert [status for status, _ in seen] == [200] * 5 + [429] * 2
    assert [h["Quota-Remaining"] for _, h in seen] == ["4", "3", "2", "1", "0", "0", "0"]
    assert all(h["Quota-Limit"] == "5" for _, h in seen)
    reset = int(seen[5][1]["Quota-Reset"])
    assert abs(reset - seconds_to_midnight()) < 5
    refused = seen[5][1]
    assert refused["Retry-After"] == refused["Quota-Reset"]
    assert "RateLimit-Limit" in seen[0][1]
    # The refusal's RateLimit-* describe the quota that refused (SPEC §5: every
    # authenticated 429 carries them), not a rate limit with room left.
    limits = [refused[f"RateLimit-{n}"] for n in ("Limit", "Remaining", "Reset")]
    assert limits == ["5", "0", refused["Quota-Reset"]]
    async with gateway_client.get("/base/x", headers=bearer(issued)) as response:
        body = await response.json()
    assert body["error"]["code"] == "quota_exceeded"
    gateway = gateway_client.gateway
    assert sample(gateway, "gateway_requests_total", outcome="quota_exceeded") == 3

    assert await gateway.last_used.flush()
    row = await pg_pool.fetchrow(
        "SELECT sum(proxied) AS proxied, sum(rate_limited) AS limited FROM usage_daily "
        "WHERE token_id = $1",
        issued.token_id,
    )
    assert (row["proxied"], row["limited"]) == (5, 3)
    period = f"day:{datetime.now(UTC):%Y-%m-%d}"
    used = await pg_pool.fetchval(
        "SELECT used FROM quota_usage WHERE project_id = $1 AND period = $2", project_id, period
    )
    assert used == 5
    events = await pg_pool.fetch(
        "SELECT type FROM outbox_events WHERE project_id = $1 AND type LIKE 'quota.%' "
        "ORDER BY created_at",
        project_id,
    )
    assert [e["type"] for e in events] == ["quota.warning", "quota.exhausted"]


async def test_a_raised_quota_applies_at_once_and_keeps_the_units_used(
    gateway_client: GatewayClient, issue_token: IssueToken, store: Store
) -> None:
    project_id = await quota_project(store, "2/day")
    issued = await issue_token(project_id=project_id)
    assert [s for s, _ in await answers(gateway_client, issued, 3)] == [200, 200, 429]

    started = time.monotonic()
    await store.update_project(project_id, quota="4/day", actor=CLI)
    while True:
        [(status, headers)] = await answers(gateway_client, issued, 1)
        if headers.get("Quota-Limit") == "4":
            break
        assert time.monotonic() - started < 1, "the new quota took longer than NOTIFY"
    # The 2 units already used count: one more (this one) and one left.
    assert (status, headers["Quota-Remaining"]) == (200, "1")
    assert [s for s, _ in await answers(gateway_client, issued, 2)] == [200, 429]

    await store.update_project(project_id, quota=None, actor=CLI)
    deadline = time.monotonic() + 1
    while "Quota-Limit" in (await answers(gateway_client, issued, 1))[0][1]:
        assert time.monotonic() < deadline


async def test_a_rate_limited_request_takes_no_unit(
    gateway_client: GatewayClient, issue_token: IssueToken, store: Store
) -> None:
    project_id = await quota_project(store, "100/month", rate_limit="2/minute")
    issued = await issue_token(project_id=project_id)
    seen = await answers(gateway_client, issued, 3)
    assert [s for s, _ in seen] == [200, 200, 429]
    assert seen[2][1]["Quota-Remaining"] == "98"
    assert seen[2][1]["RateLimit-Remaining"] == "0"


async def test_local_instances_learn_each_others_units_from_the_flush(
    gateway_settings: Settings, pg_pool: asyncpg.Pool, start_gateway: StartGateway, store: Store
) -> None:
    # No background flush during the test: the test flushes by hand.
    settings = dataclasses.replace(gateway_settings, last_used_flush_interval=3600)
    one = await start_gateway(settings)
    two = await start_gateway(settings)
    project_id = await quota_project(store, "10/day")
    issued = await issue_token_in(store, project_id)
    assert [s for s, _ in await answers(one, issued, 6)] == [200] * 6
    assert await one.gateway.last_used.flush()
    # Two knows nothing yet: its first unit, flushed, brings back the total (7).
    [(status, headers)] = await answers(two, issued, 1)
    assert (status, headers["Quota-Remaining"]) == (200, "9")
    assert await two.gateway.last_used.flush()
    seen = await answers(two, issued, 4)
    assert [s for s, _ in seen] == [200, 200, 200, 429]


async def issue_token_in(store: Store, project_id: str) -> Issued:
    from tests.helpers import issue

    return await issue(store, project_id=project_id)


# ---------------------------------------------------------------- the redis backend


@pytest.fixture
async def redis_keys() -> AsyncIterator[str]:
    redis = pytest.importorskip("redis.asyncio", reason="the redis extra is not installed")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.ping()
    except (redis.RedisError, OSError) as err:
        await client.aclose()
        pytest.skip(f"no Redis at {REDIS_URL}: {err}")
    yield REDIS_URL
    await client.aclose()


async def test_redis_quota_is_exact_across_gateways_in_one_round_trip(
    gateway_settings: Settings,
    pg_pool: asyncpg.Pool,
    start_gateway: StartGateway,
    store: Store,
    redis_keys: str,
) -> None:
    relay = Relay(redis_keys)
    await relay.start()
    try:
        settings = dataclasses.replace(
            gateway_settings, rate_limit_backend="redis", redis_url=relay.url
        )
        gateways = [await start_gateway(settings) for _ in range(2)]
        project_id = await quota_project(store, "9/day")
        issued = await issue_token_in(store, project_id)
        limited = await issue_token_in(
            store, (await store.create_project("plain", None, actor=CLI)).id
        )

        async def get(client: GatewayClient, who: Issued) -> int:
            async with client.get("/base/x", headers=bearer(who)) as response:
                return int(response.status)

        statuses = await asyncio.gather(*(get(g, issued) for _ in range(10) for g in gateways))
        assert sorted(statuses) == [200] * 9 + [429] * 11

        # Round trips: one per request, with a quota as without.
        for who in (issued, limited):
            before = relay.client_messages
            for _ in range(5):
                await get(gateways[0], who)
            assert relay.client_messages - before == 5
    finally:
        await relay.close()
