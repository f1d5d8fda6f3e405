"""An upstream answer as its caller sees it: status, head, a body read with back-pressure,
and, after a 101, the switched connection's transport (:meth:`UpstreamResponse.upgrade`)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final, Protocol

from multidict import CIMultiDictProxy

from .errors import UpstreamBroken, expire

HIGH_WATER: Final = 256 * 1024  # body bytes queued for the client before we stop reading


class Link(Protocol):
    """What an answer needs of the connection it arrives on."""

    loop: asyncio.AbstractEventLoop
    timeout: float

    def pause(self) -> None: ...  # stop reading from the socket
    def resume(self) -> None: ...
    def abort(self) -> None: ...
    def detach(self) -> asyncio.Transport | None: ...  # hand the socket over (after a 101)


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

    def upgrade(self) -> tuple[asyncio.Transport, bytes]:
        """After a 101 to a request sent with ``upgrade=``: the connection's transport and
        the bytes that came after the head.

        The caller owns the transport from here on (it sets its own protocol and its own
        idle limits); the connection never returns to the pool. RuntimeError for any other
        answer; UpstreamBroken if the upstream closed the connection already.
        """
        if self.status != 101:
            raise RuntimeError("upgrade() needs a 101 answer to a request sent with upgrade=")
        conn, self._conn = self._conn, None
        transport = None if conn is None else conn.detach()
        if transport is None:
            raise UpstreamBroken("upstream closed the connection after switching protocols")
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._queued = 0
        return transport, data

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
