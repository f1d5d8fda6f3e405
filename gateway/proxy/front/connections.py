"""The open client connections of one listener: the cap, which are idle, the deadlines.

One sweep per listener enforces every connection's deadlines (a quarter of the
shortest timeout apart, at most a second), instead of a timer per request: setting
a deadline is then one attribute assignment on the request path.

At the cap, a new connection makes room by closing the longest-idle one (between
requests, or still sending its head); with none idle, the new one is refused, and
past :data:`REFUSING` more, reset without an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final, Protocol

from .limits import ClientLimits
from .request import App

log = logging.getLogger(__name__)

INF: Final = float("inf")
REFUSING: Final = 64  # connections over the cap still answered 503; past that, reset at once


class Client(Protocol):
    """What the registry needs of a connection (:class:`~.protocol.Connection`)."""

    read_deadline: float
    write_deadline: float

    def read_expired(self) -> None: ...
    def write_expired(self) -> None: ...
    def shed(self) -> None: ...
    def cut(self) -> None: ...
    def stop(self) -> asyncio.Task[None] | None: ...


class Connections:
    def __init__(
        self,
        app: App,
        limits: ClientLimits,
        loop: asyncio.AbstractEventLoop,
        scheme: str = "http",
    ) -> None:
        self.app = app
        self.limits = limits
        self.loop = loop
        self.scheme = scheme  # of every request on these connections: "https" over TLS
        self.open: dict[Client, None] = {}
        self.idle: dict[Client, None] = {}  # insertion order: longest idle first
        self.draining = False
        self.emptied = asyncio.Event()  # set while no connection is open
        self.emptied.set()
        shortest = min(
            limits.header_timeout,
            limits.body_timeout,
            limits.write_timeout,
            limits.websocket_timeout,
            limits.keepalive_timeout or INF,
        )
        self._tick = max(0.01, min(1.0, shortest / 4))
        self._timer: asyncio.TimerHandle | None = loop.call_later(self._tick, self._sweep)

    def opened(self, conn: Client) -> bool:
        """Count ``conn`` in; False when the cap leaves it no room (nothing idle to close)."""
        self.open[conn] = None
        self.emptied.clear()
        if len(self.open) > self.limits.max_connections:
            if not self.idle:
                return False
            next(iter(self.idle)).shed()
        self.idle[conn] = None
        return True

    def flooded(self) -> bool:
        """So far over the cap that even a 503 costs too much."""
        return len(self.open) > self.limits.max_connections + REFUSING

    def resting(self, conn: Client) -> None:
        self.idle[conn] = None

    def working(self, conn: Client) -> None:
        self.idle.pop(conn, None)

    def closed(self, conn: Client) -> None:
        self.open.pop(conn, None)
        self.idle.pop(conn, None)
        if not self.open:
            self.emptied.set()

    def close_idle(self) -> None:
        for conn in list(self.idle):
            conn.shed()

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self.open):
            try:
                if conn.read_deadline <= now:
                    conn.read_expired()
                if conn.write_deadline <= now:
                    conn.write_expired()
            except Exception:  # one connection's failure must not end every deadline
                log.exception("deadline handling failed; closing that connection")
                conn.cut()
        self._timer = self.loop.call_later(self._tick, self._sweep)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def abort_all(self) -> None:
        """Cut every connection and end what its handler still does."""
        tasks = [task for conn in list(self.open) if (task := conn.stop()) is not None]
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
