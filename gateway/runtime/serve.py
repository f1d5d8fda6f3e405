"""``gateway serve``: check, migrate, then supervise the worker processes.

Everything that can be a configuration mistake happens first, in this process and
before any worker exists, so it ends with one line and exit status 2: the upstream
URL, the TLS files, the database (the embedded server starts here and stays owned by this process),
migrations, and both ports.

Then ``GATEWAY_WORKERS`` processes are *spawned* (fresh interpreters: nothing of this
process's event loop, database handle or prometheus state is inherited); each runs
:mod:`.worker`. This process serves ``/metrics``, ``/healthz`` and ``/readyz``
on ``GATEWAY_METRICS_PORT`` (:mod:`.health`).

SIGTERM or SIGINT stops every worker gracefully (each flushes its last-used times)
and exits 0; a second signal kills them at once (exit 1). Workers that lose this
process (SIGKILL) notice within a second and stop too.

A worker that dies unexpectedly is replaced after a short, doubling delay, up to
:data:`MAX_RESTARTS` times in :data:`RESTART_WINDOW` seconds; beyond that, or if one
of the first workers cannot start (status 2: nothing a restart can fix), everything
stops with a non-zero status, so a service manager sees the failure.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path

from aiohttp import web

from gateway.core import db, ports, tls
from gateway.core.clikit import EXIT_USAGE
from gateway.core.config import ConfigError, Settings, cannot_listen
from gateway.core.migrate import migrate as apply_migrations

from . import health, worker

log = logging.getLogger(__name__)

EXIT_FAILED = 1
# Workers get SHUTDOWN_TIMEOUT for in-flight requests, then flush (at most
# lastused.SHUTDOWN_DEADLINE); past this, SIGKILL.
SHUTDOWN_GRACE = worker.SHUTDOWN_TIMEOUT + 20.0
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
# A replacement waits 0.5 s, then 1, 2, 4 …: a cause that lasts (Postgres down while a
# replacement starts) does not burn the restart budget in a second.
RESTART_DELAY = 0.5
RESTART_DELAY_MAX = 10.0


def serve(settings: Settings, *, migrate: bool) -> int:
    settings.require_upstream()
    tls.check(settings)
    if settings.metrics_port == settings.gateway_port != 0:
        raise ConfigError("GATEWAY_METRICS_PORT", "must differ from GATEWAY_PORT")
    url = db.database_url(settings)
    asyncio.run(_prepare_database(url, settings.database_listen_url, migrate=migrate))
    port = _check_port(settings.gateway_host, settings.gateway_port)
    settings = dataclasses.replace(settings, database_url=url, gateway_port=port)
    with _runtime_dir() as run_dir:
        return asyncio.run(Supervisor(settings, run_dir).run())


async def _prepare_database(url: str, listen_url: str | None, *, migrate: bool) -> None:
    conn = await db.connect(url)  # ConfigError when unreachable
    try:
        if migrate:
            applied = await apply_migrations(conn)
            if applied:
                log.info("applied %d migration(s): %s", len(applied), ", ".join(applied))
    finally:
        await conn.close()
    if listen_url is not None:  # LISTEN's own URL: unreachable now is a mistake to report now
        await (await db.connect(listen_url, variable="DATABASE_LISTEN_URL")).close()


def _check_port(host: str, port: int) -> int:
    """Fail now if the proxy port is taken; a port of 0 becomes one free port for all workers."""
    try:
        return ports.probe(host, port)
    except OSError as err:  # socket.gaierror included
        raise cannot_listen("GATEWAY_PORT", host, port, err) from None


# prometheus-client's multiprocess mode, which workers must not inherit from the
# environment: they keep their metrics in memory (see health.py).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def _runtime_dir() -> Iterator[Path]:
    """A fresh directory for this run: worker metric snapshots and statuses."""
    try:
        root = Path(tempfile.mkdtemp(prefix="tollgate-"))
        (root / "metrics").mkdir()
        (root / "workers").mkdir()
    except OSError as err:
        where = tempfile.gettempdir()
        problem = f"cannot create the metrics directory in {where}: {err.strerror}"
        raise ConfigError("TMPDIR", problem) from None
    previous = os.environ.pop(MULTIPROC_ENV, None)  # spawned workers inherit os.environ
    try:
        yield root
    finally:
        if previous is not None:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(root, ignore_errors=True)


class Supervisor:
    """Starts the workers, replaces crashed ones, stops them all on a signal."""

    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self._settings = settings
        self._metrics_dir = run_dir / "metrics"
        self._status_dir = run_dir / "workers"
        self._spawn_context = multiprocessing.get_context("spawn")
        self._workers: dict[int, BaseProcess] = {}
        self._exits: dict[int, asyncio.Future[int | None]] = {}
        self._restarts: collections.deque[float] = collections.deque()
        self._first_workers: set[int] = set()
        self._stop = asyncio.Event()
        self._stopping = False
        self._exit_code = 0

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signalled)
        assert self._settings.database_url is not None
        database = health.DatabaseCheck(self._settings.database_url)
        monitor = health.Monitor(
            metrics_dir=self._metrics_dir,
            status_dir=self._status_dir,
            expected=self._settings.gateway_workers,
            workers=lambda: list(self._workers),
            database=database,
        )
        runner = web.AppRunner(monitor.app(), access_log=None)
        await runner.setup()
        try:
            await self._listen(runner)
            for _ in range(self._settings.gateway_workers):
                self._first_workers.add(self._spawn())
            await self._stop.wait()
        finally:
            code = await self._shutdown()
            await runner.cleanup()
            await database.close()
        return code

    async def _listen(self, runner: web.AppRunner) -> None:
        host, port = self._settings.gateway_host, self._settings.metrics_port
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as err:
            raise cannot_listen("GATEWAY_METRICS_PORT", host, port, err) from None
        log.info(
            "starting %d worker(s) on %s://%s:%d; metrics and health on %s",
            self._settings.gateway_workers,
            tls.scheme(self._settings),
            self._settings.gateway_host,
            self._settings.gateway_port,
            site.name,
        )

    def _spawn(self) -> int:
        process = self._spawn_context.Process(
            target=worker.main,
            args=(self._settings, str(self._status_dir), str(self._metrics_dir)),
            name="gateway-worker",
            # Daemonic: if this process ever dies of an exception, multiprocessing's exit
            # handler still terminates the workers.
            daemon=True,
        )
        process.start()
        assert process.pid is not None
        self._workers[process.pid] = process
        self._exits[process.pid] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(process.sentinel, self._exited, process)
        return process.pid

    def _exited(self, process: BaseProcess) -> None:
        asyncio.get_running_loop().remove_reader(process.sentinel)
        process.join()  # already over: reaps it and sets exitcode
        pid, code = process.pid, process.exitcode
        assert pid is not None
        del self._workers[pid]
        health.remove(self._status_dir, pid)
        health.retire(self._metrics_dir, pid)
        self._exits.pop(pid).set_result(code)
        if self._stopping:
            return
        if code == EXIT_USAGE and pid in self._first_workers:
            # A first worker could not start: the reason is its one line on stderr, and
            # a restart cannot help (a busy port, a database refusing us at start).
            self._fail(EXIT_USAGE)
            return
        delay = self._restart_delay()
        if delay is None:
            log.error(
                "worker %d exited unexpectedly (status %s) after %d restarts in %ds: stopping",
                pid,
                code,
                MAX_RESTARTS,
                RESTART_WINDOW,
            )
            self._fail(EXIT_FAILED)
            return
        log.error("worker %d exited unexpectedly (status %s); another in %.1fs", pid, code, delay)
        asyncio.get_running_loop().call_later(delay, self._respawn)

    def _respawn(self) -> None:
        if not self._stopping:
            self._spawn()

    def _restart_delay(self) -> float | None:
        """Seconds before the next restart (doubling), or None past the restart budget."""
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW:
            self._restarts.popleft()
        if len(self._restarts) >= MAX_RESTARTS:
            return None
        self._restarts.append(now)
        return min(RESTART_DELAY * 2.0 ** (len(self._restarts) - 1), RESTART_DELAY_MAX)

    def _signalled(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            return
        # A second signal: the operator will not wait for the graceful stop.
        log.warning("stopping now: killing %d worker(s)", len(self._workers))
        self._exit_code = self._exit_code or EXIT_FAILED
        for process in self._workers.values():
            process.kill()

    def _fail(self, code: int) -> None:
        self._exit_code = code
        self._stop.set()

    async def _shutdown(self) -> int:
        self._stopping = True
        for process in self._workers.values():
            process.terminate()
        exits = list(self._exits.values())
        if not exits:
            return self._exit_code
        _, late = await asyncio.wait(exits, timeout=SHUTDOWN_GRACE)
        if late:
            log.error("%d worker(s) did not stop within %ss: killed", len(late), SHUTDOWN_GRACE)
            for process in self._workers.values():
                process.kill()
            await asyncio.wait(exits)
            return self._exit_code or EXIT_FAILED
        return self._exit_code
