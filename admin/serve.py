"""Running the admin app: on its own (``admin serve``) or inside another event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal

from aiohttp import web

from gateway.core import db, ports
from gateway.core import migrate as migrations
from gateway.core.config import Settings, cannot_listen

from .app import create_app

log = logging.getLogger(__name__)


async def start(settings: Settings) -> web.AppRunner:
    """Start the admin app on ADMIN_HOST:ADMIN_PORT in the running loop.

    ``settings.database_url`` must be resolved. Stop it with ``await runner.cleanup()``.
    No aiohttp access log: its formatter is costly and the metrics count every request.
    """
    host, port = settings.admin_host, settings.admin_port
    try:
        ports.probe(host, port)
    except OSError as err:
        raise cannot_listen("ADMIN_PORT", host, port, err) from None
    runner = web.AppRunner(create_app(settings), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except OSError as err:  # taken since the probe
        await runner.cleanup()
        raise cannot_listen("ADMIN_PORT", host, port, err) from None
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def listening_on(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


async def _serve(settings: Settings, *, migrate: bool) -> None:
    settings.require_admin_token()  # before any work: a missing token is a usage error
    url = db.database_url(settings)
    settings = dataclasses.replace(settings, database_url=url)
    if migrate:
        await migrations.apply(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = await start(settings)
    log.info("admin API listening on %s", listening_on(runner))
    try:
        await stop.wait()
    finally:
        log.info("admin API stopping")
        await runner.cleanup()


def serve(settings: Settings, *, migrate: bool = True) -> int:
    asyncio.run(_serve(settings, migrate=migrate))
    return 0
