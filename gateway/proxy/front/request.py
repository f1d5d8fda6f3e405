"""A client's request as the handler sees it: its head, its body as a stream, its answer.

The body arrives chunk by chunk as llhttp decodes it (chunked framing removed):
iterate the request (``async for chunk in request``) or call :meth:`Request.read`.
Buffered bytes beyond :data:`~.limits.BODY_HIGH_WATER` pause reading from the
client; a wait for more bytes longer than ``GATEWAY_BODY_TIMEOUT`` raises
:class:`~gateway.core.errors.RequestTimeout`, a client that goes away
:class:`~gateway.core.errors.ClientClosed`. ``Expect: 100-continue`` is answered when
the body is first read, i.e. after authentication: a refused client never sends it.

The answer is one of: :meth:`Request.respond` (a whole answer, in one write), or
:meth:`Request.start`, then :meth:`Request.write` as often as needed and
:meth:`Request.end` (a stream: ``Content-Length`` when the headers give one, else
chunked to HTTP/1.1 clients and until the connection closes for HTTP/1.0), or
:meth:`Request.tunnel` after the upstream switched protocols (WebSocket).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Protocol

from multidict import CIMultiDict

from gateway.core.errors import ClientClosed, TollgateError

from . import response
from .limits import BODY_HIGH_WATER

Headers = Mapping[str, str] | CIMultiDict[str]

# How the body of an answer is framed.
_RAW, _CHUNKED, _UNTIL_CLOSE, _NO_BODY = range(4)


class Channel(Protocol):
    """What a request needs of the client connection it came on."""

    loop: asyncio.AbstractEventLoop

    @property
    def gone(self) -> bool: ...
    @property
    def writing_paused(self) -> bool: ...
    def closes_after(self, request: Request) -> bool: ...
    def send(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def cut(self) -> None: ...
    def pause_body(self) -> None: ...
    def resume_body(self) -> None: ...
    def waiting_for_body(self, request: Request, waiting: bool) -> None: ...
    async def tunnel(self, upstream: asyncio.Transport, leftover: bytes) -> None: ...


class App(Protocol):
    """What answers the requests of a connection (:class:`~gateway.proxy.handler.Handler`)."""

    async def __call__(self, request: Request) -> None:
        """Answer ``request`` (never raises: every failure is an answer)."""

    def rejected(self, err: TollgateError, method: str, path: str, started: float) -> str:
        """Count and log a request refused before it could be handled; the request id."""


class Request:
    """One request: the head as parsed, the body to read, the answer to give."""

    __slots__ = (
        "_body_done",
        "_channel",
        "_chunks",
        "_close",
        "_error",
        "_expect_continue",
        "_framing",
        "_queued",
        "_waiter",
        "complete",
        "content_length",
        "has_body",
        "headers",
        "keep_alive",
        "method",
        "path",
        "peer",
        "query",
        "scheme",
        "started",
        "status",
        "target",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        channel: Channel,
        *,
        method: str,
        target: str,
        path: str,
        query: str,
        headers: CIMultiDict[str],
        version: str,
        keep_alive: bool,
        content_length: int | None,
        has_body: bool,
        peer: str | None,
        scheme: str = "http",
        upgrade: str | None = None,
        started: float = 0.0,
    ) -> None:
        self._channel = channel
        self.method = method
        self.target = target  # the request target exactly as received
        self.path = path  # its path part, still percent-encoded
        self.query = query  # its query string, without the "?"
        self.headers = headers  # as received, in order (read them, do not change them)
        self.version = version  # "1.1" or "1.0"
        self.keep_alive = keep_alive  # what the client asked for
        self.content_length = content_length  # None: chunked, or no body
        self.has_body = has_body
        self.peer = peer  # the client's address
        self.scheme = scheme
        self.upgrade = upgrade  # "websocket" for a WebSocket handshake, else None
        self.started = started  # time.perf_counter() at the request's first byte
        self.status: int | None = None  # the status sent, once an answer went out
        self.complete = False  # the whole answer was handed to the connection
        self._expect_continue = has_body and headers.get("Expect", "").lower() == "100-continue"
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._body_done = not has_body
        self._error: TollgateError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._framing = _RAW
        self._close = False

    # ------------------------------------------------------------ the body

    async def read(self) -> bytes:
        """The next body bytes (all that arrived), or b"" at the end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._body_done:
                return b""
            channel = self._channel
            if self._expect_continue:
                self._expect_continue = False
                if self.status is None:
                    channel.send(response.CONTINUE)
            self._waiter = waiter = channel.loop.create_future()
            channel.waiting_for_body(self, True)
            try:
                await waiter
            finally:
                self._waiter = None
                channel.waiting_for_body(self, False)
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if self._queued >= BODY_HIGH_WATER:
            self._channel.resume_body()
        self._queued = 0
        return data

    def __aiter__(self) -> Request:
        return self

    async def __anext__(self) -> bytes:
        data = await self.read()
        if not data:
            raise StopAsyncIteration
        return data

    @property
    def body_done(self) -> bool:
        """The client has sent its whole body (true at once for a request without one)."""
        return self._body_done

    # -- fed by the connection

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._queued += len(data)
        if self._queued >= BODY_HIGH_WATER:
            self._channel.pause_body()
        self._wake()

    def end_body(self) -> None:
        self._body_done = True
        self._wake()

    def fail_body(self, error: TollgateError) -> None:
        """The body will not arrive (stalled, or the client left): readers get ``error``."""
        if not self._body_done and self._error is None:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ the answer

    def respond(
        self, status: int, headers: Headers, body: bytes = b"", *, reason: str | None = None
    ) -> None:
        """Send a whole answer (``Content-Length`` from ``body``) in one write."""
        if self.status is not None:
            raise RuntimeError("this request has been answered already")
        channel = self._channel
        self._close = close = channel.closes_after(self)
        bodiless = status < 200 or status in (204, 304)
        tail = "" if bodiless else f"Content-Length: {len(body)}\r\n"  # HEAD's too
        if close:
            tail += response.CLOSE
        elif self.version == "1.0":
            tail += response.KEEP_ALIVE
        data = response.head(status, reason, headers.items(), tail)
        if body and not bodiless and self.method != "HEAD":
            data += body
        if not channel.gone:
            self.status = status
            channel.send(data)
        self.complete = True

    def start(self, status: int, headers: Headers, *, reason: str | None = None) -> None:
        """Send the head of a streamed answer; the body follows with :meth:`write`."""
        if self.status is not None:
            raise RuntimeError("this request has been answered already")
        channel = self._channel
        close = channel.closes_after(self)
        if response.no_body(self.method, status):
            framing, tail = _NO_BODY, ""  # the upstream's Content-Length stays as it was
        elif "Content-Length" in headers:
            framing, tail = _RAW, ""
        elif self.version == "1.1":
            framing, tail = _CHUNKED, response.CHUNKED
        else:
            framing, tail, close = _UNTIL_CLOSE, "", True
        if status == 101:
            close = True  # the connection carries the new protocol: its headers say so
        elif close:
            tail += response.CLOSE
        elif self.version == "1.0":
            tail += response.KEEP_ALIVE
        self._framing, self._close = framing, close
        if channel.gone:
            raise ClientClosed()
        self.status = status
        channel.send(response.head(status, reason, headers.items(), tail))

    async def write(self, data: bytes) -> None:
        """Send body bytes; waits while the client is not reading (bounded buffer).

        Raises :class:`ClientClosed` when the client went away, or
        :class:`~gateway.core.errors.RequestTimeout` when it read nothing for
        ``GATEWAY_WRITE_TIMEOUT``.
        """
        framing = self._framing
        if not data or framing == _NO_BODY:
            return
        channel = self._channel
        if framing == _CHUNKED:
            channel.send(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            channel.send(data)
        if channel.writing_paused or channel.gone:  # no coroutine while all is well
            await channel.drain()

    def end(self) -> None:
        """The streamed answer is complete."""
        if self._framing == _CHUNKED and not self._channel.gone:
            self._channel.send(response.LAST_CHUNK)
        self.complete = True

    def cut(self) -> None:
        """Abort the connection: the only way left to say a started answer is incomplete."""
        self._channel.cut()

    @property
    def closes(self) -> bool:
        """The connection closes after this answer."""
        return self._close

    @property
    def gone(self) -> bool:
        """The client's connection is closed."""
        return self._channel.gone

    async def tunnel(
        self,
        status: int,
        headers: Headers,
        upstream: asyncio.Transport,
        leftover: bytes,
        *,
        reason: str | None = None,
    ) -> None:
        """Send the upstream's 101 head, then relay bytes both ways until either side
        closes (or the relay is idle for ``GATEWAY_WEBSOCKET_TIMEOUT``)."""
        try:
            self.start(status, headers, reason=reason)
        except ClientClosed:
            upstream.abort()
            raise
        self.complete = True
        await self._channel.tunnel(upstream, leftover)
