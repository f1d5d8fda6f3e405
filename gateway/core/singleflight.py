"""Single flight: concurrent callers for one key share one computation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Concurrent :meth:`run` calls for one key share one call of the function.

    The shared call runs in its own task, shielded: a caller that goes away (a
    client disconnecting) does not cancel the work the others wait for.
    """

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, func: Callable[[], Awaitable[V]]) -> V:
        task = self._calls.get(key)
        if task is None:
            task = asyncio.ensure_future(func())
            self._calls[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        # Every waiter may have gone: mark the outcome as seen so asyncio does
        # not report "exception was never retrieved".
        if not task.cancelled():
            task.exception()

    def __len__(self) -> int:
        return len(self._calls)
