"""The admin app's typed keys."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from gateway.core.config import Settings
from gateway.core.store import Store
from gateway.core.tokens import Hasher

from .metrics import AdminMetrics

SETTINGS = web.AppKey("admin_settings", Settings)
POOL = web.AppKey("admin_pool", asyncpg.Pool)
STORE = web.AppKey("admin_store", Store)
HASHER = web.AppKey("admin_hasher", Hasher)
ADMIN_METRICS = web.AppKey("admin_metrics", AdminMetrics)
OPENAPI = web.AppKey("admin_openapi", dict[str, Any])
