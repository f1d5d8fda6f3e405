"""Per-token rate limits with GCRA (generic cell rate algorithm).

One timestamp per key, the theoretical arrival time (TAT): each admitted request
moves it one emission interval ``period / limit`` forward, and a request is admitted
while the TAT stays within ``period`` of now, which allows a burst of ``limit``.

Time is counted in whole microseconds, and the TAT carries the fraction of a
microsecond exactly (``frac / limit``): with floats, ``7/minute`` at an epoch-sized
clock drifts enough to admit a request too many or too few at the boundary.

Backends share one interface (as Kong's policies do): ``hit(key, rate)``. The
``local`` one is here; the ``redis`` one lives in ``redislimit.py`` so that the
optional ``redis`` package is imported only when it is chosen.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple, Protocol

from aiohttp import web

from . import appkeys
from .config import ConfigError, Settings
from .metrics import GatewayMetrics
from .rates import Rate

log = logging.getLogger(__name__)

US = 1_000_000  # microseconds per second
DEFAULT_MAX_KEYS = 100_000


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


class RateLimiter(Protocol):
    async def start(self) -> None: ...

    async def hit(self, key: str, rate: Rate) -> Decision: ...

    async def close(self) -> None: ...


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

    ``redislimit.SCRIPT`` is the same step in Lua; keep the two in step.
    """
    period = rate.period * US
    # A TAT in the past carries no debt. A frac out of range (a damaged value) is clamped.
    start = Tat(tat.us, min(tat.frac, rate.limit - 1)) if tat and tat.after(now) else Tat(now)
    step, rest = divmod(period, rate.limit)  # interval = step + rest / limit
    carry, frac = divmod(start.frac + rest, rate.limit)
    new = Tat(start.us + step + carry, frac)
    ahead = new.us - now
    if ahead < period or (ahead == period and new.frac == 0):
        return decide(True, now, new, rate), new
    return decide(False, now, start, rate), tat or start  # a refusal changes nothing


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


def require_backend(settings: Settings) -> None:
    """Raise ConfigError if ``RATE_LIMIT_BACKEND`` cannot be used here (a missing extra).

    ``create_limiter`` checks it too; a command may call this before starting workers.
    """
    if settings.rate_limit_backend == "redis" and importlib.util.find_spec("redis") is None:
        raise ConfigError(
            "RATE_LIMIT_BACKEND", "redis needs the redis package: pip install 'tollgate[redis]'"
        )


def create_limiter(settings: Settings, metrics: GatewayMetrics | None = None) -> RateLimiter:
    """The backend chosen by ``RATE_LIMIT_BACKEND``."""
    require_backend(settings)
    if settings.rate_limit_backend == "local":
        return LocalLimiter()
    from .redislimit import RedisLimiter

    return RedisLimiter.from_url(settings.redis_url, metrics=metrics)


async def limiter_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the app's limiter (``appkeys.LIMITER``), closed at shutdown."""
    limiter = create_limiter(app[appkeys.SETTINGS], app.get(appkeys.METRICS))
    await limiter.start()
    app[appkeys.LIMITER] = limiter
    yield
    await limiter.close()
