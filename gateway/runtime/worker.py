"""One proxy worker process, started by ``gateway serve`` (see serve.py).

Each worker opens the gateway's resources (:func:`gateway.proxy.app.running`) and
serves them (:func:`gateway.proxy.app.serve`) on uvloop, listening on ``GATEWAY_PORT``
with ``SO_REUSEPORT`` so the kernel spreads connections over the workers. SIGTERM
stops it gracefully: the listener closes, idle connections close, in-flight requests
get :data:`SHUTDOWN_TIMEOUT` seconds, then the resources close (the last-used flush
among them). SIGINT is ignored: a terminal's Ctrl-C reaches the whole process
group, and the parent turns it into SIGTERM for every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from pathlib import Path

import uvloop
from prometheus_client import CollectorRegistry

from gateway.core.clikit import EXIT_USAGE, setup_logging
from gateway.core.config import ConfigError, Settings, cannot_listen
from gateway.proxy.app import Gateway, running, serve
from gateway.proxy.front import raise_open_files_limit

from . import health

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0
# The cyclic garbage collector's generation thresholds once the worker serves (CPython's
# defaults: 700, 10, 10). Measured with 5,000 open connections (2,500 a worker, one
# request every 2 s each): with the defaults a worker spent about 1.4 s of CPU in
# collections over 20 s, 0.6 s of it in five full collections of up to 160 ms, the
# pauses that made p99 (PITFALLS.md); frozen and with these, about 0.25 s and no full
# collection (its young collections, each waiting for 10,000 more live objects, took
# up to ~25 ms of CPU on that loaded machine, against ~1 ms; fewer and larger).
GC_THRESHOLDS = (10_000, 20, 20)


def main(settings: Settings, status_dir: str, metrics_dir: str) -> None:
    """Process entry point (``multiprocessing`` spawn target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging()
    raise_open_files_limit()  # before GATEWAY_MAX_CONNECTIONS=auto is worked out from it
    try:
        uvloop.run(_serve(settings, Path(status_dir), Path(metrics_dir), os.getppid()))
    except ConfigError as err:
        print(f"gateway: {err}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


async def _serve(settings: Settings, status_dir: Path, metrics_dir: Path, parent: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    registry: CollectorRegistry | None = None
    try:
        async with contextlib.AsyncExitStack() as stack:
            gateway = await stack.enter_async_context(running(settings))
            registry = gateway.metrics.registry
            await _listen(stack, gateway, settings)
            settle_collector()
            log.info("worker %d accepting connections", os.getpid())
            heartbeat = asyncio.create_task(
                _heartbeat(gateway, status_dir, metrics_dir, parent, stop)
            )
            await stop.wait()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            # No longer "serving" for /healthz while requests drain.
            health.remove(status_dir)
    finally:
        if registry is not None:  # the last requests and the final last-used flush
            health.write_metrics(metrics_dir, registry)


def settle_collector() -> None:
    """Start-up is done: what it allocated (modules, settings, pools, caches) lives as long
    as the worker, so :func:`gc.freeze` takes it out of every later collection's walk
    (CPython's advice for long-lived servers), and collections run less often
    (:data:`GC_THRESHOLDS`). Garbage without cycles is freed by reference counting as
    before; only cycles wait a little longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _listen(stack: contextlib.AsyncExitStack, gateway: Gateway, settings: Settings) -> None:
    host, port = settings.gateway_host, settings.gateway_port
    listening = serve(
        gateway, host, port, reuse_port=True, backlog=1024, shutdown_timeout=SHUTDOWN_TIMEOUT
    )
    try:
        await stack.enter_async_context(listening)
    except OSError as err:
        raise cannot_listen("GATEWAY_PORT", host, port, err) from None


async def _heartbeat(
    gateway: Gateway, status_dir: Path, metrics_dir: Path, parent: int, stop: asyncio.Event
) -> None:
    """Every second: this worker's metrics, then its status, for the parent."""
    while True:
        if os.getppid() != parent:
            # The parent died without stopping us (SIGKILL): do not hold the port forever.
            log.error("gateway parent process is gone; worker %d stops", os.getpid())
            stop.set()
            return
        health.write_metrics(metrics_dir, gateway.metrics.registry)
        health.write(status_dir, ready=gateway.is_ready())
        await asyncio.sleep(health.HEARTBEAT)
