"""Every typed application and request key, and nothing else (no import cycles).

Add keys here as features need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from .config import Settings
from .metrics import GatewayMetrics
from .store import Store

if TYPE_CHECKING:  # lastused.py reads these keys: importing it here would be a cycle
    from .auth import Authenticator
    from .lastused import LastUsed
    from .listener import Listener
    from .proxy import Proxy
    from .ratelimit import RateLimiter

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", GatewayMetrics)
LAST_USED: web.AppKey[LastUsed] = web.AppKey("last_used")
LIMITER: web.AppKey[RateLimiter] = web.AppKey("limiter")
AUTH: web.AppKey[Authenticator] = web.AppKey("auth")
PROXY: web.AppKey[Proxy] = web.AppKey("proxy")
LISTENER: web.AppKey[Listener] = web.AppKey("listener")
