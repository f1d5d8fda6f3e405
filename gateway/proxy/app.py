"""The gateway's resources, built in order in ONE context, and the listener that serves them.

:func:`running` reads the TLS files (``gateway.core.tls``), then opens, in this order
(and closes in reverse): the Postgres pool, the upstream client, the argon2 thread pool
and the authenticator, the LISTEN connection, the rate limiter, the last-used flusher
and the access log; then it builds the complete :class:`~.handler.Handler` from them.
Nothing is bound late and nothing does I/O at import time. :func:`serve` puts a running
gateway on a port (Tollgate's own HTTP/1.1 server, :mod:`.front`)::

    async with running(settings) as gateway, serve(gateway, host, port) as server:
        ...
"""

from __future__ import annotations

import contextlib
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from gateway.core import db, tls
from gateway.core.config import ConfigError, Settings
from gateway.core.store import Store
from gateway.core.store_usage import UsageStore
from gateway.core.tokens import Hasher

from .accesslog import AccessLog
from .auth import Authenticator
from .clientaddr import ClientAddresses
from .forward import Forwarder
from .front import ClientLimits, Server
from .front import serve as serve_front
from .handler import Handler
from .lastused import LastUsed, flushing
from .listener import Listener
from .metrics import GatewayMetrics
from .quota import Quotas
from .ratelimit import RateLimiter, create_limiter
from .upstream import UpstreamClient
from .usage import Ledger

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


@dataclass(frozen=True, slots=True)
class Gateway:
    """A running gateway: its handler and the parts health checks and tests look at."""

    handler: Handler
    auth: Authenticator
    listener: Listener
    limiter: RateLimiter
    last_used: LastUsed
    metrics: GatewayMetrics
    limits: ClientLimits  # what its listener allows each client
    tls: ssl.SSLContext | None  # its listener's, when it speaks TLS

    def is_ready(self) -> bool:
        """Accepting requests with the LISTEN connection (hence Postgres) up."""
        return self.listener.connected


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    *,
    metrics: GatewayMetrics | None = None,
    hasher: Hasher | None = None,
    access_log: AccessLog | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Gateway]:
    """Everything the request path needs, open while inside.

    ``settings.database_url`` must be resolved (the embedded server is started by the
    command, not here). ``hasher`` (argon2 parameters for new hashes; verification
    reads them from the hash), ``access_log`` and ``clock`` (monotonic, for cache
    lifetimes) are there for tests and embedding.
    """
    url = settings.database_url
    if url is None:
        raise ConfigError("DATABASE_URL", "is not resolved (call gateway.core.db.database_url)")
    upstream = settings.require_upstream()
    # Files first: a bad certificate is a setting to fix, before any connection is made.
    listener_tls = tls.server_context(settings)
    upstream_tls = tls.upstream_context(settings)
    metrics = metrics or GatewayMetrics(CollectorRegistry())
    access_log = access_log or AccessLog(settings.log_format)
    async with contextlib.AsyncExitStack() as stack:
        pool = await db.create_pool(url, min_size=1, max_size=POOL_SIZE)
        stack.push_async_callback(pool.close)
        store = Store(pool)
        # The timeout bounds the connect, the wait for the answer's head and every wait
        # for body bytes.
        client = UpstreamClient(
            upstream, timeout=settings.upstream_timeout, ssl_context=upstream_tls
        )
        stack.push_async_callback(client.close)
        executor = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="argon2")
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        auth = Authenticator(
            store,
            hasher or Hasher.from_settings(settings),
            executor,
            metrics,
            prefix=settings.token_prefix,
            ttl=settings.token_cache_ttl,
            default_rate=settings.rate_limit,
            max_pending=VERIFY_THREADS * VERIFY_QUEUE_PER_THREAD,
            clock=clock,
        )
        stack.push_async_callback(auth.close)
        listener = Listener(settings.database_listen_url or url, auth, metrics)
        await listener.start()
        stack.push_async_callback(listener.close)
        limiter = create_limiter(settings, metrics)
        await limiter.start()
        stack.push_async_callback(limiter.close)
        ledger = Ledger()
        quotas = Quotas(limiter, ledger)
        flusher = LastUsed(UsageStore(pool), metrics, ledger=ledger, applied=quotas.applied)
        last_used = await stack.enter_async_context(
            flushing(flusher, settings.last_used_flush_interval)
        )
        stack.callback(access_log.flush)
        handler = Handler(
            auth=auth,
            forwarder=Forwarder(client, upstream),
            limiter=limiter,
            last_used=last_used,
            metrics=metrics,
            access_log=access_log,
            clients=ClientAddresses(settings.trusted_proxies),
            quotas=quotas,
        )
        limits = ClientLimits.from_settings(settings)
        yield Gateway(handler, auth, listener, limiter, last_used, metrics, limits, listener_tls)


def serve(
    gateway: Gateway,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    backlog: int = 1024,
    shutdown_timeout: float = 10.0,
) -> AbstractAsyncContextManager[Server]:
    """Serve ``gateway`` on host:port while inside, over TLS when its settings say so
    (OSError when the port cannot be bound); leaving drains requests in flight for up to
    ``shutdown_timeout`` seconds."""
    return serve_front(
        gateway.handler,
        gateway.limits,
        host,
        port,
        reuse_port=reuse_port,
        backlog=backlog,
        shutdown_timeout=shutdown_timeout,
        ssl_context=gateway.tls,
    )
