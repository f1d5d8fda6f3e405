"""Last-used times, written behind the request path (SPEC §5 "Last used").

The request path only calls :meth:`LastUsed.record`: one clock read and one dict
store, no I/O and no datetime. A background task writes every pending entry in ONE
statement (forward-only ``UPDATE … FROM unnest``, :mod:`gateway.core.store_usage`)
every ``LAST_USED_FLUSH_INTERVAL`` seconds, and once more at shutdown.

A failed write keeps its entries: they are merged back with the ones recorded
meanwhile (the later time wins) and go out with the next flush, so nothing is lost
while Postgres is briefly unreachable. Tokens deleted meanwhile are skipped by the
statement itself.

A write that fails for any other reason than an outage (a missing table, a violated
constraint) is a bug or a schema mismatch, not something the next interval cures: it
is logged once with its traceback, counted (``result="error"``) like any failed
flush, and retried ever later (doubling up to :data:`BUG_BACKOFF_MAX`), each retry one
ERROR line, until a write succeeds again.

The usage ledger (SPEC §11) rides on the same flush: each flush takes the
:class:`~.usage.Ledger`'s counts as one :class:`~gateway.core.store_usage.Batch` and
writes them with the last-used times in ONE transaction
(:meth:`UsageStore.flush <gateway.core.store_usage.UsageStore.flush>`). A failed batch
is kept with its id and retried: one whose COMMIT went out may have been applied (the
answer was lost), and its id makes the retry a no-op; batches that never reached a
COMMIT are merged, so an outage holds one batch of counts, however long it lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg

from gateway.core import db
from gateway.core.store_usage import Batch, Totals, UsageStore

from .metrics import GatewayMetrics
from .usage import Ledger

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Applied = Callable[[list[Batch], Totals], None]

# A write that hangs (Postgres unreachable without a reset) must not stall the loop
# forever: give up, keep the entries, try again at the next interval.
FLUSH_TIMEOUT = 10.0
# At shutdown, quick retries for a few seconds, then give up on the last entries (the
# process is going away; a supervisor waits only so long).
SHUTDOWN_DEADLINE = 5.0
SHUTDOWN_RETRY_DELAY = 0.2
BUG_BACKOFF_MAX = 300.0

# An outage, or a deadlock or serialization failure (class 40: rolled back, nothing
# applied): the next interval's attempt cures them.
_FAILURES = (*db.UNREACHABLE, asyncpg.TransactionRollbackError)


class LastUsed:
    """``token id -> latest use`` in memory, flushed in batches to the store."""

    def __init__(
        self,
        store: UsageStore,
        metrics: GatewayMetrics,
        *,
        ledger: Ledger | None = None,
        applied: Applied | None = None,
        clock: Clock = time.time,
        timeout: float = FLUSH_TIMEOUT,
    ) -> None:
        self._store = store
        self._ledger = ledger if ledger is not None else Ledger()
        self._applied = applied
        self._clock = clock
        self._timeout = timeout
        self._pending: dict[str, float] = {}
        self._batches: list[Batch] = []  # usage not known to be written, oldest first
        self._in_flight = 0
        self._failing = 0  # consecutive writes failed by a bug (not an outage)
        self._unreachable = 0  # consecutive writes failed by an outage (logged once)
        self._lock = asyncio.Lock()
        self._pending_gauge = metrics.last_used_pending
        self._flushed_ok = metrics.last_used_flushes.labels("ok")
        self._flushed_error = metrics.last_used_flushes.labels("error")
        self._usage_ok = metrics.usage_flushes.labels("ok")
        self._usage_error = metrics.usage_flushes.labels("error")

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    def record(self, token_id: str) -> None:
        """Note that ``token_id`` was used now (hot path: a clock read and a dict store)."""
        pending = self._pending
        if token_id not in pending:
            self._pending_gauge.inc()
        pending[token_id] = self._clock()

    @property
    def pending(self) -> int:
        """Distinct tokens whose last use is not written yet (including a write in flight)."""
        return len(self._pending) + self._in_flight

    @property
    def usage_pending(self) -> int:
        """Usage batches not known to be written, plus one if counts wait in the ledger."""
        return len(self._batches) + (1 if self._ledger.pending else 0)

    def _queue(self, new: Batch) -> None:
        """Add ``new`` to the batches to write, merged into the last one if that one never
        reached a COMMIT (only a sent batch must keep its id apart)."""
        if self._batches and not self._batches[-1].sent:
            self._batches[-1].merge(new)
        else:
            self._batches.append(new)

    async def flush(self) -> bool:
        """Write every pending entry and usage batch in one transaction; True unless the
        write failed."""
        async with self._lock:
            batch, self._pending = self._pending, {}
            new = self._ledger.take()
            if new is not None:
                self._queue(new)
            batches = list(self._batches)
            if not batch and not batches:
                return True
            self._in_flight = len(batch)
            written = False
            totals: Totals = {}
            try:
                ids = list(batch)
                times = [datetime.fromtimestamp(at, UTC) for at in batch.values()]
                async with asyncio.timeout(self._timeout):
                    totals = await self._store.flush(ids, times, batches)
                written = True
            except _FAILURES as err:
                self._unreachable += 1
                if self._unreachable == 1:  # once an outage, not once a flush
                    log.warning(
                        "writing %d last-used time(s) failed, will retry until Postgres"
                        " answers: %s",
                        len(batch),
                        err,
                    )
            except Exception:  # a bug must not end the flusher: keep the entries, say why
                self._bug(len(batch))
            finally:
                # Also on cancellation: entries not known to be written stay pending.
                self._in_flight = 0
                if written:
                    del self._batches[: len(batches)]
                else:
                    self._merge(batch)
                self._pending_gauge.set(len(self._pending))
            if written and (self._failing or self._unreachable):
                log.info(
                    "last-used times written again after %d failed attempt(s)",
                    self._failing + self._unreachable,
                )
                self._failing = self._unreachable = 0
            if batch:
                (self._flushed_ok if written else self._flushed_error).inc()
            if batches:
                (self._usage_ok if written else self._usage_error).inc()
                if written and self._applied is not None:
                    self._applied(batches, totals)
            return written

    def _bug(self, count: int) -> None:
        """Say so once with the traceback (called from an ``except``), then one line a try."""
        self._failing += 1
        if self._failing == 1:
            log.exception(
                "writing %d last-used time(s) failed: not an outage but a bug or a schema"
                " mismatch; retrying less and less often",
                count,
            )
        else:
            log.error(
                "writing %d last-used time(s) still fails (%d attempts); see the first error",
                count,
                self._failing,
            )

    def delay(self, interval: float) -> float:
        """Seconds until the next flush: ``interval``, or more while a bug fails them."""
        if not self._failing:
            return interval
        return min(interval * 2.0**self._failing, max(BUG_BACKOFF_MAX, interval))

    def _merge(self, batch: dict[str, float]) -> None:
        pending = self._pending
        for token_id, at in batch.items():
            newer = pending.get(token_id)
            if newer is None or newer < at:
                pending[token_id] = at

    async def run(self, interval: float) -> None:
        """Flush every ``interval`` seconds (see :meth:`delay`) until cancelled."""
        while True:
            await asyncio.sleep(self.delay(interval))
            await self.flush()

    async def close(self, *, within: float = SHUTDOWN_DEADLINE) -> None:
        """Final flush at shutdown, retried while Postgres hiccups, for at most ``within`` s."""
        try:
            async with asyncio.timeout(within):
                while not await self.flush():
                    if self._failing:
                        break  # a bug: retrying at once would only fail the same way
                    await asyncio.sleep(SHUTDOWN_RETRY_DELAY)
                else:
                    return
        except TimeoutError:
            pass
        log.error(
            "%d last-used time(s) and %d usage batch(es) could not be written at shutdown",
            self.pending,
            self.usage_pending,
        )


@contextlib.asynccontextmanager
async def flushing(last_used: LastUsed, interval: float) -> AsyncIterator[LastUsed]:
    """Flush every ``interval`` seconds while inside; once more, with retries, on the way out."""
    task = asyncio.create_task(last_used.run(interval), name="last-used-flusher")
    try:
        yield last_used
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await last_used.close()
