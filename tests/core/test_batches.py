"""Batched loads: one many-key fetch for the loads of one loop turn, the others gathered
while the allowed number of fetches is out, errors and cancellation kept to their batch."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from gateway.core.batches import Batches


class Fetches:
    """A fetch answering ``key * 10`` for keys under 100, recording each call's keys; while
    ``gate`` is clear, calls wait for it."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: Exception | None = None

    async def __call__(self, keys: list[int]) -> Mapping[int, int]:
        self.calls.append(keys)
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return {key: key * 10 for key in keys if key < 100}

    async def sent(self) -> None:
        """Until the first fetch has been called (loop turns, no time)."""
        while not self.calls:
            await asyncio.sleep(0)


async def test_loads_of_one_turn_are_one_fetch_and_missing_keys_get_the_default() -> None:
    fetch = Fetches()
    batches = Batches(fetch, missing=-1, max_in_flight=2)
    values = await asyncio.gather(*(batches.load(key) for key in (1, 2, 3, 2, 500)))
    assert values == [10, 20, 30, 20, -1]
    assert fetch.calls == [[1, 2, 3, 500]]  # the same key once


async def test_loads_wait_while_the_fetches_allowed_are_out_then_go_together() -> None:
    fetch = Fetches()
    fetch.gate.clear()
    batches = Batches(fetch, missing=-1, max_in_flight=1)
    first = asyncio.ensure_future(batches.load(1))
    await fetch.sent()
    later = [asyncio.ensure_future(batches.load(key)) for key in range(2, 30)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert fetch.calls == [[1]]  # the others gather meanwhile
    fetch.gate.set()
    assert await first == 10
    assert await asyncio.gather(*later) == [key * 10 for key in range(2, 30)]
    assert fetch.calls == [[1], list(range(2, 30))]


async def test_a_batch_is_at_most_max_size_keys() -> None:
    fetch = Fetches()
    batches = Batches(fetch, missing=-1, max_in_flight=2, max_size=10)
    assert await asyncio.gather(*(batches.load(key) for key in range(25))) == [
        key * 10 for key in range(25)
    ]
    assert [len(keys) for keys in fetch.calls] == [10, 10, 5]


async def test_an_error_reaches_every_load_of_its_batch_and_no_other() -> None:
    fetch = Fetches()
    batches = Batches(fetch, missing=-1, max_in_flight=2)
    fetch.error = OSError("connection reset")
    results = await asyncio.gather(*(batches.load(key) for key in (1, 2)), return_exceptions=True)
    assert [type(result) for result in results] == [OSError, OSError]
    fetch.error = None
    assert await batches.load(1) == 10  # a new batch, a new fetch


async def test_a_cancelled_load_leaves_the_answer_to_the_others() -> None:
    fetch = Fetches()
    fetch.gate.clear()
    batches = Batches(fetch, missing=-1, max_in_flight=1)
    impatient = asyncio.ensure_future(batches.load(7))
    patient = asyncio.ensure_future(batches.load(7))
    await fetch.sent()
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    fetch.gate.set()
    assert await patient == 70


async def test_close_cancels_what_is_out_and_what_waits() -> None:
    fetch = Fetches()
    fetch.gate.clear()
    batches = Batches(fetch, missing=-1, max_in_flight=1)
    out = asyncio.ensure_future(batches.load(1))
    await fetch.sent()
    waiting = asyncio.ensure_future(batches.load(2))
    await asyncio.sleep(0)
    await batches.close()
    for load in (out, waiting):
        with pytest.raises(asyncio.CancelledError):
            await load
