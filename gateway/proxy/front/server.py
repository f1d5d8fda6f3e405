"""The proxy listener: a TCP server whose connections speak :mod:`.protocol`.

Stopping (:meth:`Server.stop`) stops accepting, closes idle keep-alive connections
at once, lets requests in flight finish (their answers say ``Connection: close``)
for up to ``grace`` seconds, then cuts what is left and cancels its handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator

from .connections import Connections
from .limits import ClientLimits
from .protocol import Connection
from .request import App
from .tls import TlsListener, bind


class Server:
    def __init__(self, app: App, limits: ClientLimits) -> None:
        self._app = app
        self._limits = limits
        self._server: asyncio.Server | TlsListener | None = None
        self._connections: Connections | None = None

    async def start(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        backlog: int = 1024,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Listen on host:port (port 0: one the system chooses); OSError if it cannot.
        With ``ssl_context``, connections speak TLS and requests' scheme is ``https``;
        plain HTTP sent there is answered with a 400 saying so (:mod:`.tls`)."""
        loop = asyncio.get_running_loop()
        scheme = "http" if ssl_context is None else "https"
        self._connections = connections = Connections(self._app, self._limits, loop, scheme)
        try:
            if ssl_context is None:
                self._server = await loop.create_server(
                    lambda: Connection(connections),
                    host,
                    port,
                    reuse_port=reuse_port or None,
                    backlog=backlog,
                )
            else:
                self._server = TlsListener(
                    loop,
                    bind(host, port, reuse_port=reuse_port, backlog=backlog),
                    ssl_context,
                    tls=lambda: Connection(connections),
                    plain=lambda: Connection(connections, plain_on_tls=True),
                    first_byte_timeout=self._limits.header_timeout,
                    max_pending=self._limits.max_connections,
                )
        except BaseException:
            connections.stop()
            raise

    @property
    def port(self) -> int:
        """The port listened on (the one chosen, when started on port 0)."""
        assert self._server is not None
        for sock in self._server.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                port: int = sock.getsockname()[1]
                return port
        raise RuntimeError("not listening on a TCP socket")

    @property
    def connections(self) -> int:
        """Client connections open now."""
        return 0 if self._connections is None else len(self._connections.open)

    async def stop(self, grace: float) -> None:
        server, connections = self._server, self._connections
        self._server = None
        if server is None or connections is None:
            return
        server.close()
        connections.draining = True
        connections.close_idle()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await connections.emptied.wait()
        await connections.abort_all()
        connections.stop()


@contextlib.asynccontextmanager
async def serve(
    app: App,
    limits: ClientLimits,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    backlog: int = 1024,
    shutdown_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Server]:
    """Serve ``app`` on host:port (over TLS with ``ssl_context``) while inside; on the way
    out, stop as :class:`Server` describes. Raises OSError when the port cannot be bound."""
    server = Server(app, limits)
    await server.start(host, port, reuse_port=reuse_port, backlog=backlog, ssl_context=ssl_context)
    try:
        yield server
    finally:
        await server.stop(shutdown_timeout)
