"""The parent's port (``GATEWAY_METRICS_PORT``): ``/metrics``, ``/healthz``, ``/readyz``.

``/metrics`` sums every worker's metrics with prometheus-client's multiprocess mode:
a fresh registry and ``MultiProcessCollector`` per scrape, over the directory the
workers write to, after asking each serving worker to flush its buffered values
(:func:`flush_workers`). ``/healthz`` is 200 once every worker accepts connections;
``/readyz`` also needs Postgres reachable and every worker ready (its LISTEN
connection up, as :func:`gateway.app.is_ready` says). Workers report through
:mod:`gateway.workerstatus`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from . import db, workerstatus

DB_CHECK_TIMEOUT = 2.0
FLUSH_WAIT = 0.5  # a worker whose loop is stuck this long does not hold up the scrape


async def flush_workers(status_dir: Path, pids: Sequence[int], wait: float = FLUSH_WAIT) -> None:
    """Ask each worker to copy its in-memory metrics to its files now (SIGUSR1) and wait
    until each says it did, so a scrape sees every answer sent before it (the workers'
    own timer flushes only once a second)."""
    asked = time.time()
    pending = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            continue
        pending.append(pid)
    deadline = time.monotonic() + wait
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(0.002)
        pending = [pid for pid in pending if workerstatus.read_flushed(status_dir, pid) < asked]


def exposition(metrics_dir: Path) -> bytes:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    return generate_latest(registry)


class DatabaseCheck:
    """``SELECT 1`` on one connection kept open between probes, reopened after a failure."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> bool:
        async with self._lock:
            try:
                async with asyncio.timeout(DB_CHECK_TIMEOUT):
                    if self._conn is None or self._conn.is_closed():
                        self._conn = await asyncpg.connect(self._url)
                    await self._conn.fetchval("SELECT 1")
                return True
            except db.UNREACHABLE:
                await self.close()
                return False

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()


class Monitor:
    """State behind the port: where metrics and worker statuses are, which workers run."""

    def __init__(
        self,
        *,
        metrics_dir: Path,
        status_dir: Path,
        expected: int,
        workers: Callable[[], Sequence[int]],
        database: Callable[[], Awaitable[bool]],
        clock: Callable[[], float] = time.time,
        flush: Callable[[Sequence[int]], Awaitable[None]] | None = None,
    ) -> None:
        self.metrics_dir = metrics_dir
        self.status_dir = status_dir
        self.expected = expected
        self.workers = workers  # pids of the worker processes alive now
        self.database = database
        self.clock = clock
        self.flush = flush  # asks the given (serving) workers to flush their metrics

    def statuses(self) -> list[workerstatus.WorkerStatus]:
        """Statuses of live workers that are serving (fresh heartbeat)."""
        now = self.clock()
        found = (workerstatus.read(self.status_dir, pid) for pid in self.workers())
        return [status for status in found if status is not None and status.fresh(now)]

    async def metrics(self, request: web.Request) -> web.Response:
        if self.flush is not None:
            await self.flush([status.pid for status in self.statuses()])
        body = await asyncio.to_thread(exposition, self.metrics_dir)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        serving = len(self.statuses())
        ok = serving >= self.expected
        body = {
            "status": "ok" if ok else "unavailable",
            "workers": {"expected": self.expected, "serving": serving},
        }
        return web.json_response(body, status=200 if ok else 503)

    async def readyz(self, request: web.Request) -> web.Response:
        statuses = self.statuses()
        ready = sum(status.ready for status in statuses)
        database = await self.database()
        ok = database and len(statuses) >= self.expected and ready >= self.expected
        body = {
            "status": "ready" if ok else "not_ready",
            "database": database,
            "workers": {"expected": self.expected, "serving": len(statuses), "ready": ready},
        }
        return web.json_response(body, status=200 if ok else 503)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app
