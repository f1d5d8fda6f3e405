"""The redis backend on the real Redis at 127.0.0.1:6379: shared limits, the Lua step equal
to the Python one, one round trip per request, and serving on through an outage.

Each test uses its own key prefix and deletes its keys. Outages are made with a TCP relay
in front of Redis (never by stopping the shared server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("redis", reason="the redis extra is not installed")

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.core.gcra import US, Tat, bucket, decide, gcra, refused_until
from gateway.core.rates import Rate, parse_rate
from gateway.proxy.metrics import GatewayMetrics
from gateway.proxy.ratelimit.local import QuotaHit
from gateway.proxy.ratelimit.redis import QUOTA_PREFIX, SCRIPT, RedisLimiter, Refusals
from tests.helpers import Clock
from tests.relay import Relay

REDIS_URL = "redis://127.0.0.1:6379"
FALLBACKS = "gateway_rate_limit_fallbacks_total"


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as err:
        await client.aclose()
        pytest.skip(f"no Redis at {REDIS_URL}: {err}")
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"tollgate:test:{secrets.token_hex(6)}:"
    yield prefix
    keys = [key async for key in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    relay = Relay(REDIS_URL)
    await relay.start()
    yield relay
    await relay.close()


@contextlib.asynccontextmanager
async def limiter_at(url: str, prefix: str, **kwargs: Any) -> AsyncIterator[RedisLimiter]:
    limiter = RedisLimiter.from_url(url, prefix=prefix, **kwargs)
    try:
        yield limiter
    finally:
        await limiter.close()


def fallbacks(metrics: GatewayMetrics) -> float:
    value = metrics.registry.get_sample_value(FALLBACKS)
    assert value is not None
    return value


async def test_two_limiters_share_one_limit_exactly(prefix: str) -> None:
    rate = parse_rate("25/minute")
    # A generous timeout: this is about exactness; on a busy machine 60 connections opened
    # at once can take longer than the production 0.5 s, which would test the fallback.
    slow = {"timeout": 10.0}
    async with (
        limiter_at(REDIS_URL, prefix, **slow) as one,
        limiter_at(REDIS_URL, prefix, **slow) as two,
    ):
        decisions = await asyncio.gather(
            *(limiter.hit("token", rate) for _ in range(30) for limiter in (one, two))
        )
        admitted = [d for d in decisions if d.allowed]
        assert len(admitted) == 25
        # Atomic steps: every admitted request saw a different remaining count.
        assert sorted(d.remaining for d in admitted) == list(range(25))
        refused = [d for d in decisions if not d.allowed]
        assert {d.headers()["Retry-After"] for d in refused} == {"3"}  # 2.4 s, rounded up
        assert (await one.hit("other", rate)).remaining == 24  # a separate bucket


async def test_the_lua_step_equals_the_python_step(redis: Redis, prefix: str) -> None:
    # Replays every reply of the script through gateway.core.gcra at the server's
    # own clock: admission and the kept TAT must agree exactly, across limit changes.
    rates = [Rate(7, 60), Rate(3, 1), Rate(999_999_937, 3600), Rate(2, 1), Rate(13, 3600)]
    rng = random.Random(5)
    key = prefix + "token"
    model: Tat | None = None
    admitted = 0
    for _ in range(400):
        rate = rng.choice(rates)
        reply = await redis.eval(SCRIPT, 1, key, rate.limit, rate.period * US)
        allowed, now, us, frac, _used = (int(value) for value in reply)
        decision, model = gcra(model, now, rate)
        assert decision == decide(bool(allowed), now, Tat(us, frac), rate)
        stored_us, stored_frac = map(int, (await redis.get(key)).split())
        assert Tat(stored_us, stored_frac) == model
        ttl = await redis.pttl(key)
        assert 0 < ttl <= -(-(stored_us - now) // 1000) + 1  # the key lives until its TAT
        admitted += allowed
    assert 0 < admitted < 400  # both branches were exercised


async def test_one_round_trip_per_request(redis: Redis, prefix: str) -> None:
    rate = parse_rate("1000/minute")
    async with limiter_at(REDIS_URL, prefix) as limiter:
        await limiter.hit("warm-up", rate)  # connects, and loads the script if needed
        info = await limiter._client.call("CLIENT", "INFO")
        assert isinstance(info, bytes)
        me = next(f for f in info.decode().split() if f.startswith("addr=")).removeprefix("addr=")
        before = await redis.info("commandstats")
        async with redis.monitor() as monitor:
            for n in range(20):
                await limiter.hit(f"token-{n % 3}", rate)
            await limiter._client.call("ECHO", "end of test")
            commands = []
            while True:
                seen = await asyncio.wait_for(monitor.next_command(), 5)
                if f"{seen['client_address']}:{seen['client_port']}" == me:
                    commands.append(seen["command"].split()[0].upper())
                    if commands[-1] == "ECHO":
                        break
        after = await redis.info("commandstats")
    assert commands == ["EVALSHA"] * 20 + ["ECHO"]
    calls = after["cmdstat_evalsha"]["calls"] - before["cmdstat_evalsha"]["calls"]
    assert calls >= 20  # other test sessions may share this Redis


def count_scripts(limiter: RedisLimiter) -> list[str]:
    """The limiter's script runs (EVALSHA or EVAL), recorded as they are sent to Redis."""
    sent: list[str] = []
    call = limiter._client.call

    async def recording(*args: Any) -> Any:
        if args[0] in ("EVALSHA", "EVAL"):
            sent.append(args[0])
        return await call(*args)

    limiter._client.call = recording  # type: ignore[method-assign]
    return sent


async def redis_time(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return seconds * US + micros


async def test_a_refusal_is_answered_here_until_redis_could_admit(
    redis: Redis, prefix: str
) -> None:
    rate = Rate(4, 1)  # one request every 250 ms
    async with limiter_at(REDIS_URL, prefix) as limiter:
        sent = count_scripts(limiter)
        assert [(await limiter.hit("token", rate)).allowed for _ in range(5)] == [True] * 4 + [
            False
        ]
        stored_us, stored_frac = map(int, (await redis.get(prefix + bucket("token", rate))).split())
        tat = Tat(stored_us, stored_frac)
        until = refused_until(tat, rate)
        asked, refused_here = len(sent), 0
        while True:  # as fast as it goes: every refusal must be one Redis would give
            before = await redis_time(redis)
            decision = await limiter.hit("token", rate)
            if decision.allowed:
                break
            assert before < until, "refused when Redis would have admitted it"
            # The answer Redis would give at that moment, headers and all.
            assert decision == decide(False, before, tat, rate) or decision == decide(
                False, await redis_time(redis), tat, rate
            )
            refused_here += 1
        assert await redis_time(redis) >= until  # Redis admitted it, so its time had come
    # Hundreds of refusals took a handful of round trips (the admission, and an early
    # ask or two: Redis's clock is mapped to this process's conservatively).
    assert refused_here > 50
    assert len(sent) - asked <= 4, (refused_here, len(sent) - asked)


async def test_a_changed_limit_and_other_tokens_still_ask_redis(prefix: str) -> None:
    async with limiter_at(REDIS_URL, prefix) as limiter:
        sent = count_scripts(limiter)
        hourly = Rate(1, 3600)
        assert (await limiter.hit("token", hourly)).allowed
        assert not (await limiter.hit("token", hourly)).allowed
        assert not (await limiter.hit("token", hourly)).allowed  # held: no round trip
        assert len(sent) == 2
        assert (await limiter.hit("token", Rate(5, 3600))).allowed  # a raised limit: at once
        assert (await limiter.hit("other", hourly)).allowed
        assert len(sent) == 4


async def test_a_token_with_a_quota_always_asks_redis(redis: Redis, prefix: str) -> None:
    # The script checks the quota first: a quota used up meanwhile must be what answers.
    quota = QuotaHit(f"{prefix}project:2026-12", 100, 60_000)
    try:
        async with limiter_at(REDIS_URL, prefix) as limiter:
            sent = count_scripts(limiter)
            hourly = Rate(1, 3600)
            answers = [await limiter.hit_quota("token", hourly, quota) for _ in range(3)]
            assert [a.decision.allowed for a in answers if a is not None] == [True, False, False]
            assert len(sent) == 3
    finally:
        await redis.delete(QUOTA_PREFIX + quota.key)


def test_held_refusals_are_bounded_and_forgotten_when_over() -> None:
    rate = Rate(1, 60)
    refusals = Refusals(max_keys=3)
    tat = Tat(1_000 + 60 * US)  # refused at 1,000 µs: may be admitted again at 60 s + 1 ms
    for n in range(10):
        refusals.hold(f"key-{n}", rate, asked=1_000, now=1_000, tat=tat)
    assert len(refusals) == 3
    assert refusals.get("key-0", rate, 2_000) is None  # made room for later ones
    assert refusals.get("key-9", rate, 2_000) == decide(False, 2_000, tat, rate)
    assert refusals.get("key-9", rate, 1_000 + 60 * US) is None  # over: ask again
    assert len(refusals) == 2
    # Redis's clock mapped by when the request was sent: 5 s ahead here.
    skewed = Tat(65 * US + 1_000)
    refusals.hold("skewed", rate, asked=1_000, now=5 * US + 1_000, tat=skewed)
    assert refusals.get("skewed", rate, 59 * US) == decide(False, 64 * US, skewed, rate)
    assert refusals.get("skewed", rate, 60 * US + 1_000) is None
    # Refused at the very µs before it may be admitted again: nothing to hold.
    alone = Refusals()
    alone.hold("edge", rate, asked=7, now=7, tat=Tat(7))
    assert len(alone) == 0
    assert alone.get("edge", rate, 7) is None


async def test_a_flushed_script_cache_costs_one_eval(redis: Redis, prefix: str) -> None:
    rate = parse_rate("5/second")
    async with limiter_at(REDIS_URL, prefix) as limiter:
        assert (await limiter.hit("token", rate)).remaining == 4
        await redis.script_flush()  # as after a Redis restart
        assert (await limiter.hit("token", rate)).remaining == 3
        assert (await redis.script_exists(limiter._sha)) == [True]


async def test_outage_serves_locally_counts_and_logs_once(
    prefix: str, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.proxy.ratelimit.redis")
    metrics = GatewayMetrics(CollectorRegistry())
    clock = Clock()
    rate = parse_rate("3/minute")
    async with limiter_at(
        relay.url, prefix, metrics=metrics, clock=clock, backoff=(1.0, 4.0)
    ) as limiter:
        assert [(await limiter.hit("token", rate)).allowed for _ in range(2)] == [True, True]
        assert fallbacks(metrics) == 0

        await relay.cut()
        during = [await limiter.hit("token", rate) for _ in range(5)]
        # Still limited, now per process (the local bucket starts full): never an error.
        assert [d.allowed for d in during] == [True, True, True, False, False]
        assert limiter.degraded
        assert fallbacks(metrics) == 5

        await relay.restore()
        await limiter.hit("token", rate)  # Redis is back, but the backoff has not elapsed
        assert fallbacks(metrics) == 6
        clock.now += 1.0
        shared = await limiter.hit("token", rate)  # the probe: Redis answers again
        assert (shared.allowed, shared.remaining) == (True, 0)  # the shared bucket kept its 2
        assert not (await limiter.hit("token", rate)).allowed
        assert not limiter.degraded
        assert fallbacks(metrics) == 6

    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0][0] == "WARNING"
    assert "limiting per process until it answers" in messages[0][1]
    assert messages[1] == (
        "INFO",
        f"rate limits: {relay.url} answers again after 1.0 s; 6 requests were limited per process",
    )


async def test_backoff_grows_while_redis_stays_down(prefix: str, relay: Relay) -> None:
    clock = Clock()
    rate = parse_rate("100/second")
    async with limiter_at(relay.url, prefix, clock=clock, backoff=(1.0, 4.0)) as limiter:
        await relay.cut()
        await limiter.hit("token", rate)  # fails: next try after 1 s
        for wait in (1.0, 2.0, 4.0, 4.0):
            clock.now += wait
            await limiter.hit("token", rate)  # a probe that fails again
            await relay.restore()
            clock.now += wait - 0.001  # not yet time for the next probe
            await limiter.hit("token", rate)
            assert limiter.degraded
            await relay.cut()
            clock.now -= wait - 0.001
        await relay.restore()
        clock.now += 4.0
        await limiter.hit("token", rate)
        assert not limiter.degraded


async def test_a_stalled_redis_times_out_into_the_local_limiter(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.proxy.ratelimit.redis")

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass  # never answers, like a hung server
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    metrics = GatewayMetrics(CollectorRegistry())
    try:
        async with limiter_at(
            f"redis://127.0.0.1:{port}/0", prefix, timeout=0.2, metrics=metrics
        ) as limiter:
            started = time.monotonic()
            decisions = await asyncio.gather(
                *(limiter.hit("token", parse_rate("2/minute")) for _ in range(10))
            )
            elapsed = time.monotonic() - started
            assert limiter.degraded
    finally:
        server.close()
        await server.wait_closed()
    assert [d.allowed for d in decisions] == [True, True] + [False] * 8
    assert fallbacks(metrics) == 10
    assert elapsed < 1.5  # bounded by the socket timeout, not by the hung server
    # Ten requests timed out together: one outage, one line.
    assert [r.levelname for r in caplog.records] == ["WARNING"], caplog.text


async def test_an_unreachable_redis_at_startup_is_logged_and_served_locally(
    prefix: str, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.proxy.ratelimit.redis")
    metrics = GatewayMetrics(CollectorRegistry())
    await relay.cut()
    async with limiter_at(relay.url, prefix, metrics=metrics) as limiter:
        await limiter.start()
        assert limiter.degraded
        assert (await limiter.hit("token", parse_rate("1/minute"))).allowed
        assert fallbacks(metrics) == 1
    assert [r.levelname for r in caplog.records] == ["WARNING"], caplog.text
    assert f"rate limits: {relay.url} failed (ConnectionError" in caplog.records[0].getMessage()
