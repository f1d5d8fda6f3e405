"""GCRA and the in-process limiter: exact bursts, refill rate, headers, bounded memory.

Clocks are injected: nothing here sleeps.
"""

from __future__ import annotations

import importlib
import math
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.config import ConfigError, Settings
from gateway.core.gcra import US, Tat, gcra, refused_until
from gateway.core.rates import Rate, parse_rate
from gateway.proxy.ratelimit import Decision, LocalLimiter, create_limiter, require_backend
from tests.helpers import Clock

PERIODS = st.sampled_from([1, 60, 3600])


def burst(limiter: LocalLimiter, key: str, rate: Rate, count: int) -> list[Decision]:
    return [limiter.hit_now(key, rate) for _ in range(count)]


@pytest.mark.parametrize("text", ["1/second", "3/second", "7/minute", "600/minute", "13/hour"])
def test_limit_n_admits_exactly_n_then_refuses_with_headers(text: str) -> None:
    rate = parse_rate(text)
    limiter = LocalLimiter(Clock(1_700_000_000.0))  # an epoch-sized clock: floats would drift
    decisions = burst(limiter, "token", rate, rate.limit + 2)

    admitted = [d for d in decisions if d.allowed]
    assert len(admitted) == rate.limit
    assert [d.remaining for d in admitted] == list(range(rate.limit - 1, -1, -1))
    interval = rate.period / rate.limit
    assert [d.reset for d in admitted] == [
        math.ceil(round(k * interval, 6)) for k in range(1, rate.limit + 1)
    ]
    refused = decisions[rate.limit :]
    assert all(not d.allowed for d in refused)
    assert refused[0].headers() == {
        "RateLimit-Limit": str(rate.limit),
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": str(rate.period),
        "Retry-After": str(math.ceil(interval)),
    }
    assert "Retry-After" not in admitted[0].headers()
    assert admitted[0].headers()["RateLimit-Remaining"] == str(rate.limit - 1)


@given(
    limit=st.integers(1, 999_999_999),
    period=PERIODS,
    now=st.integers(0, 2**52),
)
def test_the_nth_request_of_a_burst_is_admitted_and_the_next_refused(
    limit: int, period: int, now: int
) -> None:
    # The state after limit - 1 hits at one instant, built exactly: any limit, any clock.
    rate = Rate(limit, period)
    us, frac = divmod((limit - 1) * period * US, limit)
    decision, tat = gcra(Tat(now + us, frac) if limit > 1 else None, now, rate)
    assert decision == Decision(True, limit, 0, period, 0)
    assert tat == Tat(now + period * US)
    refused, kept = gcra(tat, now, rate)
    assert not refused.allowed
    assert kept == tat
    assert refused.retry_after == -(-period // limit)


@given(limit=st.integers(1, 50), period=PERIODS, start=st.integers(0, 2**52))
def test_burst_counts_exactly_at_any_clock(limit: int, period: int, start: int) -> None:
    rate = Rate(limit, period)
    tat: Tat | None = None
    admitted = 0
    for _ in range(limit + 3):
        decision, tat = gcra(tat, start, rate)
        admitted += decision.allowed
    assert admitted == limit


@given(
    limit=st.integers(1, 20),
    period=PERIODS,
    gaps=st.lists(st.integers(0, 2 * US), min_size=1, max_size=120),
)
def test_no_window_admits_more_than_the_burst_plus_its_refill(
    limit: int, period: int, gaps: list[int]
) -> None:
    rate = Rate(limit, period)
    interval = period * US / limit
    tat: Tat | None = None
    now = 10**15
    admitted: list[int] = []
    for gap in gaps:
        now += gap
        decision, tat = gcra(tat, now, rate)
        if decision.allowed:
            admitted.append(now)
    for i, first in enumerate(admitted):
        for j in range(i, len(admitted)):
            # N at once, then one per interval: never more in any span of time.
            assert j - i + 1 <= limit + (admitted[j] - first) // interval


@given(limit=st.integers(1, 1000), period=PERIODS, count=st.integers(1, 50))
def test_a_client_keeping_to_the_rate_is_never_refused(limit: int, period: int, count: int) -> None:
    rate = Rate(limit, period)
    spacing = -(-period * US // limit)  # the interval, rounded up to a whole µs
    tat: Tat | None = None
    for n in range(count):
        decision, tat = gcra(tat, 10**15 + n * spacing, rate)
        assert decision.allowed
        assert decision.remaining == limit - 1


@given(
    limit=st.integers(1, 1000),
    period=PERIODS,
    debt=st.integers(0, 10**12),
    gap=st.integers(1, 10**7),
)
def test_a_refusal_holds_exactly_until_refused_until(
    limit: int, period: int, debt: int, gap: int
) -> None:
    # A refused bucket, in any state: every moment before refused_until is refused (and
    # keeps the TAT), and the first moment it names, or the next µs, admits.
    rate = Rate(limit, period)
    now = 10**15
    tat: Tat | None = Tat(now + period * US - debt % (period * US // limit + 1), debt % limit)
    while gcra(tat, now, rate)[0].allowed:
        tat = gcra(tat, now, rate)[1]
    assert tat is not None
    until = refused_until(tat, rate)
    assert until > now
    for moment in (now, now + gap % (until - now), until - 1):
        refused, kept = gcra(tat, moment, rate)
        assert not refused.allowed and kept == tat
    assert gcra(tat, until, rate)[0].allowed or gcra(tat, until + 1, rate)[0].allowed


def test_refills_one_request_per_interval() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    rate = parse_rate("7/minute")  # interval 8.571428... s: not a whole number of µs
    burst(limiter, "token", rate, 7)
    interval_us = 60 * US / 7

    clock.now += math.floor(interval_us) / US  # 0.57 µs short of the interval
    early = limiter.hit_now("token", rate)
    assert not early.allowed
    assert early.retry_after == 1
    clock.now += 1 / US
    assert limiter.hit_now("token", rate).allowed
    assert not limiter.hit_now("token", rate).allowed


def test_sustained_traffic_is_admitted_at_the_configured_rate() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    rate = parse_rate("10/second")
    admitted = 0
    for _ in range(5000):  # one request per millisecond for 5 s
        admitted += limiter.hit_now("token", rate).allowed
        clock.now += 0.001
    assert admitted == 10 + 49  # the burst, then one at 0.1 s, 0.2 s, … 4.9 s


def test_full_quota_is_back_after_reset_seconds() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    rate = parse_rate("5/second")
    last = burst(limiter, "token", rate, 5)[-1]
    assert last.reset == 1
    clock.now += last.reset
    assert [d.allowed for d in burst(limiter, "token", rate, 6)] == [True] * 5 + [False]


def test_tokens_have_separate_buckets() -> None:
    limiter = LocalLimiter(Clock())
    rate = parse_rate("2/minute")
    assert [d.allowed for d in burst(limiter, "a", rate, 3)] == [True, True, False]
    assert [d.allowed for d in burst(limiter, "b", rate, 3)] == [True, True, False]


def test_a_changed_limit_starts_a_new_quota_at_once() -> None:
    limiter = LocalLimiter(Clock())
    assert [d.allowed for d in burst(limiter, "token", parse_rate("3/minute"), 4)] == [
        True,
        True,
        True,
        False,
    ]
    raised = burst(limiter, "token", parse_rate("10/minute"), 11)
    assert [d.allowed for d in raised] == [True] * 10 + [False]
    assert raised[0].headers()["RateLimit-Limit"] == "10"
    lowered = burst(limiter, "token", parse_rate("2/minute"), 3)
    assert [d.allowed for d in lowered] == [True, True, False]


def test_idle_keys_expire() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    rate = parse_rate("5/second")
    for n in range(1000):
        limiter.hit_now(f"idle-{n}", rate)
    assert len(limiter) == 1000
    clock.now += 1.0  # every idle bucket is full again: nothing worth keeping
    for _ in range(500):
        limiter.hit_now("busy", rate)
    assert len(limiter) == 1


def test_key_count_is_capped_and_the_least_recently_hit_go_first() -> None:
    limiter = LocalLimiter(Clock(), max_keys=100)
    rate = parse_rate("1/hour")
    limiter.hit_now("kept", rate)
    for n in range(1000):
        limiter.hit_now(f"key-{n}", rate)
        if n % 50 == 0:
            assert not limiter.hit_now("kept", rate).allowed  # hit again: kept fresh
    assert len(limiter) == 100
    assert not limiter.hit_now("kept", rate).allowed
    assert limiter.hit_now("key-0", rate).allowed  # forgotten under the cap: a fresh bucket


async def test_async_interface_and_close() -> None:
    limiter = LocalLimiter(Clock())
    rate = parse_rate("1/minute")
    assert (await limiter.hit("token", rate)).allowed
    assert not (await limiter.hit("token", rate)).allowed
    await limiter.close()
    assert len(limiter) == 0


async def test_create_limiter_follows_the_backend_setting() -> None:
    assert isinstance(create_limiter(Settings.from_env({})), LocalLimiter)
    redis_limiter = create_limiter(Settings.from_env({"RATE_LIMIT_BACKEND": "redis"}))
    assert type(redis_limiter).__name__ == "RedisLimiter"
    await redis_limiter.close()


def test_redis_backend_without_the_redis_extra_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "gateway.proxy.ratelimit.redis", raising=False)
    for name in [name for name in sys.modules if name.partition(".")[0] == "hiredis"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if the extra was not installed
    for name in ("gateway.proxy.ratelimit", "gateway.proxy.app"):  # both import without it
        monkeypatch.delitem(sys.modules, name, raising=False)
        importlib.import_module(name)
    assert isinstance(create_limiter(Settings.from_env({})), LocalLimiter)
    redis_settings = Settings.from_env({"RATE_LIMIT_BACKEND": "redis"})
    for check in (require_backend, create_limiter):
        with pytest.raises(ConfigError) as err:
            check(redis_settings)
        assert str(err.value) == (
            "RATE_LIMIT_BACKEND: redis needs the hiredis package: pip install 'tollgate[redis]'"
        )
