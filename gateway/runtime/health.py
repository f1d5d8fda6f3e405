"""Health: the status files workers write, and the port that reads them.

``GATEWAY_METRICS_PORT`` serves ``/metrics``, ``/healthz`` and ``/readyz``.
``/metrics`` sums every worker's metrics with prometheus-client's multiprocess mode:
a fresh registry and ``MultiProcessCollector`` per scrape, over the directory the
workers write to, after asking each serving worker to flush its buffered values
(:func:`flush_workers`). ``/healthz`` is 200 once every worker accepts connections;
``/readyz`` also needs Postgres reachable and every worker ready (its LISTEN
connection up). ``/metrics`` also carries ``gateway_ready``, 1 exactly when ``/readyz``
answers 200, so the alert on lost readiness needs nothing but the scrape.

Status files: each worker rewrites ``<dir>/<pid>.json`` (atomically, by rename) every
:data:`HEARTBEAT` seconds once its listener accepts connections. The parent reads the
files of the workers it knows are alive. A file older than :data:`STALE_AFTER` means a
worker whose event loop is stuck: it counts as not serving. A worker removes its own
file on the way out and the parent removes the file of a worker that died.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.core import db
from gateway.proxy.app import Gateway

# ---------------------------------------------------------------- status files

HEARTBEAT = 1.0
STALE_AFTER = 5.0


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    pid: int
    ready: bool
    at: float

    def fresh(self, now: float) -> bool:
        return now - self.at < STALE_AFTER


def _path(directory: Path, pid: int) -> Path:
    return directory / f"{pid}.json"


def _replace(path: Path, text: str) -> None:
    """Write ``path`` by rename, so a reader never sees it half written."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write(directory: Path, *, ready: bool, pid: int | None = None, at: float | None = None) -> None:
    pid = os.getpid() if pid is None else pid
    status = {"pid": pid, "ready": ready, "at": time.time() if at is None else at}
    _replace(_path(directory, pid), json.dumps(status))


def read(directory: Path, pid: int) -> WorkerStatus | None:
    """The last status ``pid`` wrote, or None if it has not written one (yet)."""
    try:
        data = json.loads(_path(directory, pid).read_text())
        return WorkerStatus(pid=pid, ready=data["ready"] is True, at=float(data["at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(directory: Path, pid: int | None = None) -> None:
    pid = os.getpid() if pid is None else pid
    _path(directory, pid).unlink(missing_ok=True)
    _flushed_path(directory, pid).unlink(missing_ok=True)


def _flushed_path(directory: Path, pid: int) -> Path:
    return directory / f"{pid}.flushed"


def write_flushed(directory: Path) -> None:
    """Say that this worker's metrics reached their files just now (asked before a scrape)."""
    _replace(_flushed_path(directory, os.getpid()), repr(time.time()))


def read_flushed(directory: Path, pid: int) -> float:
    """When ``pid`` last said its metrics were flushed on request; 0 if never."""
    try:
        return float(_flushed_path(directory, pid).read_text())
    except (OSError, ValueError):
        return 0.0


# ---------------------------------------------------------------- the port


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
        pending = [pid for pid in pending if read_flushed(status_dir, pid) < asked]


def exposition(metrics_dir: Path) -> bytes:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    return generate_latest(registry)


class _Ready:
    """The ``gateway_ready`` gauge of one scrape (a collector: computed, not stored)."""

    def __init__(self, ready: bool) -> None:
        self._ready = ready

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "gateway_ready", "1 when /readyz answers 200, else 0.", value=float(self._ready)
        )


def ready_exposition(ready: bool) -> bytes:
    registry = CollectorRegistry()
    registry.register(_Ready(ready))
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
                        self._conn = await asyncpg.connect(self._url, **db.POOLER_SAFE)
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

    def statuses(self) -> list[WorkerStatus]:
        """Statuses of live workers that are serving (fresh heartbeat)."""
        now = self.clock()
        found = (read(self.status_dir, pid) for pid in self.workers())
        return [status for status in found if status is not None and status.fresh(now)]

    async def metrics(self, request: web.Request) -> web.Response:
        if self.flush is not None:
            await self.flush([status.pid for status in self.statuses()])
        ready, _ = await self.readiness()
        body = await asyncio.to_thread(exposition, self.metrics_dir)
        body += ready_exposition(ready)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        serving = len(self.statuses())
        ok = serving >= self.expected
        body = {
            "status": "ok" if ok else "unavailable",
            "workers": {"expected": self.expected, "serving": serving},
        }
        return web.json_response(body, status=200 if ok else 503)

    async def readiness(self) -> tuple[bool, dict[str, object]]:
        """Whether every worker is ready and Postgres answers, and the body saying so."""
        statuses = self.statuses()
        ready = sum(status.ready for status in statuses)
        database = await self.database()
        ok = database and len(statuses) >= self.expected and ready >= self.expected
        body: dict[str, object] = {
            "status": "ready" if ok else "not_ready",
            "database": database,
            "workers": {"expected": self.expected, "serving": len(statuses), "ready": ready},
        }
        return ok, body

    async def readyz(self, request: web.Request) -> web.Response:
        ok, body = await self.readiness()
        return web.json_response(body, status=200 if ok else 503)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app


def single_app(gateway: Callable[[], Gateway | None], database: DatabaseCheck) -> web.Application:
    """``/metrics``, ``/healthz``, ``/readyz`` of one in-process gateway (``gateway up``).

    ``gateway serve`` aggregates worker processes (:class:`Monitor`); here there is a
    single gateway, so its own registry is the whole story.
    """

    async def readiness() -> tuple[bool, bool]:
        """(ready, Postgres reachable)."""
        reachable = await database()
        running = gateway()
        return reachable and running is not None and running.is_ready(), reachable

    async def metrics(request: web.Request) -> web.Response:
        running = gateway()
        body = b"" if running is None else generate_latest(running.metrics.registry)
        body += ready_exposition((await readiness())[0])
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        # This port opens after the proxy's, so answering at all means it accepts requests.
        return web.json_response({"status": "ok", "workers": {"expected": 1, "serving": 1}})

    async def readyz(request: web.Request) -> web.Response:
        ok, reachable = await readiness()
        body = {"status": "ready" if ok else "not_ready", "database": reachable}
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.on_cleanup.append(lambda _: database.close())
    return app
