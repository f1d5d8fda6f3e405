"""The verification caches on their own, with an injected clock."""

from __future__ import annotations

import asyncio

import pytest

from gateway.core.proofs import NegativeCache, ProofCache
from gateway.core.rates import Rate
from gateway.core.singleflight import SingleFlight
from gateway.proxy.caches import StateCache, TokenState
from tests.helpers import Clock


def state(token_id: str, project_id: str = "p1") -> TokenState:
    return TokenState(token_id, project_id, None, Rate(10, 60))


def test_proof_cache_is_bounded_least_recently_used_first() -> None:
    proofs = ProofCache(maxsize=2)
    proofs.add(b"a", "ta")
    proofs.add(b"b", "tb")
    assert proofs.get(b"a") == "ta"  # a is now the most recent
    proofs.add(b"c", "tc")
    assert proofs.get(b"b") is None
    assert proofs.get(b"a") == "ta"
    assert len(proofs) == 2


def test_proof_cache_evicts_by_token_id() -> None:
    proofs = ProofCache()
    proofs.add(b"digest", "t1")
    proofs.evict("t1")
    assert proofs.get(b"digest") is None
    assert len(proofs) == 0


def test_state_cache_ttl() -> None:
    clock = Clock(100.0)
    states = StateCache(30, clock=clock)
    states.put(state("t1"))
    clock.now += 29.9
    assert states.get("t1") is not None
    clock.now += 0.2
    assert states.get("t1") is None
    assert states.stale("t1") is not None  # kept as the fallback


def test_state_cache_expire_all_keeps_stale_fallback() -> None:
    states = StateCache(30, clock=Clock(100.0))
    states.put(state("t1"))
    states.expire_all()
    assert states.get("t1") is None
    assert states.stale("t1") is not None
    states.put(state("t1"))
    assert states.get("t1") is not None


def test_state_cache_evicts_projects() -> None:
    states = StateCache(30, clock=Clock(100.0))
    states.put(state("t1", "p1"))
    states.put(state("t2", "p1"))
    states.put(state("t3", "p2"))
    assert sorted(states.evict_project("p1")) == ["t1", "t2"]
    assert states.stale("t1") is None and states.stale("t2") is None
    assert states.get("t3") is not None
    assert states.evict_project("p1") == []


def test_state_cache_is_bounded() -> None:
    states = StateCache(30, clock=Clock(100.0), maxsize=2)
    for token_id in ("t1", "t2", "t3"):
        states.put(state(token_id))
    assert len(states) == 2
    assert states.stale("t1") is None


def test_retry_later_extends_a_stale_entry_briefly() -> None:
    clock = Clock(100.0)
    states = StateCache(30, clock=clock)
    entry = state("t1")
    states.put(entry)
    clock.now += 31
    states.retry_later(entry, 1.0)
    assert states.get("t1") is entry
    clock.now += 1.1
    assert states.get("t1") is None


def test_negative_cache_forgets_after_ttl() -> None:
    clock = Clock(100.0)
    negatives = NegativeCache(60, clock=clock, maxsize=2)
    negatives.add(b"x")
    assert b"x" in negatives
    clock.now += 61
    assert b"x" not in negatives
    for key in (b"a", b"b", b"c"):
        negatives.add(key)
    assert len(negatives) == 2


async def test_single_flight_shares_one_call() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    waiters = [asyncio.create_task(flight.run("k", work)) for _ in range(10)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == [42] * 10
    assert calls == 1
    assert len(flight) == 0


async def test_single_flight_survives_a_cancelled_waiter() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        return 7

    first = asyncio.create_task(flight.run("k", work))
    second = asyncio.create_task(flight.run("k", work))
    await asyncio.sleep(0)
    first.cancel()  # a client that went away
    gate.set()
    assert await second == 7
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_single_flight_shares_failures_and_forgets_them() -> None:
    flight: SingleFlight[str, int] = SingleFlight()

    async def fail() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await flight.run("k", fail)

    async def succeed() -> int:
        return 1

    assert await flight.run("k", succeed) == 1
