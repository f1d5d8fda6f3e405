"""An upstream answer as its caller sees it: status, head, a body read with back-pressure,
and, after a 101, the switched connection itself (:class:`Tunnel`)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final, Protocol

from multidict import CIMultiDictProxy

from .errors import expire

HIGH_WATER: Final = 256 * 1024  # body bytes queued for the client before we stop reading


class Link(Protocol):
    """What an answer needs of the connection it arrives on."""

    loop: asyncio.AbstractEventLoop
    timeout: float

    def pause(self) -> None: ...  # stop reading from the socket
    def resume(self) -> None: ...
    def abort(self) -> None: ...
    def send(self, data: bytes) -> None: ...
    async def drained(self, idle: float | None) -> None: ...
    def close(self) -> None: ...


class UpstreamResponse:
    """An answer's status and head; read the body with :meth:`read` until it returns b"".

    Framing headers never contradict the body: an answer with both Content-Length and
    Transfer-Encoding, or a transfer coding other than ``chunked``, is refused as
    malformed; a Content-Length that is kept is the length :meth:`read` delivers (or it
    raises). HEAD, 204 and 304 answers have no body whatever their head says.
    """

    __slots__ = (
        "_chunks",
        "_conn",
        "_done",
        "_error",
        "_idle",
        "_queued",
        "_waiter",
        "headers",
        "reason",
        "status",
    )

    def __init__(
        self, conn: Link, status: int, reason: str, headers: CIMultiDictProxy[str]
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers  # as received, in order (names keep their case)
        self._conn: Link | None = conn
        self._idle: float | None = conn.timeout  # how long read() waits for bytes
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def read(self) -> bytes:
        """The next body bytes (all that arrived), or b"" at the end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            conn = self._conn
            assert conn is not None
            loop = conn.loop
            self._waiter = waiter = loop.create_future()
            idle = self._idle
            timer = None if idle is None else loop.call_later(idle, expire, waiter)
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                self._waiter = None
        data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        if self._queued >= HIGH_WATER and self._conn is not None:
            self._conn.resume()
        self._queued = 0
        return data

    def complete_body(self) -> bytes | None:
        """The whole body if it has already arrived (small answers often come with the
        head), else None: the caller can then answer in one write instead of streaming."""
        if not self._done or self._error is not None:
            return None
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._queued = 0
        return data

    def release(self) -> None:
        """Done with the answer: an unfinished body closes the connection (it cannot be reused)."""
        conn, self._conn = self._conn, None
        if conn is not None and not self._done:
            conn.abort()

    def upgrade(self) -> Tunnel:
        """The connection itself, after a 101 to a request sent with ``upgrade=``.

        From here on the bytes are the new protocol's, relayed as they are; the
        connection never goes back to the pool. RuntimeError for any other answer.
        """
        conn = self._conn
        if self.status != 101 or conn is None:
            raise RuntimeError("upgrade() needs a 101 answer to a request sent with upgrade=")
        self._idle = None  # a relay sets its own idle limits
        return Tunnel(self, conn)

    # -- fed by the connection

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._queued += len(data)
        if self._queued >= HIGH_WATER and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _finish(self, error: BaseException | None = None) -> None:
        self._done = True
        self._error = error
        self._conn = None  # the connection is back in the pool, or closed
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Tunnel:
    """A switched connection to the upstream (after a 101): raw bytes both ways.

    ``await read()`` gives what the upstream sent, first the bytes that came with the
    101 head, then b"" once it closed; reading stops (the socket is paused) while
    ``HIGH_WATER`` bytes are unread. ``write()`` then ``await drain()`` sends, waiting
    while the socket's buffer is full. Neither waits with a timeout of its own: wrap
    them in ``asyncio.timeout`` for idle limits. ``close()`` ends the connection.
    """

    __slots__ = ("_conn", "_response")

    def __init__(self, response: UpstreamResponse, conn: Link) -> None:
        self._response = response
        self._conn = conn

    async def read(self) -> bytes:
        return await self._response.read()

    def write(self, data: bytes) -> None:
        self._conn.send(data)

    async def drain(self) -> None:
        await self._conn.drained(None)

    def close(self) -> None:
        self._conn.close()
