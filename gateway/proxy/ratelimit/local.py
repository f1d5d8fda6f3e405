"""The ``local`` rate-limit backend: GCRA buckets in this process's memory."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from gateway.core.gcra import US, Decision, Tat, bucket, gcra
from gateway.core.rates import Rate

DEFAULT_MAX_KEYS = 100_000


class QuotaHit(NamedTuple):
    """A project's quota for one period, as a shared backend counts it."""

    key: str  # "<project id>:<period key>"
    limit: int
    ttl_ms: int  # the counter's lifetime: past the period's end


class Shared(NamedTuple):
    """A shared backend's answer for the rate limit and the quota together."""

    decision: Decision  # the rate limit's (its bucket untouched when ``refused``)
    used: int  # the period's units after this request
    refused: bool  # the quota was used up


class LocalLimiter:
    """In-process GCRA with bounded memory.

    Entries are kept in least-recently-hit order, and each hit drops up to two
    expired ones from the old end: every key hit before an idle one expires within
    the longest period (an hour) after the idle one's last hit, so while requests
    come it is gone by then. ``max_keys`` caps memory regardless, forgetting the least
    recently hit key (which then gets a fresh burst).
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_keys: int = DEFAULT_MAX_KEYS
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._tats: dict[str, Tat] = {}

    def __len__(self) -> int:
        return len(self._tats)

    async def start(self) -> None:
        """Nothing to connect to."""

    async def hit(self, key: str, rate: Rate) -> Decision:
        return self.hit_now(key, rate)

    async def hit_quota(self, key: str, rate: Rate, quota: QuotaHit) -> Shared | None:
        """None: this backend shares nothing; the caller decides the quota itself."""
        return None

    def hit_now(self, key: str, rate: Rate) -> Decision:
        now = round(self._clock() * US)
        key = bucket(key, rate)
        decision, tat = gcra(self._tats.pop(key, None), now, rate)
        self._tats[key] = tat  # re-inserted: now the most recently hit
        self._drop_old(now)
        return decision

    def _drop_old(self, now: int) -> None:
        tats = self._tats
        while len(tats) > self._max_keys:
            del tats[next(iter(tats))]
        for _ in range(2):
            oldest = next(iter(tats))
            if tats[oldest].after(now):
                break  # the key just hit is always ahead of now, so tats never empties
            del tats[oldest]

    async def close(self) -> None:
        self._tats.clear()
