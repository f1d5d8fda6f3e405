"""Expiry notices: ``token.expiring`` 7 days and 1 day before a token expires, and
``token.expired`` once it has, each exactly once across any number of admin instances.

Every instance looks at least once a minute; which notices are new is decided by the
database (``WebhookStore.expiry_notices``: a unique key per notice, inserted in the same
transaction as its outbox event), so instances racing each other emit each notice once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Final

from gateway.core import db
from gateway.core.store_webhooks import Notice, WebhookStore

log = logging.getLogger(__name__)

# Old events and notice keys are pruned this often (seconds).
PRUNE_INTERVAL: Final = 3600.0


class NoticeScheduler:
    """``async with NoticeScheduler(...)``: looks for due notices every ``interval`` seconds
    and calls ``emitted`` (the deliverer's wake-up) when it queued some."""

    def __init__(
        self,
        webhooks: WebhookStore,
        *,
        interval: float,
        keep_days: int,
        emitted: Callable[[], None] = lambda: None,
    ) -> None:
        self._webhooks = webhooks
        self._interval = interval
        self._keep_days = keep_days
        self._emitted = emitted
        self._pruned = float("-inf")
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> list[Notice]:
        """One look: the notices this instance emitted."""
        notices = await self._webhooks.expiry_notices()
        if notices:
            self._emitted()
        if time.monotonic() - self._pruned >= PRUNE_INTERVAL:
            await self._webhooks.prune(keep_days=self._keep_days)
            self._pruned = time.monotonic()
        return notices

    async def __aenter__(self) -> NoticeScheduler:
        self._task = asyncio.create_task(self._run(), name="expiry notices")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except db.UNREACHABLE as err:
                log.warning("expiry notices postponed, the database is unavailable: %r", err)
            except Exception:  # the loop must outlive any one bad pass
                log.exception("expiry notice pass failed")
            await asyncio.sleep(self._interval)
