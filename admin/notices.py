"""Expiry notices: ``token.expiring`` 7 days and 1 day before a token expires, and
``token.expired`` once it has, each exactly once across any number of admin instances.

Every instance looks at least once a minute; which notices are new is decided by the
database (``WebhookStore.expiry_notices``: a unique key per notice, inserted in the same
transaction as its outbox event), so instances racing each other emit each notice once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Final

from gateway.core.store_webhooks import Notice, WebhookStore

from . import background

# Old events and notice keys are pruned this often (seconds).
PRUNE_INTERVAL: Final = 3600.0


class NoticeScheduler:
    """Looks for due notices (``run_once``, or every ``interval`` seconds ``running()``) and
    calls ``emitted`` (the deliverer's wake-up) when it queued some."""

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

    async def run_once(self) -> list[Notice]:
        """One look: the notices this instance emitted."""
        notices = await self._webhooks.expiry_notices()
        if notices:
            self._emitted()
        if time.monotonic() - self._pruned >= PRUNE_INTERVAL:
            await self._webhooks.prune(keep_days=self._keep_days)
            self._pruned = time.monotonic()
        return notices

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Look every ``interval`` seconds inside the ``async with`` block."""
        loop = background.repeat("expiry notices", self.run_once, self._pause)
        return background.running(loop, "expiry notices")

    async def _pause(self) -> None:
        await asyncio.sleep(self._interval)
