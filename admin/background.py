"""The admin app's background loops (webhook delivery, expiry notices): one pass after
another for as long as the app runs, each pass outliving any failure of the one before."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from gateway.core import db

log = logging.getLogger(__name__)


async def repeat(
    what: str, work: Callable[[], Awaitable[Any]], pause: Callable[[], Awaitable[None]]
) -> None:
    """``work()``, then ``pause()``, forever; a failed pass is logged and the next one runs.

    An outage is logged when it starts and when a pass works again, not at every pass.
    """
    postponed = 0
    while True:
        try:
            await work()
        except db.UNREACHABLE as err:
            postponed += 1
            if postponed == 1:
                log.warning("%s postponed, the database is unavailable: %r", what, err)
        except Exception:  # the loop must outlive any one bad pass
            log.exception("%s failed", what)
        else:
            if postponed:
                log.info("%s resumed after %d postponed pass(es)", what, postponed)
                postponed = 0
        await pause()


@contextlib.asynccontextmanager
async def running(loop: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run ``loop`` as a task inside the block; it is cancelled (and awaited) on the way out."""
    task = asyncio.create_task(loop, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
