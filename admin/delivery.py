"""Sending the outbox: every admin instance delivers due webhook events in the background.

The loop claims due deliveries (``WebhookStore.claim``: ``FOR UPDATE SKIP LOCKED`` and a
lease, so two instances never send the same attempt), sends each as a signed POST
(``signing``) with its own timeout, at most ``concurrency`` at once, and records the
outcome: a 2xx within the timeout is delivered; anything else is tried again later
(``Schedule``: exponential backoff with jitter) until 24 h have passed, then failed.
Sends run on their own ``ClientSession``, whose resolver is the SSRF ``Guard``: a slow or
hostile receiver holds one of the slots for at most one timeout and never the admin API.

Nothing is lost on a stop: attempts cut short are handed back (due at once), and a
crashed instance's leases run out. Delivery is at least once; receivers deduplicate on
``webhook-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from yarl import URL

from gateway.core import db
from gateway.core.store_webhooks import Attempt, WebhookStore

from . import background, signing
from .metrics import AdminMetrics
from .ssrf import Guard, NotAllowed, Unresolvable, literal

log = logging.getLogger(__name__)

USER_AGENT: Final = "Tollgate-Webhooks/1"
# An error text is shown in delivery listings: keep it a line.
ERROR_MAX: Final = 300


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a failed delivery is tried again: ``first`` seconds after the first attempt,
    each wait ``factor`` times the one before (at most ``longest``), every wait scaled by a
    random factor within ``1 ± jitter``; no attempt later than ``give_up_after`` seconds
    after the event. The defaults: about 5 s, 40 s, 5 min, 43 min, 5.7 h, then every 6 h,
    so the third attempt comes within a minute and the ninth, last, about 23 h in."""

    first: float = 5.0
    factor: float = 8.0
    longest: float = 6 * 3600
    give_up_after: float = 24 * 3600
    jitter: float = 0.2

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds from failed attempt number ``attempt`` (1 = the first) to the next."""
        base = min(self.longest, self.first * self.factor ** (attempt - 1))
        return base * (1 - self.jitter + 2 * self.jitter * rand())


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """How the admin app delivers; tests shorten the times instead of waiting."""

    run: bool = True  # deliver and schedule notices in the background
    schedule: Schedule = field(default_factory=Schedule)
    attempt_timeout: float = 10.0  # a 2xx within this long is a success
    concurrency: int = 16  # attempts in flight at once
    lease: float = 60.0  # longer than an attempt can take
    poll_interval: float = 1.0  # how often the outbox is looked at when idle
    notice_interval: float = 30.0  # how often expiry notices are looked for (<= 60 s)
    keep_days: int = 30  # delivered and failed events are kept this long
    retention_interval: float = 3600.0  # how often audit events past retention are deleted


class Deliverer:
    """``async with Deliverer(...).running():`` delivers until the block ends."""

    def __init__(
        self,
        webhooks: WebhookStore,
        guard: Guard,
        metrics: AdminMetrics,
        options: DeliveryOptions,
    ) -> None:
        self._webhooks = webhooks
        self._guard = guard
        self._metrics = metrics
        self._options = options
        self._wake = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], Attempt] = {}
        self._session: aiohttp.ClientSession | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Deliverer]:
        connector = aiohttp.TCPConnector(
            resolver=self._guard.resolver(),
            use_dns_cache=False,  # resolve (and check) anew for every connection
            limit=self._options.concurrency,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": USER_AGENT},
            timeout=aiohttp.ClientTimeout(total=self._options.attempt_timeout),
            trust_env=False,  # no proxy from the environment: the guard decides
        )
        loop = background.repeat("webhook delivery", self._claim, self._idle)
        try:
            async with background.running(loop, "webhook deliverer"):
                yield self
        finally:
            await self._hand_back()
            await self._session.close()

    def wake(self) -> None:
        """Look at the outbox now (an event was just queued)."""
        self._wake.set()

    # ------------------------------------------------------------ the loop

    async def _idle(self) -> None:
        """Until the poll interval has passed, or something woke the loop."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
        # that arrives as the wait ends (a wake-up just before a stop), and the stop hangs.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._options.poll_interval):
                await self._wake.wait()
        self._wake.clear()

    async def _claim(self) -> None:
        free = self._options.concurrency - len(self._inflight)
        if free <= 0:
            return
        for attempt in await self._webhooks.claim(free, lease=self._options.lease):
            task = asyncio.create_task(self._attempt(attempt))
            self._inflight[task] = attempt
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()  # a slot is free: claim more at once

    async def _hand_back(self) -> None:
        """Stop the attempts in flight and hand them back: due again at once, anywhere."""
        cut = dict(self._inflight)
        for task in cut:
            task.cancel()
        await asyncio.gather(*cut, return_exceptions=True)
        unfinished = [attempt for task, attempt in cut.items() if task.cancelled()]
        if unfinished:
            try:
                await self._webhooks.release(unfinished, error="interrupted: the admin stopped")
            except db.UNREACHABLE as err:  # their leases run out instead
                log.warning("could not hand back %d deliveries: %r", len(unfinished), err)

    # ------------------------------------------------------------ one attempt

    async def _attempt(self, attempt: Attempt) -> None:
        status, error, started = None, None, time.perf_counter()
        try:
            status = await self._send(attempt)
        except TimeoutError:
            error = f"timed out after {self._options.attempt_timeout:g} s"
        except (NotAllowed, Unresolvable) as err:
            error = f"not sent: {err}"
        except aiohttp.ClientError as err:
            error = f"{type(err).__name__}: {err}"
        except ValueError as err:  # a URL the client cannot use (stored before a rule change)
            error = f"not sent: {err}"
        duration_ms = (time.perf_counter() - started) * 1000
        try:
            await self._record(attempt, status, error[:ERROR_MAX] if error else None, duration_ms)
        except db.UNREACHABLE as err:  # the lease runs out and the attempt is made again
            log.warning("could not record delivery %d: %r", attempt.delivery_id, err)

    async def _send(self, attempt: Attempt) -> int:
        """POST the event; the receiver's status."""
        assert self._session is not None
        url = URL(attempt.url)
        address = literal(url.host or "")
        if address is not None:  # an address in the URL never reaches the resolver
            self._guard.check(str(url.host), address)
        body = signing.event_body(attempt.type, attempt.event_at, json.loads(attempt.data))
        headers = signing.headers(attempt.secret, attempt.event_id, int(time.time()), body)
        async with self._session.post(
            url, data=body, headers=headers, allow_redirects=False
        ) as response:
            return response.status

    async def _record(
        self, attempt: Attempt, status: int | None, error: str | None, duration_ms: float
    ) -> None:
        if status is not None and 200 <= status < 300:
            if await self._webhooks.delivered(attempt, status=status, duration_ms=duration_ms):
                self._metrics.webhook_deliveries.labels("delivered").inc()
            return
        schedule = self._options.schedule
        state = await self._webhooks.failed(
            attempt,
            status=status,
            error=error if status is None else None,
            duration_ms=duration_ms,
            retry_in=schedule.delay(attempt.attempt),
            give_up_after=schedule.give_up_after,
        )
        if state is not None:
            self._metrics.webhook_deliveries.labels(
                "retried" if state == "pending" else "failed"
            ).inc()
