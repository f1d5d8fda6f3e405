"""Per-token rate limits with GCRA (generic cell rate algorithm).

One timestamp per key, the theoretical arrival time (TAT): each request moves it
one emission interval ``period / limit`` forward, and a request is admitted while
the TAT stays within ``period`` of now, which allows a burst of ``limit``.

Backends share one interface (as Kong's policies do): ``hit(key, rate)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .rates import Rate


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # whole seconds until the full quota is back
    retry_after: int  # whole seconds until one request is admitted again (0 when allowed)

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` headers, plus ``Retry-After`` on a refusal."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter(Protocol):
    async def hit(self, key: str, rate: Rate) -> Decision: ...

    async def close(self) -> None: ...


def gcra(tat: float, now: float, rate: Rate) -> tuple[Decision, float]:
    """One GCRA step: the decision and the new TAT (unchanged when refused)."""
    interval = rate.period / rate.limit
    start = max(tat, now)
    new_tat = start + interval
    if new_tat - now > rate.period + 1e-9:
        retry = new_tat - now - rate.period
        decision = Decision(False, rate.limit, 0, math.ceil(start - now), math.ceil(retry))
        return decision, tat
    remaining = int((rate.period - (new_tat - now)) / interval + 1e-9)
    return Decision(True, rate.limit, remaining, math.ceil(new_tat - now), 0), new_tat


class LocalLimiter:
    """In-process GCRA; keys whose quota is full again are dropped (bounded memory)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._next_sweep = 0.0

    async def hit(self, key: str, rate: Rate) -> Decision:
        return self.hit_now(key, rate)

    def hit_now(self, key: str, rate: Rate) -> Decision:
        now = self._clock()
        decision, tat = gcra(self._tats.get(key, now), now, rate)
        self._tats[key] = tat
        if now >= self._next_sweep:
            self._sweep(now)
        return decision

    def _sweep(self, now: float) -> None:
        # An entry whose TAT is in the past carries no state: a new key behaves the same.
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._next_sweep = now + 10.0

    async def close(self) -> None:
        self._tats.clear()
