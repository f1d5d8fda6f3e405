"""The admin app's own typed keys (settings, pool and store reuse gateway.appkeys)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.tokens import Hasher

from .metrics import AdminMetrics

HASHER = web.AppKey("admin_hasher", Hasher)
ADMIN_METRICS = web.AppKey("admin_metrics", AdminMetrics)
OPENAPI = web.AppKey("admin_openapi", dict[str, Any])
