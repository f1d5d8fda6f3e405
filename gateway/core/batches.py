"""Batched loads: concurrent lookups of single keys answered by few many-key queries.

A load joins the batch being gathered. The batch is sent at the end of the event-loop
turn in which its first key came, or, while ``max_in_flight`` batches are out, as soon as
one of them returns. An idle process therefore sends each key at once, and a busy one
sends fewer, larger batches: under a flood of lookups the database parses, plans and
answers one query per batch instead of one per key.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Batches(Generic[K, V]):
    """:meth:`load` one key; ``fetch`` answers many at once (a key it leaves out is
    ``missing``). An error of ``fetch`` is raised to every load of its batch."""

    def __init__(
        self,
        fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        *,
        missing: V,
        max_in_flight: int,
        max_size: int = 500,
    ) -> None:
        self._fetch = fetch
        self._missing = missing
        self._max_in_flight = max_in_flight
        self._max_size = max_size
        self._pending: dict[K, asyncio.Future[V]] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._scheduled = False

    async def load(self, key: K) -> V:
        future = self._pending.get(key)
        if future is None:
            future = self._pending[key] = asyncio.get_running_loop().create_future()
            future.add_done_callback(_seen)
            self._schedule()
        # Shielded: a load that is cancelled (its caller's timeout) leaves the batch's
        # answer to the other loads of the same key.
        return await asyncio.shield(future)

    def _schedule(self) -> None:
        if not self._scheduled and len(self._in_flight) < self._max_in_flight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._scheduled = False
        if not self._pending or len(self._in_flight) >= self._max_in_flight:
            return
        keys = list(itertools.islice(self._pending, self._max_size))
        batch = {key: self._pending.pop(key) for key in keys}
        task = asyncio.ensure_future(self._answer(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._sent)
        if self._pending:  # more than one batch's worth
            self._schedule()

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._pending:
            self._schedule()

    async def _answer(self, batch: dict[K, asyncio.Future[V]]) -> None:
        try:
            found = await self._fetch(list(batch))
        except asyncio.CancelledError:
            for future in batch.values():
                future.cancel()
            raise
        except Exception as err:
            for future in batch.values():
                if not future.done():
                    future.set_exception(err)
            return
        for key, future in batch.items():
            if not future.done():
                future.set_result(found.get(key, self._missing))

    async def close(self) -> None:
        """Cancel the batches out and every load waiting for one."""
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)


def _seen(future: asyncio.Future[Any]) -> None:
    """Mark an error as retrieved: every load of the key may have gone (timed out), and
    asyncio would report "exception was never retrieved"."""
    if not future.cancelled():
        future.exception()
