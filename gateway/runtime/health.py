"""Health: the files workers write for the parent, and the port that reads them.

``GATEWAY_METRICS_PORT`` serves ``/metrics`` (every worker's metrics summed),
``/healthz`` (200 once every worker accepts connections) and ``/readyz`` (also needs
Postgres reachable and every worker ready: its LISTEN connection up). ``/metrics``
also carries ``gateway_ready``, 1 exactly when ``/readyz`` answers 200, so the alert
on lost readiness needs nothing but the scrape.

Status files: each worker rewrites ``<dir>/<pid>.json`` (atomically, by rename) every
:data:`HEARTBEAT` seconds once its listener accepts connections. The parent reads the
files of the workers it knows are alive. A file older than :data:`STALE_AFTER` means a
worker whose event loop is stuck: it counts as not serving. A worker removes its own
file on the way out and the parent removes the file of a worker that died.

Metric snapshots: each worker keeps its metrics in its own registry, in memory, as
``gateway up`` does, and writes what the registry holds (its public ``collect()``, as
JSON) to ``<dir>/<pid>.json`` of the metrics directory with every heartbeat and once
more on its way out. A scrape sums them: counters and histograms over every snapshot,
those of workers that died included (so no count ever goes back), gauges over live
workers only. The parent folds the snapshot of a worker that died into one
:data:`RETIRED` file, so a scrape reads one file per live worker plus one, however
many came and went.

Why not prometheus-client's multiprocess mode: it writes every update to an mmap'd
file (a lock, ``os.getpid()``, a struct pack per value: 4.7 µs for a proxied request's
updates here, against 2.2 µs in memory), which cost 6-9 % more CPU per proxied request
in side-by-side runs (bench/README.md, "Metrics across workers"). In exchange a scrape
sees a worker's answers up to one heartbeat late, and a worker killed outright loses
at most that much.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.core import db
from gateway.proxy.app import Gateway

log = logging.getLogger(__name__)

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


# ---------------------------------------------------------------- metric snapshots

RETIRED = "retired.json"

# [[family, help, type, [[sample, labels, value], ...]], ...]
Snapshot = list[tuple[str, str, str, list[tuple[str, dict[str, str], float]]]]


def snapshot(collector: Collector) -> Snapshot:
    """What ``collector`` holds, without ``_created`` samples (a sum of start times
    means nothing; multiprocess mode never showed them either)."""
    taken: Snapshot = []
    for metric in collector.collect():
        samples = [(s.name, s.labels, s.value) for s in metric.samples]
        kept = [sample for sample in samples if not sample[0].endswith("_created")]
        taken.append((metric.name, metric.documentation, metric.type, kept))
    return taken


def write_metrics(directory: Path, registry: CollectorRegistry, pid: int | None = None) -> None:
    pid = os.getpid() if pid is None else pid
    _replace(_path(directory, pid), json.dumps(snapshot(registry)))


class MetricsSum(Collector):
    """Snapshots added up sample by sample, families in the order first seen."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str]] = {}
        self._values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}

    def add(self, taken: Snapshot, *, gauges: bool) -> None:
        for name, documentation, kind, samples in taken:
            if kind == "gauge" and not gauges:
                continue
            self._families.setdefault(name, (documentation, kind))
            values = self._values.setdefault(name, {})
            for sample, labels, value in samples:
                key = (sample, tuple(labels.items()))
                values[key] = values.get(key, 0.0) + value

    def read(self, path: Path, *, gauges: bool) -> None:
        try:
            self.add(json.loads(path.read_text()), gauges=gauges)
        except FileNotFoundError:
            pass  # a worker that has not written one yet, or no worker has died
        except (OSError, ValueError, TypeError) as err:
            log.warning("metrics of %s left out: %s", path.name, err)

    def collect(self) -> Iterator[Metric]:
        for name, (documentation, kind) in self._families.items():
            metric = Metric(name, documentation, kind)
            for (sample, labels), value in self._values[name].items():
                metric.add_sample(sample, dict(labels), value)
            yield metric


def exposition(directory: Path, live: Collection[int]) -> bytes:
    """Every worker's metrics summed, in the text format.

    Runs on the parent's event loop, as :func:`retire` does, so a scrape never sees a
    dead worker's counts both in its own file and in the retired one, or in neither.
    A few small files: about 2 ms per scrape.
    """
    total = MetricsSum()
    total.read(directory / RETIRED, gauges=False)
    for pid in live:
        total.read(_path(directory, pid), gauges=True)
    registry = CollectorRegistry()
    registry.register(total)
    return generate_latest(registry)


def retire(directory: Path, pid: int) -> None:
    """Fold the snapshot of ``pid``, which died, into the retired file."""
    path = _path(directory, pid)
    if not path.exists():
        return
    total = MetricsSum()
    total.read(directory / RETIRED, gauges=False)
    total.read(path, gauges=False)
    _replace(directory / RETIRED, json.dumps(snapshot(total)))
    path.unlink()


# ---------------------------------------------------------------- the port


DB_CHECK_TIMEOUT = 2.0


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
    ) -> None:
        self.metrics_dir = metrics_dir
        self.status_dir = status_dir
        self.expected = expected
        self.workers = workers  # pids of the worker processes alive now
        self.database = database
        self.clock = clock

    def statuses(self) -> list[WorkerStatus]:
        """Statuses of live workers that are serving (fresh heartbeat)."""
        now = self.clock()
        found = (read(self.status_dir, pid) for pid in self.workers())
        return [status for status in found if status is not None and status.fresh(now)]

    async def metrics(self, request: web.Request) -> web.Response:
        ready, _ = await self.readiness()
        body = exposition(self.metrics_dir, self.workers()) + ready_exposition(ready)
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
