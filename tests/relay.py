"""A TCP relay in front of Postgres, to cut the network in tests (no mocks).

``cut()`` resets every relayed connection and refuses new ones until ``restore()``,
like a database that went away; the client sees real socket errors. ``drop(pattern)``
is finer: it resets only the connections whose client sent ``pattern`` (for example
``b"LISTEN"``), now and until ``allow()``, and leaves the others working.
``lose_answer_to(pattern)`` passes the next message containing ``pattern`` (say
``b"COMMIT"``) on to the server, waits for the server's answer and resets the connection
instead of relaying it: the server did the work, the client never hears so.
``answer_delay`` (seconds) holds every server message that long before passing it on, in
order: a slow network between Postgres and its clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tests.helpers import server_address

# Client bytes remembered per connection for drop(): the startup packet and first queries.
_REMEMBERED = 64 * 1024


class _Connection:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.sent = bytearray()
        self.swallow = False  # the server's next answer is dropped and the connection reset

    def abort(self) -> None:
        self.client.transport.abort()
        self.upstream.transport.abort()


class Relay:
    def __init__(self, target_url: str) -> None:
        self._target = _target(target_url)
        self._url = target_url
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._dropping: bytes | None = None
        self._losing: bytes | None = None
        self.answers_lost = 0
        self.answer_delay = 0.0
        self.client_messages = 0  # reads from clients: one per request sent and awaited
        self.port = 0

    @property
    def url(self) -> str:
        """``target_url`` rewritten to go through the relay."""
        parts = urlsplit(self._url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")]
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for connection in list(self._connections):
            connection.abort()
        self._connections.clear()

    async def restore(self) -> None:
        await self.start()

    def drop(self, pattern: bytes) -> None:
        """Reset every connection whose client sent ``pattern``, now and until ``allow()``."""
        self._dropping = pattern
        for connection in list(self._connections):
            if pattern in connection.sent:
                connection.abort()

    def allow(self) -> None:
        self._dropping = None

    def lose_answer_to(self, pattern: bytes) -> None:
        """Once: relay the next client message containing ``pattern``, then reset the
        connection when the server answers it, without relaying the answer."""
        self._losing = pattern

    async def close(self) -> None:
        await self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if isinstance(self._target, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self._target)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        connection = _Connection(writer, up_writer)
        self._connections.add(connection)
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer, connection)),
            asyncio.create_task(self._answers(up_reader, writer, connection)),
        ]
        self._tasks.update(pipes)
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        self._tasks.difference_update(pipes)
        self._connections.discard(connection)
        connection.abort()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        from_client: _Connection | None,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if from_client is not None:
                    self.client_messages += 1
                    if len(from_client.sent) < _REMEMBERED:
                        from_client.sent += data
                    if self._dropping is not None and self._dropping in from_client.sent:
                        from_client.abort()
                        return
                    if self._losing is not None and self._losing in data:
                        self._losing = None
                        from_client.swallow = True
                writer.write(data)
                await writer.drain()

    async def _answers(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: _Connection
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if connection.swallow:
                    self.answers_lost += 1
                    connection.abort()
                    return
                if self.answer_delay:
                    await asyncio.sleep(self.answer_delay)  # latency, not a wait for state
                writer.write(data)
                await writer.drain()


def _target(url: str) -> str | tuple[str, int]:
    """Where ``url`` points: a Unix socket path (``?host=/dir``) or ``(host, port)``."""
    host, port = server_address(url)
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}"
    return host, port
