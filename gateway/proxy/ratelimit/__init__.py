"""Per-token rate limits: one interface, swappable backends (as Kong's policies are).

``local`` counts per process; ``redis`` shares one bucket per token between every
instance. Both decide with :mod:`gateway.core.gcra`. The redis backend lives in its own module
so that the optional ``redis`` package is imported only when it is chosen.
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

from gateway.core.config import ConfigError, Settings
from gateway.core.gcra import Decision
from gateway.core.rates import Rate

from ..metrics import GatewayMetrics
from .local import LocalLimiter, QuotaHit, Shared

__all__ = [
    "Decision",
    "LocalLimiter",
    "QuotaHit",
    "RateLimiter",
    "Shared",
    "create_limiter",
    "require_backend",
]


class RateLimiter(Protocol):
    async def start(self) -> None: ...

    async def hit(self, key: str, rate: Rate) -> Decision: ...

    async def hit_quota(self, key: str, rate: Rate, quota: QuotaHit) -> Shared | None: ...

    async def close(self) -> None: ...


def require_backend(settings: Settings) -> None:
    """Raise ConfigError if ``RATE_LIMIT_BACKEND`` cannot be used here (a missing extra).

    ``create_limiter`` checks it too; a command may call this before starting workers.
    """
    if settings.rate_limit_backend == "redis" and importlib.util.find_spec("hiredis") is None:
        raise ConfigError(
            "RATE_LIMIT_BACKEND", "redis needs the hiredis package: pip install 'tollgate[redis]'"
        )


def create_limiter(settings: Settings, metrics: GatewayMetrics | None = None) -> RateLimiter:
    """The backend chosen by ``RATE_LIMIT_BACKEND``."""
    require_backend(settings)
    if settings.rate_limit_backend == "local":
        return LocalLimiter()
    # Imported here: hiredis is an optional extra ("tollgate[redis]").
    from .redis import RedisLimiter

    return RedisLimiter.from_url(settings.redis_url, metrics=metrics)
