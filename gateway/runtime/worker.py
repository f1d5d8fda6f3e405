"""One proxy worker process, started by ``gateway serve`` (see serve.py).

Each worker runs the app from :func:`gateway.proxy.app.create_app` on uvloop, listening on
``GATEWAY_PORT`` with ``SO_REUSEPORT`` so the kernel spreads connections over the
workers. SIGTERM stops it gracefully: the listener closes, in-flight requests get
:data:`SHUTDOWN_TIMEOUT` seconds, then the app's cleanup contexts run (the last-used
flush among them). SIGINT is ignored: a terminal's Ctrl-C reaches the whole process
group, and the parent turns it into SIGTERM for every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import uvloop
from aiohttp import web

from gateway.core.clikit import EXIT_USAGE, setup_logging
from gateway.core.config import ConfigError, Settings, cannot_listen
from gateway.proxy.app import GATEWAY, create_app

from . import health

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0


def main(settings: Settings, status_dir: str, metrics_dir: str) -> None:
    """Process entry point (``multiprocessing`` spawn target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging()
    try:
        uvloop.run(_serve(settings, Path(status_dir), Path(metrics_dir), os.getppid()))
    except ConfigError as err:
        print(f"gateway: {err}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


async def _serve(settings: Settings, status_dir: Path, metrics_dir: Path, parent: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    registry = app[GATEWAY].metrics.registry
    try:
        await _listen(runner, settings)
        log.info("worker %d accepting connections", os.getpid())
        heartbeat = asyncio.create_task(_heartbeat(app, status_dir, metrics_dir, parent, stop))
        await stop.wait()
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        # No longer "serving" for /healthz while requests drain.
        health.remove(status_dir)
    finally:
        await runner.cleanup()
        health.write_metrics(metrics_dir, registry)  # the last requests and last-used flush


async def _listen(runner: web.AppRunner, settings: Settings) -> None:
    host, port = settings.gateway_host, settings.gateway_port
    site = web.TCPSite(runner, host, port, reuse_port=True, backlog=1024)
    try:
        await site.start()
    except OSError as err:
        raise cannot_listen("GATEWAY_PORT", host, port, err) from None


async def _heartbeat(
    app: web.Application, status_dir: Path, metrics_dir: Path, parent: int, stop: asyncio.Event
) -> None:
    """Every second: this worker's metrics, then its status, for the parent."""
    while True:
        if os.getppid() != parent:
            # The parent died without stopping us (SIGKILL): do not hold the port forever.
            log.error("gateway parent process is gone; worker %d stops", os.getpid())
            stop.set()
            return
        health.write_metrics(metrics_dir, app[GATEWAY].metrics.registry)
        health.write(status_dir, ready=app[GATEWAY].is_ready())
        await asyncio.sleep(health.HEARTBEAT)
