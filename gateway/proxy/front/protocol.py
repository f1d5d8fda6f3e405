"""One client connection of the proxy listener: llhttp parses, the handler answers.

Requests are parsed by llhttp (``httptools.HttpRequestParser``, strict: none of its
leniency flags is on, so every smuggling shape — Content-Length with
Transfer-Encoding, two lengths, obsolete line folding, bare CR or LF — is refused)
as bytes arrive, and answered one at a time, in order: a pipelined request waits,
with reading paused, until the one before it is answered. Keep-alive as the client
asks, unless the answer closes (see :meth:`Connection.closes_after`).

Deadlines, all checked by one sweep per listener (:mod:`.connections`):

* head: ``header_timeout`` from the connection's opening, or from the first byte
  of a request after an answer, until its head is complete → 408, close;
* idle keep-alive: ``keepalive_timeout`` after an answer → closed silently;
* body: ``body_timeout`` while the handler waits for body bytes → the read raises
  :class:`~gateway.core.errors.RequestTimeout` (408 if no answer started);
* write: ``write_timeout`` while the client reads nothing of what waits for it →
  the connection is aborted;
* a relayed WebSocket idle both ways for ``websocket_timeout`` → both closed.

Refusals the connection makes itself (an unparsable head, a head too large or too
slow, ``OPTIONS *``, ``CONNECT``, an upgrade other than WebSocket, a full server)
get the JSON error shape with ``X-Request-Id`` and ``Connection: close``, are logged
once through :meth:`~.request.App.rejected`, and never echo what the client sent
(:mod:`.head` says what a head must be). The connection then stops answering but
reads (and drops) input for a moment, so a client still sending receives the answer
instead of a reset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Final, NoReturn, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser
from multidict import CIMultiDict

from gateway.core.errors import (
    ClientClosed,
    RequestTimeout,
    ServiceUnavailable,
    TollgateError,
    URITooLong,
)

from . import head, response
from .connections import INF, Connections
from .limits import LINGER, MAX_FIELD, MAX_FIELDS, MAX_HEAD, MAX_TARGET, WRITE_HIGH_WATER
from .request import Request
from .tunnel import Tunnel

log = logging.getLogger(__name__)

MAX_PIPELINED: Final = 32  # parsed requests waiting for their turn; past that, parsing stops

# Why reading from the client is paused (bits: it resumes when none is left).
_BODY: Final = 1  # the handler has not read the body buffered so far
_QUEUE: Final = 2  # a whole pipelined request waits for the one before it
_HOLD: Final = 4  # waiting: for an upgrade's answer, or to answer a refusal


class _Stop(Exception):
    """Raised in a parser callback to stop parsing (the reason is kept on the connection)."""


class Connection(asyncio.Protocol):
    # Slots: thousands of connections may be open; a dict each would double their size.
    __slots__ = (
        "_app",
        "_close_when_idle",
        "_drain",
        "_fields",
        "_fields_size",
        "_head_size",
        "_held",
        "_hub",
        "_ignore_input",
        "_in_head",
        "_kept_alive",
        "_limits",
        "_lingering",
        "_overflowed",
        "_parser",
        "_parsing",
        "_paused",
        "_peer",
        "_plain_on_tls",
        "_queue",
        "_reader",
        "_refusal",
        "_started",
        "_stopped",
        "_task",
        "_tunnel",
        "_url",
        "_write_paused",
        "_write_timed_out",
        "loop",
        "read_deadline",
        "transport",
        "write_deadline",
    )

    def __init__(self, hub: Connections, *, plain_on_tls: bool = False) -> None:
        self._hub = hub
        # Plain HTTP that reached the TLS listener: each head is answered with a 400.
        self._plain_on_tls = plain_on_tls
        self._app = hub.app
        self._limits = hub.limits
        self.loop = hub.loop
        self.transport: asyncio.Transport | None = None
        self._parser = HttpRequestParser(self)
        self._peer: str | None = None
        self.read_deadline = INF
        self.write_deadline = INF
        # The head being received.
        self._in_head = False
        self._kept_alive = False  # idle after an answer: the head deadline starts at a byte
        self._head_size = 0  # bytes received since the last complete head
        self._fields_size = 0  # bytes of this head's complete fields
        self._url = b""
        self._fields: list[tuple[str, str]] = []
        self._started = 0.0
        self._stopped: TollgateError | None = None  # why a callback stopped the parser
        self._overflowed = False  # parsing stopped: too many pipelined requests
        # Requests.
        self._parsing: Request | None = None  # its head is complete, its body may not be
        self._queue: deque[Request] = deque()  # complete heads waiting for their turn
        self._task: asyncio.Task[None] | None = None  # answering, one request after another
        self._reader: Request | None = None  # waiting for body bytes
        # Flow control.
        self._paused = 0
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._write_timed_out = False
        # Ending.
        self._ignore_input = False
        self._refusal: TollgateError | None = None  # answered after the requests before it
        self._close_when_idle = False
        self._lingering = False
        self._held: bytearray | None = None  # what followed an upgrade head, for the tunnel
        self._tunnel: Tunnel | None = None

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport has the Transport methods without subclassing it.
        self.transport = t = cast(asyncio.Transport, transport)
        peer = t.get_extra_info("peername")
        self._peer = peer[0] if isinstance(peer, tuple) else None
        t.set_write_buffer_limits(WRITE_HIGH_WATER)
        self.read_deadline = self.loop.time() + self._limits.header_timeout
        if not self._hub.opened(self):
            if self._hub.flooded():
                t.abort()  # answering each one of a flood would exhaust descriptors
                return
            self._started = time.perf_counter()
            self._refuse(
                ServiceUnavailable(
                    "too many open connections; retry later", headers={"Retry-After": "1"}
                )
            )

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel.from_client(data)
            return
        if self._ignore_input:
            if self._held is not None:
                self._held += data  # at most one read more: reading is paused
            return
        if self._parsing is None:  # not inside a body: these bytes count against the head
            self._head_size += len(data)
        failure: TollgateError | None = None
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as upgrade:
            # A WebSocket handshake (others were refused in on_headers_complete): what
            # follows is the new protocol's, for the tunnel if the upstream agrees.
            self._held = bytearray(data[upgrade.args[0] :])
            self._ignore_input = True
            self._pause(_HOLD)
        except HttpParserError as err:
            failure = self._failed(err)
        else:
            if self._in_head and self._head_size > MAX_HEAD:  # a head that has not ended yet
                failure = head.too_large()
        # Started only now: llhttp checks some framing (Transfer-Encoding) after its
        # on_headers_complete, so a head is valid once feed_data() did not refuse it.
        if self._task is None and self._queue:
            self._begin(self._queue.popleft())
        if failure is not None:
            self._refuse(failure)

    def _failed(self, err: HttpParserError) -> TollgateError | None:
        """llhttp stopped: what is left to refuse (None when an answer covers it already)."""
        stopped, self._stopped = self._stopped, None
        failure = stopped or head.malformed(err)
        request, self._parsing = self._parsing, None
        self._ignore_input = True
        self._pause(_HOLD)
        if self._overflowed:  # too many pipelined: answer those, then close
            return None
        if request is not None and request not in self._queue:
            # Its handler runs (the body broke later): reading it fails, that is the answer.
            request.fail_body(failure)
            self._close_when_idle = True
            return None
        if request is not None:
            self._queue.remove(request)  # never started: the refusal is its only answer
        return failure

    def eof_received(self) -> bool:
        # The client stopped sending: it left, as nginx and aiohttp take it too (HTTP
        # clients do not half-close to wait for an answer). The transport closes.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._hub.closed(self)
        self.read_deadline = self.write_deadline = INF
        # Let go of the request still arriving: it points back at this connection, and the
        # cycle (with the body bytes it buffered, up to BODY_HIGH_WATER) would otherwise
        # wait for the cyclic collector, which runs seldom in the workers.
        parsing, self._parsing = self._parsing, None
        if parsing is not None:
            parsing.fail_body(ClientClosed())
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        if self._tunnel is not None:
            self._tunnel.client_lost()
        while self._queue:  # parsed, never answered: still one log line each
            request = self._queue.popleft()
            self._app.rejected(ClientClosed(), request.method, request.path, request.started)

    def pause_writing(self) -> None:
        self._write_paused = True
        self.write_deadline = self.loop.time() + self._limits.write_timeout
        if self._tunnel is not None:
            self._tunnel.client_full()

    def resume_writing(self) -> None:
        self._write_paused = False
        self.write_deadline = INF
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        if self._tunnel is not None:
            self._tunnel.client_ready()

    # ------------------------------------------------------------ llhttp callbacks

    def on_message_begin(self) -> None:
        if len(self._queue) >= MAX_PIPELINED:
            self._close_when_idle = self._overflowed = True
            raise _Stop
        self._in_head = True
        self._url = b""
        self._fields = []
        self._fields_size = 0
        self._started = time.perf_counter()
        if self._kept_alive:
            self._kept_alive = False
            self.read_deadline = self.loop.time() + self._limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_TARGET:
            self._stop(head.too_long())

    def on_header(self, name: bytes, value: bytes) -> None:
        fields = self._fields
        size = len(name) + len(value)
        self._fields_size += size
        if size > MAX_FIELD or len(fields) >= MAX_FIELDS or self._fields_size > MAX_HEAD:
            self._stop(head.too_large())
        # Names are tokens (llhttp checked them); values go upstream byte for byte.
        fields.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._in_head = False
        self._head_size = 0
        version = parser.get_http_version()
        method = parser.get_method().decode("ascii")
        headers = CIMultiDict(self._fields)
        try:
            head.check_version(version)
            head.check_host(headers, version)
            length, has_body = head.body_framing(headers)
            upgrade = None
            if parser.should_upgrade():
                upgrade = head.upgrade_protocol(method, version, headers, has_body)
            path, query = head.split_target(self._url)
            if self._plain_on_tls:
                raise head.plain_http_to_tls()
        except TollgateError as err:
            self._stop(err)
        request = Request(
            self,
            method=method,
            target=self._url.decode("latin-1"),
            path=path,
            query=query,
            headers=headers,
            version=version,
            keep_alive=parser.should_keep_alive(),
            content_length=length,
            has_body=has_body,
            peer=self._peer,
            scheme=self._hub.scheme,
            upgrade=upgrade,
            started=self._started,
        )
        self._parsing = request
        self._queue.append(request)

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        assert request is not None
        request.feed(body)

    def on_message_complete(self) -> None:
        request, self._parsing = self._parsing, None
        assert request is not None
        request.end_body()
        if self._task is not None and self._queue and self._queue[-1] is request:
            self._pause(_QUEUE)  # it waits for the answer before it: read no further

    def _stop(self, err: TollgateError) -> NoReturn:
        self._stopped = err
        raise _Stop

    # ------------------------------------------------------------ answering in turn

    def _begin(self, request: Request) -> None:
        self._hub.working(self)
        self.read_deadline = INF
        self._task = self.loop.create_task(self._answer(request))

    async def _answer(self, request: Request) -> None:
        """Answer ``request``, then each pipelined one after it."""
        app = self._app
        while True:
            try:
                await app(request)
            except Exception:
                log.exception("unhandled error answering %s %s", request.method, request.path)
            if not request.complete:  # no answer, or a stream left unfinished: cut
                self.cut()
            if self.gone:
                return
            if request.closes:
                self._task = None
                self._close_after(request)
                return
            if self._write_paused:  # no more answers pile up for a client that does not read
                try:
                    await self.drain()
                except TollgateError:
                    return
            if not self._queue:
                break
            request = self._queue.popleft()
            self._resume(_QUEUE)
        self._task = None
        self._rest()

    def _rest(self) -> None:
        """Every answer is out: wait for the next request (or close)."""
        if self._refusal is not None:
            self._answer_refusal(self._refusal)
            return
        if self._close_when_idle or self._hub.draining:
            self._close_after(None)
            return
        self._hub.resting(self)
        if self._in_head:  # the next head started arriving: its deadline runs from now
            self.read_deadline = self.loop.time() + self._limits.header_timeout
        else:
            self._kept_alive = True
            self.read_deadline = self.loop.time() + self._limits.keepalive_timeout

    def _close_after(self, request: Request | None) -> None:
        transport = self.transport
        if transport is None:
            return
        if request is not None and not request.body_done:
            self._linger()  # the client may still be sending: let it see the answer
        else:
            transport.close()

    # ------------------------------------------------------------ refusals

    def _refuse(self, err: TollgateError) -> None:
        """Answer ``err`` once the answers before it are out, then close."""
        self._ignore_input = True
        self._held = None
        self._pause(_HOLD)
        if self._task is not None:
            self._refusal = err
        else:
            self._answer_refusal(err)

    def _answer_refusal(self, err: TollgateError) -> None:
        self._refusal = None
        method, path = "-", "-"
        if self._url:  # the method was parsed, and the path at least begun
            method = self._parser.get_method().decode("ascii")
            if not isinstance(err, URITooLong):
                path = self._url.decode("latin-1").partition("?")[0]
        request_id = self._app.rejected(err, method, path, self._started)
        self.send(response.error_answer(err, request_id, method=method))
        self._linger()

    def _linger(self) -> None:
        """Close after what was sent, reading and dropping input meanwhile (for at most
        :data:`LINGER` seconds): closing with unread input would reset the connection,
        and the client might lose the answer."""
        transport = self.transport
        self._hub.working(self)  # not idle: it is closing
        if transport is None:
            return
        if not transport.can_write_eof():
            transport.close()
            return
        self._ignore_input = True
        self._lingering = True
        try:
            transport.write_eof()
        except OSError:  # the client is gone already
            transport.abort()
            return
        if self._paused:
            self._paused = 0
            transport.resume_reading()
        self.read_deadline = self.loop.time() + LINGER

    # ------------------------------------------------------------ deadlines (the sweep)

    def read_expired(self) -> None:
        self.read_deadline = INF
        transport = self.transport
        if transport is None:
            return
        if self._tunnel is not None:
            self._tunnel.close()
        elif self._lingering:
            transport.close()
        elif self._reader is not None:
            self._reader.fail_body(
                RequestTimeout(
                    f"the request body stalled for {self._limits.body_timeout:g} s; "
                    "send it without pauses"
                )
            )
        elif self._task is not None:
            return
        elif self._in_head:
            self._refuse(
                RequestTimeout(
                    f"the request head did not arrive within {self._limits.header_timeout:g} s"
                )
            )
        else:
            transport.close()  # idle keep-alive, or a connection that never sent a byte

    def write_expired(self) -> None:
        self.write_deadline = INF
        self._write_timed_out = True
        if self.transport is not None:
            self.transport.abort()

    def stop(self) -> asyncio.Task[None] | None:
        """Cut the connection and cancel what its handler still does (the server stops)."""
        self.cut()
        task = self._task
        if task is not None:
            task.cancel()
        return task

    def shed(self) -> None:
        """Close now: it is idle and a new connection needs the room (or the server stops)."""
        self._hub.working(self)
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------ what requests use

    @property
    def gone(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    @property
    def writing_paused(self) -> bool:
        return self._write_paused

    def closes_after(self, request: Request) -> bool:
        """Whether the connection closes after the answer to ``request``: the client asked
        (or spoke HTTP/1.0 without keep-alive), its body is not all here (it could not be
        skipped reliably), it was an upgrade, the server is stopping, or input stopped."""
        return (
            not request.keep_alive
            or not request.body_done
            or request.upgrade is not None
            or self._hub.draining
            or self._limits.keepalive_timeout == 0
            or (self._close_when_idle and not self._queue)
        )

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    async def drain(self) -> None:
        """Wait until the client has read enough of what is buffered for it."""
        while self._write_paused and self.transport is not None:
            self._drain = waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._drain = None
        if self.gone:
            if self._write_timed_out:
                raise RequestTimeout(
                    f"the client read nothing for {self._limits.write_timeout:g} s"
                )
            raise ClientClosed()

    def cut(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def pause_body(self) -> None:
        self._pause(_BODY)

    def resume_body(self) -> None:
        self._resume(_BODY)

    def waiting_for_body(self, request: Request, waiting: bool) -> None:
        if waiting:
            self._reader = request
            self.read_deadline = self.loop.time() + self._limits.body_timeout
        else:
            self._reader = None
            self.read_deadline = INF

    async def tunnel(self, upstream: asyncio.Transport, leftover: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            upstream.abort()
            raise ClientClosed()
        relay = self._tunnel = Tunnel(transport, upstream, self._touch)
        held, self._held = self._held, None
        self._ignore_input = False
        if leftover:
            transport.write(leftover)
        if held:
            upstream.write(bytes(held))
        if self._paused:
            self._paused = 0
            transport.resume_reading()
        self._touch()
        try:
            await relay.done
        finally:
            relay.close()

    def _touch(self) -> None:
        self.read_deadline = self.loop.time() + self._limits.websocket_timeout

    # ------------------------------------------------------------ reading paused or not

    def _pause(self, reason: int) -> None:
        transport = self.transport
        if not self._paused and transport is not None and not transport.is_closing():
            transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            transport = self.transport
            if not self._paused and transport is not None and not transport.is_closing():
                transport.resume_reading()
