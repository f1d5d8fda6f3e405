"""The admin app: ``create_app(settings)`` builds it, with no I/O in the factory.

The database pool opens in ``cleanup_ctx`` (and closes after the last request), so the
app can run under ``admin serve`` or inside another event loop (``gateway up``) with
``web.AppRunner``. ``settings.database_url`` must already be resolved
(``gateway.db.database_url``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from gateway.core import db
from gateway.core.config import ConfigError, Settings
from gateway.core.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TollgateError,
    UnsupportedMediaType,
)
from gateway.core.store import Store
from gateway.core.store_audit import AuditLog
from gateway.core.store_keys import KeyStore
from gateway.core.store_usage import UsageStore
from gateway.core.store_webhooks import WebhookStore
from gateway.core.tokens import Hasher

from . import audit, background, console, openapi, routes
from .auth import admin_auth
from .authz import authorization
from .context import request_ids
from .credentials import Credentials
from .delivery import Deliverer, DeliveryOptions
from .jsonbody import MAX_BODY
from .keys import (
    ADMIN_METRICS,
    AUDIT,
    CREDENTIALS,
    DELIVERER,
    DELIVERY,
    GUARD,
    HASHER,
    KEYS,
    LEAK_LIMITER,
    LEAKS,
    OPENAPI,
    POOL,
    SCANNING_KEYS,
    SETTINGS,
    STORE,
    USAGE,
    WEBHOOKS,
)
from .leaks import AddressLimiter, LeakReports
from .metrics import AdminMetrics, metrics_middleware
from .notices import NoticeScheduler
from .scanning import KeyFile
from .ssrf import Guard

log = logging.getLogger(__name__)

POOL_SIZE = 5
DEFAULT_DELIVERY = DeliveryOptions()


def create_app(
    settings: Settings, *, delivery: DeliveryOptions = DEFAULT_DELIVERY
) -> web.Application:
    """``delivery``: how webhooks are delivered in the background (tests shorten it)."""
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL", "must be resolved before the admin app is built")
    metrics = AdminMetrics(CollectorRegistry())
    app = web.Application(
        # Metrics outermost so they count the final status, then the request id (on
        # every answer, errors too), errors rendered next, and only then the bearer check.
        middlewares=[
            metrics_middleware(metrics),
            request_ids(),
            error_middleware,
            admin_auth(settings.admin_tokens(), routes.public_paths(), _credentials),
            authorization,
            database_unavailable,
        ],
        client_max_size=MAX_BODY,
    )
    app[SETTINGS] = settings
    app[ADMIN_METRICS] = metrics
    app[HASHER] = Hasher.from_settings(settings)
    app[OPENAPI] = openapi.document()
    app[DELIVERY] = delivery
    app[GUARD] = Guard(allow_private=settings.webhook_allow_private)
    app[LEAK_LIMITER] = AddressLimiter(settings.leak_report_rate)
    app.cleanup_ctx.append(_scanning_keys)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_outbox)
    app.on_response_prepare.append(console.security_headers)
    routes.add_routes(app.router)
    console.add_routes(app)
    return app


def error_response(err: TollgateError) -> web.Response:
    return web.Response(
        status=err.status, body=err.body(), content_type="application/json", headers=err.headers
    )


_HTTP_CODES = {
    error.status: error.code
    for error in (BadRequest, NotFound, MethodNotAllowed, PayloadTooLarge, UnsupportedMediaType)
}


def from_http_exception(exc: web.HTTPException) -> TollgateError:
    """aiohttp's own errors (no route, wrong method, body too large) in our shape."""
    err = TollgateError(
        exc.reason.lower() if exc.status != 413 else PayloadTooLarge.message,
        code=_HTTP_CODES.get(exc.status, "http_error"),
        status=exc.status,
    )
    if exc.status == 405 and "Allow" in exc.headers:
        err.headers["Allow"] = exc.headers["Allow"]
    return err


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as a JSON error, never a traceback."""
    try:
        return await handler(request)
    except TollgateError as err:
        return error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(from_http_exception(exc))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(TollgateError())


@web.middleware
async def database_unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except db.UNREACHABLE as err:  # a 503 to retry, not a 500
        log.warning("database unavailable on %s %s: %r", request.method, request.path, err)
        raise ServiceUnavailable("the database is not answering; retry later") from None


async def _database(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS].database_url
    assert url is not None  # checked by create_app
    pool = await db.create_pool(url, min_size=1, max_size=POOL_SIZE)
    app[POOL] = pool
    app[STORE] = Store(pool)
    app[AUDIT] = AuditLog(pool)
    app[KEYS] = KeyStore(pool)
    app[CREDENTIALS] = Credentials(app[KEYS], app[HASHER], app[SETTINGS].token_prefix)
    app[WEBHOOKS] = WebhookStore(pool)
    app[USAGE] = UsageStore(pool)
    app[LEAKS] = LeakReports(
        app[WEBHOOKS], app[HASHER], app[SETTINGS].token_prefix, app[ADMIN_METRICS]
    )
    try:
        yield
    finally:
        await pool.close()


def _credentials(app: web.Application) -> Credentials:
    return app[CREDENTIALS]


async def _scanning_keys(app: web.Application) -> AsyncIterator[None]:
    """GitHub's keys, read at start: a missing or bad file stops the start (ConfigError)."""
    path = app[SETTINGS].github_scanning_keys_file
    if path is not None:
        app[SCANNING_KEYS] = KeyFile(path)
    yield


async def _outbox(app: web.Application) -> AsyncIterator[None]:
    """Webhook delivery and expiry notices, for as long as the app runs."""
    options = app[DELIVERY]
    if not options.run:
        yield
        return
    webhooks = app[WEBHOOKS]
    deliverer = Deliverer(webhooks, app[GUARD], app[ADMIN_METRICS], options)
    notices = NoticeScheduler(
        webhooks,
        interval=options.notice_interval,
        keep_days=options.keep_days,
        emitted=deliverer.wake,
    )
    days = app[SETTINGS].audit_retention_days
    retention = audit.retention(app[AUDIT], days, options.retention_interval)
    async with (
        deliverer.running(),
        notices.running(),
        background.running(retention, "audit retention"),
    ):
        app[DELIVERER] = deliverer
        yield
