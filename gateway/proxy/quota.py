"""Project quotas on the request path (SPEC §11): N requests per UTC day or month.

Every admitted request of a project with a quota takes one unit of the period it falls
in. :meth:`Quotas.admit` decides the rate limit and the quota together:

* ``redis`` backend: one script does both (:meth:`RedisLimiter.hit_quota`), atomically,
  so the project is never admitted more than N requests in a period, whatever the number
  of instances; one round trip, as the rate limit alone takes.
* ``local`` backend (and the redis one while Redis fails): the period's total as the last
  flush read it from Postgres (all instances), plus the units this process took since
  (not yet known to be written). Other instances' units arrive with each flush, so the
  overshoot is bounded by what all instances admit within one flush interval.

Either way each unit goes into the ledger (:meth:`Ledger.unit`), whose flush adds it to
``quota_usage`` and writes ``quota.warning`` / ``quota.exhausted`` when a batch crosses
80 % / 100 %. A refusal takes no unit and does not count towards the rate limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from gateway.core.gcra import Decision
from gateway.core.rates import Quota
from gateway.core.store_usage import Batch, Totals

from .caches import TokenState
from .ratelimit import LocalLimiter, QuotaHit, RateLimiter
from .usage import Ledger

# A period's counter in Redis outlives the period by this much (clock skew, late requests).
COUNTER_GRACE_MS = 3_600_000


class Granted(NamedTuple):
    """The quota's side of a decision: the ``Quota-*`` headers' values."""

    allowed: bool
    limit: int
    remaining: int  # left after this request; 0 on a refusal
    reset: int  # whole seconds until the period resets

    def headers(self) -> dict[str, str]:
        return {
            "Quota-Limit": str(self.limit),
            "Quota-Remaining": str(self.remaining),
            "Quota-Reset": str(self.reset),
        }


class Quotas:
    def __init__(
        self,
        limiter: RateLimiter,
        ledger: Ledger,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limiter = limiter
        self._hit_now = limiter.hit_now if isinstance(limiter, LocalLimiter) else None
        self._ledger = ledger
        self._clock = clock
        self._flushed: Totals = {}  # all instances' units, as the last flush read them
        self._own: dict[tuple[str, str], int] = {}  # units taken here, not known written
        self._periods: dict[str, tuple[int, str, int]] = {}  # unit -> (second, key, reset)

    def period(self, quota: Quota) -> tuple[str, int]:
        """The current period's key and seconds to reset (computed once a second)."""
        now = self._clock()
        second = int(now)
        cached = self._periods.get(quota.unit)
        if cached is None or cached[0] != second:
            key, reset = quota.period(now)
            cached = self._periods[quota.unit] = (second, key, reset)
        return cached[1], cached[2]

    def used(self, project_id: str, key: str) -> int:
        """The period's units as this process knows them."""
        period = (project_id, key)
        return self._flushed.get(period, 0) + self._own.get(period, 0)

    async def admit(self, state: TokenState, quota: Quota) -> tuple[Decision | None, Granted]:
        """The rate limit's decision (None when the quota refused first) and the quota's;
        a unit is taken only when both allow."""
        key, reset = self.period(quota)
        project_id = state.project_id
        hit = QuotaHit(f"{project_id}:{key}", quota.limit, reset * 1000 + COUNTER_GRACE_MS)
        shared = await self._limiter.hit_quota(state.token_id, state.rate, hit)
        if shared is not None:
            if shared.refused:
                return None, Granted(False, quota.limit, 0, reset)
            if shared.decision.allowed:
                self._take(project_id, key, quota.limit)
            remaining = max(0, quota.limit - shared.used)
            return shared.decision, Granted(shared.decision.allowed, quota.limit, remaining, reset)
        used = self.used(project_id, key)
        if used >= quota.limit:
            return None, Granted(False, quota.limit, 0, reset)
        if self._hit_now is not None:
            decision = self._hit_now(state.token_id, state.rate)
        else:
            decision = await self._limiter.hit(state.token_id, state.rate)
        if not decision.allowed:
            return decision, Granted(True, quota.limit, quota.limit - used, reset)
        self._take(project_id, key, quota.limit)
        return decision, Granted(True, quota.limit, quota.limit - used - 1, reset)

    def _take(self, project_id: str, key: str, limit: int) -> None:
        period = (project_id, key)
        self._own[period] = self._own.get(period, 0) + 1
        self._ledger.unit(project_id, key, limit)

    def applied(self, batches: list[Batch], totals: Totals) -> None:
        """A flush wrote ``batches``: their units are in ``totals`` (all instances) now."""
        own = self._own
        for batch in batches:
            for period, (units, _limit) in batch.units.items():
                left = own.get(period, 0) - units
                if left > 0:
                    own[period] = left
                else:
                    own.pop(period, None)
        for period, used in totals.items():
            self._flushed[period] = max(used, self._flushed.get(period, 0))
        # Periods gone by are forgotten (their keys name a day or month that is over).
        current = {key for _second, key, _reset in self._periods.values()}
        for period in [p for p in self._flushed if p[1] not in current]:
            del self._flushed[period]
