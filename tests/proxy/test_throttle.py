"""The failure throttle and the failure pacing on their own, with an injected clock."""

from __future__ import annotations

import pytest

from gateway.proxy.ratelimit.throttle import FailurePacing, FailureThrottle
from tests.helpers import Clock


def test_burst_then_one_per_interval() -> None:
    clock = Clock(100.0)
    throttle = FailureThrottle(burst=5, period=60, clock=clock)
    assert [throttle.acquire("t") for _ in range(5)] == [0.0] * 5
    wait = throttle.acquire("t")
    assert wait == pytest.approx(12.0)
    assert throttle.acquire("other") == 0.0  # per token id
    clock.now += 12
    assert throttle.acquire("t") == 0.0
    assert throttle.acquire("t") > 0


def test_refund() -> None:
    throttle = FailureThrottle(burst=1, period=60, clock=Clock(100.0))
    assert throttle.acquire("t") == 0.0
    throttle.refund("t")  # it was the owner
    assert throttle.acquire("t") == 0.0


def test_an_idle_id_is_forgotten_once_its_attempts_no_longer_count() -> None:
    clock = Clock(100.0)
    throttle = FailureThrottle(burst=5, period=60, clock=clock)
    for _ in range(6):
        throttle.acquire("t")
    clock.now += 59.9
    assert throttle.acquire("t") == 0.0  # refilled, still remembered
    assert len(throttle) == 1
    clock.now += 60
    assert len(throttle) == 0


class CountedId(str):
    """A token id that counts how often the throttle hashes it: its work per call."""

    hashes = 0

    def __hash__(self) -> int:
        CountedId.hashes += 1
        return str.__hash__(self)


FLOOD = 200_000
MAXSIZE = 100_000
HASHES_PER_CALL = 20  # measured: 7 per call; a rebuilt table costs one per entry


def test_a_flood_of_random_ids_costs_constant_work_and_bounded_memory() -> None:
    """200,000 distinct well-formed ids, more than the table holds, all within the
    period (none expires): each call does a bounded amount of work, the table stays
    at its size, and the id being hammered meanwhile keeps its spent budget."""
    clock = Clock(100.0)
    throttle = FailureThrottle(burst=5, period=60, clock=clock, maxsize=MAXSIZE)
    victim = CountedId("victim")
    assert [throttle.acquire(victim) for _ in range(5)] == [0.0] * 5
    CountedId.hashes = 0
    calls = 0
    for n in range(FLOOD):
        assert throttle.acquire(CountedId(f"id{n:017d}")) == 0.0
        calls += 1
        # Checked as it goes: a table rebuilt per call fails here at once, not in hours.
        assert CountedId.hashes <= HASHES_PER_CALL * calls
        if n % 1000 == 0:
            assert throttle.acquire(victim) > 0, f"victim's budget reset after {n} ids"
            calls += 1
            assert len(throttle) <= MAXSIZE
        clock.now += 0.00005  # 10 s in all: every id stays live, no refill yet
    assert len(throttle) == MAXSIZE
    clock.now += 12  # one more attempt for the victim, then refused again
    assert throttle.acquire(victim) == 0.0
    assert throttle.acquire(victim) > 0


def test_failures_beyond_the_free_ones_in_a_second_wait() -> None:
    clock = Clock(100.2)
    pacing = FailurePacing(free=3, delay=0.25, clock=clock)
    assert [pacing.failed() for _ in range(5)] == [0.0, 0.0, 0.0, 0.25, 0.25]
    clock.now = 100.99
    assert pacing.failed() == 0.25  # the same second
    clock.now = 101.0
    assert [pacing.failed() for _ in range(4)] == [0.0, 0.0, 0.0, 0.25]  # a new second
