"""The admin app's typed keys."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from gateway.core.config import Settings
from gateway.core.store import Store
from gateway.core.store_audit import AuditLog
from gateway.core.store_keys import KeyStore
from gateway.core.store_usage import UsageStore
from gateway.core.store_webhooks import WebhookStore
from gateway.core.tokens import Hasher

from .credentials import Credentials
from .delivery import Deliverer, DeliveryOptions
from .leaks import AddressLimiter, LeakReports
from .metrics import AdminMetrics
from .scanning import KeyFile
from .ssrf import Guard

SETTINGS = web.AppKey("admin_settings", Settings)
POOL = web.AppKey("admin_pool", asyncpg.Pool)
STORE = web.AppKey("admin_store", Store)
AUDIT = web.AppKey("admin_audit", AuditLog)
KEYS = web.AppKey("admin_keys", KeyStore)
CREDENTIALS = web.AppKey("admin_credentials", Credentials)
HASHER = web.AppKey("admin_hasher", Hasher)
ADMIN_METRICS = web.AppKey("admin_metrics", AdminMetrics)
OPENAPI = web.AppKey("admin_openapi", dict[str, Any])
WEBHOOKS = web.AppKey("admin_webhooks", WebhookStore)
USAGE = web.AppKey("admin_usage", UsageStore)
GUARD = web.AppKey("admin_webhook_guard", Guard)
DELIVERY = web.AppKey("admin_delivery_options", DeliveryOptions)
DELIVERER = web.AppKey("admin_deliverer", Deliverer)  # absent when delivery does not run
LEAKS = web.AppKey("admin_leaks", LeakReports)
LEAK_LIMITER = web.AppKey("admin_leak_limiter", AddressLimiter)
SCANNING_KEYS = web.AppKey("admin_scanning_keys", KeyFile)  # absent when not configured
