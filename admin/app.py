"""The admin app: ``create_app(settings)`` builds it, with no I/O in the factory.

The database pool opens in ``cleanup_ctx`` (and closes after the last request), so the
app can run under ``admin serve`` or inside another event loop (``gateway up``) with
``web.AppRunner``. ``settings.database_url`` must already be resolved
(``gateway.db.database_url``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from gateway import db
from gateway.appkeys import POOL, SETTINGS, STORE
from gateway.config import ConfigError, Settings
from gateway.errors import ServiceUnavailable, error_middleware
from gateway.store import Store
from gateway.tokens import Hasher

from . import api, console, openapi
from .auth import admin_auth
from .keys import ADMIN_METRICS, HASHER, OPENAPI
from .metrics import AdminMetrics, metrics_middleware
from .validation import MAX_BODY

log = logging.getLogger(__name__)

POOL_SIZE = 5

# The database went away (network, restart, overload): a 503 to retry, not a 500.
_UNAVAILABLE = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


def create_app(settings: Settings) -> web.Application:
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL", "must be resolved before the admin app is built")
    metrics = AdminMetrics(CollectorRegistry())
    app = web.Application(
        # Metrics outermost so they count the final status, errors rendered next,
        # and only then the admin bearer check.
        middlewares=[
            metrics_middleware(metrics),
            error_middleware,
            admin_auth(settings.require_admin_token()),
            database_unavailable,
        ],
        client_max_size=MAX_BODY,
    )
    app[SETTINGS] = settings
    app[ADMIN_METRICS] = metrics
    app[HASHER] = Hasher.from_settings(settings)
    app[OPENAPI] = openapi.document()
    app.cleanup_ctx.append(_database)
    app.on_response_prepare.append(console.security_headers)
    api.add_routes(app.router)
    console.add_routes(app)
    return app


@web.middleware
async def database_unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _UNAVAILABLE as err:
        log.warning("database unavailable on %s %s: %r", request.method, request.path, err)
        raise ServiceUnavailable("the database is not answering; retry later") from None


async def _database(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS].database_url
    assert url is not None  # checked by create_app
    pool = await db.create_pool(url, min_size=1, max_size=POOL_SIZE)
    app[POOL] = pool
    app[STORE] = Store(pool)
    try:
        yield
    finally:
        await pool.close()
