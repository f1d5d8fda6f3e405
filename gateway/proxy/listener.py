"""Instant revocation: a dedicated Postgres connection LISTENing to the store's events.

A listener on a pooled connection vanishes when the connection returns to the
pool, so this one owns its connection, to ``DATABASE_LISTEN_URL`` (default
``DATABASE_URL``): Postgres itself, because LISTEN through a pooler in transaction
mode (PgBouncer) lands on a server connection that is handed to other clients.
A dead connection is noticed by asyncpg's termination callback or, for a silent
network, by a periodic ping; it is then replaced with backoff. Notifications sent
meanwhile are lost, so every cached token state is treated as stale after each
(re)connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from gateway.core import db, events
from gateway.core.config import ConfigError

from .auth import Authenticator
from .metrics import GatewayMetrics

log = logging.getLogger(__name__)

PING_INTERVAL = 5.0
PING_TIMEOUT = 5.0
CATCH_UP_TIMEOUT = 1.0
BACKOFF_START = 0.05
BACKOFF_MAX = 2.0

_CONNECT_ERRORS: tuple[type[BaseException], ...] = (ConfigError, *db.UNREACHABLE)


class Listener:
    def __init__(
        self,
        url: str,
        auth: Authenticator,
        metrics: GatewayMetrics,
        *,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        backoff_max: float = BACKOFF_MAX,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._auth = auth
        self._metrics = metrics
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._backoff_max = backoff_max
        self._wallclock = wallclock
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._conn: asyncpg.Connection | None = None  # while listening
        self._using = asyncio.Lock()  # one query at a time on it (the ping, caught_up)
        self.connected = False
        self.connections = 0  # successful (re)connects so far

    async def start(self, wait: float = 10.0) -> None:
        """Start listening; wait up to ``wait`` seconds for the first connection."""
        self._task = asyncio.create_task(self._run(), name="tollgate-listener")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._up.wait()

    async def caught_up(self) -> None:
        """Return once the events committed before this call have been applied here.

        One round trip on the LISTEN connection: Postgres sends a listening session its
        pending notifications before it answers the session's next query, and asyncpg
        runs their callback before the query's caller resumes. So after a revocation's
        commit, this makes the next request here see it. It waits at most
        :data:`CATCH_UP_TIMEOUT`, and not at all when not listening (events missed
        meanwhile expire every cached state anyway).
        """
        conn = self._conn
        if conn is None or conn.is_closed():
            return
        async with self._using:
            with contextlib.suppress(TimeoutError, *_CONNECT_ERRORS):
                async with asyncio.timeout(CATCH_UP_TIMEOUT):
                    await conn.execute("SELECT 1")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = BACKOFF_START
        while True:
            try:
                conn = await db.connect(self._url, variable="DATABASE_LISTEN_URL")
            except _CONNECT_ERRORS as err:
                if delay == BACKOFF_START:  # once per outage, not once per attempt
                    log.warning("LISTEN connection failed, retrying: %s", err)
                delay = await self._back_off(delay)
                continue
            try:
                listened = await self._listen(conn)
            except Exception:  # a bug must not end revocation for good: log, reconnect
                log.exception("LISTEN connection failed unexpectedly")
                await asyncio.sleep(self._backoff_max)
                listened = True
            finally:
                self.connected = False
                self._conn = None
                conn.terminate()
            # Back off only while LISTEN itself keeps failing; after a working session,
            # reconnect at once.
            delay = BACKOFF_START if listened else await self._back_off(delay)

    async def _back_off(self, delay: float) -> float:
        """Wait about ``delay`` seconds; return the next, doubled, delay."""
        # Jitter keeps many gateways from reconnecting in lockstep.
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        return min(delay * 2, self._backoff_max)

    async def _listen(self, conn: asyncpg.Connection) -> bool:
        """Listen until the connection is lost; False when LISTEN itself failed."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(events.CHANNEL, self._notified)
        except _CONNECT_ERRORS as err:
            log.warning("LISTEN failed: %s", err)
            return False
        # Listening again: whatever happened while we were not is unknown.
        self._auth.expire_all()
        self._conn = conn
        self.connected = True
        self.connections += 1
        self._up.set()
        if self.connections > 1:
            log.info("LISTEN connection restored; cached token states marked stale")
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ping_interval):
                    await lost.wait()
            if lost.is_set() or not await self._ping(conn):
                break
        log.warning("LISTEN connection lost; reconnecting")
        return True

    async def _ping(self, conn: asyncpg.Connection) -> bool:
        if conn.is_closed():  # lost just now; using it would raise a plain InterfaceError
            return False
        try:
            async with self._using, asyncio.timeout(self._ping_timeout):
                await conn.execute("SELECT 1")
        except _CONNECT_ERRORS:
            return False
        return True

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        event = events.parse(payload)
        if event is None:
            log.warning("ignoring an unreadable event on %s", events.CHANNEL)
            return
        if event.kind == events.TOKEN_REVOKED and event.token_id is not None:
            self._auth.forget_token(event.token_id)
        elif event.kind == events.TOKEN_UPDATED and event.token_id is not None:
            self._auth.update_token(event.token_id, event.extra)
        else:
            deleted = event.kind == events.PROJECT_DELETED
            self._auth.forget_project(event.project_id, deleted=deleted)
        self._metrics.revocations.inc()
        if event.at is not None:
            self._metrics.revocation_propagation.observe(max(self._wallclock() - event.at, 0.0))
