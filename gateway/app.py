"""The gateway application: ``create_app(settings)`` and the request path.

One handler does the whole path (request id -> Bearer auth -> path check -> rate
limit -> last used -> proxy -> metrics and access log) instead of a stack of
middlewares: each middleware layer costs a coroutine and a closure per request,
and a cached request must cost little more than the upstream call itself.

Resources live in ``cleanup_ctx``, in this order (cleanup runs in reverse):
Postgres pool, upstream client, argon2 thread pool and authenticator,
LISTEN connection, rate limiter, last-used flusher, and the request path itself.
Nothing does I/O at import time or in the factory.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from prometheus_client import CollectorRegistry

from . import appkeys, db
from .accesslog import AccessLog
from .auth import Authenticator, ExpiredToken, bearer_token
from .config import ConfigError, Settings
from .errors import (
    BadGateway,
    BadRequest,
    GatewayTimeout,
    InvalidToken,
    ServiceUnavailable,
    TollgateError,
    TooManyRequests,
    Unauthorized,
    error_body,
)
from .lastused import LastUsed, last_used_ctx
from .listener import Listener
from .metrics import GatewayMetrics
from .proxy import Proxy
from .ratelimit import Decision, LocalLimiter, RateLimiter, limiter_ctx
from .rates import Rate
from .store import Store
from .tokens import Hasher
from .upstream import UpstreamClient

log = logging.getLogger(__name__)

# argon2 threads: CFFI releases the GIL, so threads verify in parallel, but at most
# half the cores, so a burst of first uses cannot starve the event loop's core.
VERIFY_THREADS = max(1, min(4, (os.cpu_count() or 2) // 2))
# (Lowering the argon2 threads' priority (nice 10) was measured here and made cached
# requests' p99 worse during first uses, 6-51 ms against 4-5 ms: a descheduled
# low-priority thread can hold the GIL the event loop waits for. SCHED_IDLE was worse
# still: cached p99 rise during 20 first uses/s +3.35 ms against +0.65 at -c1, and at
# -c10 the starved verifications queued past the shedding limit, 96 of 213 first uses
# got 503, p99 3 s.)
# Verifications waiting or running per thread before new ones are shed (503): at
# ~25 ms each, a longer queue only adds latency for everyone in it.
VERIFY_QUEUE_PER_THREAD = 16
POOL_SIZE = 4  # the request path asks Postgres only on cache misses

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

# SPEC §6 outcome of each refusal; ExpiredToken before InvalidToken before Unauthorized.
_OUTCOMES: tuple[tuple[type[TollgateError], str], ...] = (
    (ExpiredToken, "expired_token"),
    (InvalidToken, "invalid_token"),
    (Unauthorized, "unauthenticated"),
    (BadRequest, "invalid_request"),
    (TooManyRequests, "rate_limited"),
    (BadGateway, "upstream_error"),
    (GatewayTimeout, "upstream_timeout"),
    (ServiceUnavailable, "unavailable"),
)


def outcome_of(err: TollgateError) -> str:
    for kind, outcome in _OUTCOMES:
        if isinstance(err, kind):
            return outcome
    return "unavailable"  # an internal error: the request could not be served


_BODIES: dict[tuple[str, str], bytes] = {}


def refusal(err: TollgateError, request_id: str) -> web.Response:
    """The JSON error answer (errors.py's shape) for ``err``.

    Refusals are the cheap answers a flood of bad tokens gets: the few distinct
    bodies are encoded once, not once per request.
    """
    key = (err.code, err.message)
    body = _BODIES.get(key)
    if body is None:
        body = error_body(*key)
        if len(_BODIES) < 64:  # messages are fixed per case; stay bounded regardless
            _BODIES[key] = body
    headers = {**err.headers, "Content-Type": "application/json", "X-Request-Id": request_id}
    return web.Response(status=err.status, body=body, headers=headers)


_TOO_MANY_BODY = error_body(TooManyRequests.code, TooManyRequests.message)


def too_many(decision: Decision, request_id: str) -> web.Response:
    """The 429 answer: ``refusal(TooManyRequests(headers=decision.headers()), ...)``
    without raising, matching and copying an exception (a flood of over-limit
    requests is the case where refusals must stay cheap)."""
    headers = decision.headers()
    headers["Content-Type"] = "application/json"
    headers["X-Request-Id"] = request_id
    return web.Response(status=429, body=_TOO_MANY_BODY, headers=headers)


class RequestPath:
    """The handler of every method and path; its collaborators are bound at startup."""

    auth: Authenticator
    proxy: Proxy
    limiter: RateLimiter
    last_used: LastUsed

    def __init__(self, metrics: GatewayMetrics, access_log: AccessLog) -> None:
        self._count = metrics.outcome_count
        self._duration = metrics.outcome_duration
        self._upstream_duration = metrics.upstream_duration
        self._access_log = access_log
        self._hit_now: Callable[[str, Rate], Decision] | None = None
        # Request ids: a random per-process prefix and a counter, unique without a
        # syscall per request.
        self._id_prefix = secrets.token_hex(6)
        self._ids = itertools.count(1)

    def bind(self, app: web.Application) -> None:
        self.auth = app[appkeys.AUTH]
        self.proxy = app[appkeys.PROXY]
        self.limiter = app[appkeys.LIMITER]
        self.last_used = app[appkeys.LAST_USED]
        # The local limiter decides synchronously: no coroutine per request.
        self._hit_now = self.limiter.hit_now if isinstance(self.limiter, LocalLimiter) else None

    def request_id(self, request: web.Request) -> str:
        given = request.headers.get("X-Request-Id")
        if given is not None and _REQUEST_ID.fullmatch(given):
            return given
        return f"{self._id_prefix}{next(self._ids):x}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = self.request_id(request)
        state = None
        upstream_seconds: float | None = None
        try:
            state = await self.auth.authenticate(bearer_token(request.headers))
            self.last_used.record(state.token_id)
            url = self.proxy.target(request)
            hit_now = self._hit_now
            if hit_now is not None:
                decision = hit_now(state.token_id, state.rate)
            else:
                decision = await self.limiter.hit(state.token_id, state.rate)
            if decision.allowed:
                extra = decision.headers()
                extra["X-Request-Id"] = request_id
                identity = {
                    "X-Project-Id": state.project_id,
                    "X-Token-Id": state.token_id,
                    "X-Request-Id": request_id,
                }
                response, upstream_seconds, outcome = await self.proxy.forward(
                    request, url, identity, extra
                )
                self._upstream_duration.observe(upstream_seconds)
            else:
                outcome = "rate_limited"
                response = too_many(decision, request_id)
        except TollgateError as err:
            outcome = outcome_of(err)
            response = refusal(err, request_id)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            outcome = "unavailable"
            response = refusal(TollgateError(), request_id)
        duration = time.perf_counter() - started
        self._count[outcome].inc()
        self._duration[outcome].observe(duration)
        self._access_log.log(
            request_id,
            request.method,
            request.rel_url.raw_path,
            response.status,
            outcome,
            duration,
            upstream_seconds,
            None if state is None else state.token_id,
            None if state is None else state.project_id,
        )
        return response


# ---------------------------------------------------------------- lifecycle


async def _pool_ctx(app: web.Application) -> AsyncIterator[None]:
    url = app[appkeys.SETTINGS].database_url
    if url is None:  # create_app's caller resolves the embedded server's URL
        raise ConfigError("DATABASE_URL", "is not resolved (call gateway.db.database_url first)")
    pool = await db.create_pool(url, min_size=1, max_size=POOL_SIZE)
    app[appkeys.POOL] = pool
    app[appkeys.STORE] = Store(pool)
    try:
        yield
    finally:
        await pool.close()


async def _client_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    url = settings.require_upstream()
    # The timeout bounds the connect, the wait for the answer's head and every wait
    # for body bytes.
    client = UpstreamClient(url, timeout=settings.upstream_timeout)
    app[appkeys.PROXY] = Proxy(client, url)
    try:
        yield
    finally:
        await client.close()


def _auth_ctx(
    hasher: Hasher | None, clock: Callable[[], float]
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[appkeys.SETTINGS]
        executor = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="argon2")
        app[appkeys.AUTH] = Authenticator(
            app[appkeys.STORE],
            hasher or Hasher.from_settings(settings),
            executor,
            app[appkeys.METRICS],
            prefix=settings.token_prefix,
            ttl=settings.token_cache_ttl,
            default_rate=settings.rate_limit,
            max_pending=VERIFY_THREADS * VERIFY_QUEUE_PER_THREAD,
            clock=clock,
        )
        try:
            yield
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    return ctx


async def _listener_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    assert settings.database_url is not None  # checked by _pool_ctx
    listener = Listener(settings.database_url, app[appkeys.AUTH], app[appkeys.METRICS])
    app[appkeys.LISTENER] = listener
    await listener.start()
    try:
        yield
    finally:
        await listener.close()


def _request_path_ctx(
    path: RequestPath, access_log: AccessLog
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        path.bind(app)
        try:
            yield
        finally:
            access_log.flush()

    return ctx


def create_app(
    settings: Settings,
    *,
    metrics: GatewayMetrics | None = None,
    hasher: Hasher | None = None,
    access_log: AccessLog | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    """The proxy app. ``settings.database_url`` must be resolved (no embedded start here).

    ``hasher`` (argon2 parameters for new hashes; verification reads them from the
    hash), ``access_log`` and ``clock`` (monotonic, for cache lifetimes) are there
    for tests and embedding.
    """
    settings.require_upstream()
    # aiohttp's own access log off whatever runner serves the app: ours replaces it
    # (one line per request, a fraction of the cost of aiohttp's formatter).
    app = web.Application(handler_args={"access_log": None})
    app[appkeys.SETTINGS] = settings
    metrics = metrics or GatewayMetrics(CollectorRegistry())
    app[appkeys.METRICS] = metrics
    access_log = access_log or AccessLog(settings.log_format)
    path = RequestPath(metrics, access_log)
    app.cleanup_ctx.extend(
        [
            _pool_ctx,
            _client_ctx,
            _auth_ctx(hasher, clock),
            _listener_ctx,
            limiter_ctx,  # the rate limiter: RATE_LIMIT_BACKEND chooses local or redis
            last_used_ctx,  # after the pool: its final flush runs before the pool closes
            _request_path_ctx(path, access_log),
        ]
    )
    app.router.add_route("*", "/{path:.*}", path.handle)
    return app


def is_ready(app: web.Application) -> bool:
    """Accepting requests with Postgres and the LISTEN connection up."""
    listener = app.get(appkeys.LISTENER)
    return listener is not None and listener.connected
