"""GCRA (generic cell rate algorithm): the arithmetic of every rate limit.

One timestamp per key, the theoretical arrival time (TAT): each admitted request
moves it one emission interval ``period / limit`` forward, and a request is admitted
while the TAT stays within ``period`` of now, which allows a burst of ``limit``.

Time is counted in whole microseconds, and the TAT carries the fraction of a
microsecond exactly (``frac / limit``): with floats, ``7/minute`` at an epoch-sized
clock drifts enough to admit a request too many or too few at the boundary.

The ``local`` and ``redis`` backends both decide with these functions (the redis
one through its Lua copy of :func:`gcra`).
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.core.rates import Rate

US = 1_000_000  # microseconds per second


class Decision(NamedTuple):
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


class Tat(NamedTuple):
    """A theoretical arrival time: ``us + frac / limit`` microseconds (``0 <= frac < limit``)."""

    us: int
    frac: int = 0

    def after(self, now: int) -> bool:
        return self.us > now or (self.us == now and self.frac > 0)


def bucket(key: str, rate: Rate) -> str:
    """Where ``key``'s state under ``rate`` is kept.

    The rate is part of it, so a changed project limit starts a new, full quota at
    once (the old bucket simply expires), rather than carrying a debt counted in the
    old limit's intervals.
    """
    return f"{key}:{rate.limit}/{rate.period}"


def gcra(tat: Tat | None, now: int, rate: Rate) -> tuple[Decision, Tat]:
    """One GCRA step at ``now`` (µs): the decision and the TAT to keep.

    ``redis.SCRIPT`` is the same step in Lua; keep the two in step.
    """
    period = rate.period * US
    # A TAT in the past carries no debt. A frac out of range (a damaged value) is clamped.
    start = Tat(tat.us, min(tat.frac, rate.limit - 1)) if tat and tat.after(now) else Tat(now)
    new = _next(start, rate)
    ahead = new.us - now
    if ahead < period or (ahead == period and new.frac == 0):
        return decide(True, now, new, rate), new
    return decide(False, now, start, rate), tat or start  # a refusal changes nothing


def _next(tat: Tat, rate: Rate) -> Tat:
    """``tat`` moved one emission interval (``step + rest / limit`` µs) forward."""
    step, rest = divmod(rate.period * US, rate.limit)
    carry, frac = divmod(tat.frac + rest, rate.limit)
    return Tat(tat.us + step + carry, frac)


def refused_until(tat: Tat, rate: Rate) -> int:
    """The first µs at which a request may be admitted again, after a refusal that kept
    ``tat``: before it every request is refused, whatever other instances do meanwhile
    (admissions only move the TAT later, refusals leave it)."""
    return _next(tat, rate).us - rate.period * US


def decide(allowed: bool, now: int, tat: Tat, rate: Rate) -> Decision:
    """The headers' integers for a TAT kept after a decision at ``now`` (exact arithmetic)."""
    interval = rate.period * US  # all in units of 1/limit µs: interval * limit = period
    ahead = max(0, (tat.us - now) * rate.limit + tat.frac)
    window = interval * rate.limit
    second = US * rate.limit
    reset = -(-ahead // second)
    if allowed:
        return Decision(True, rate.limit, max(0, (window - ahead) // interval), reset, 0)
    retry_after = max(1, -(-(ahead + interval - window) // second))
    return Decision(False, rate.limit, 0, reset, retry_after)
