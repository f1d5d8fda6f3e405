"""A TLS listener that tells plain HTTP apart: a connection's first byte says what it speaks.

A TLS client's first record is a handshake (byte 0x16). Anything else is a client that
sent plain HTTP to the https port (``http://`` where ``https://`` was meant): it gets a
400 saying so, in plain HTTP, as nginx answers, instead of a connection closed without a
word. The byte is peeked (``MSG_PEEK``), not read, so that asyncio's TLS layer
(``loop.connect_accepted_socket``) or the plain connection reads the stream from its
start. A connection that sends nothing within the head deadline is closed, as a plain
listener's would be, and so is a handshake not done by then. Connections not yet past
their first byte or handshake are at most ``max_pending``: beyond, the oldest is dropped,
so a flood of silent connections holds a bounded number of descriptors and cannot lock a
real client out.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

HANDSHAKE: Final = 0x16  # the TLS record type every ClientHello starts with
ACCEPT_BATCH: Final = 100  # connections accepted per wake-up (asyncio's server: its backlog)
ACCEPT_RETRY: Final = 1.0  # seconds accept() rests when the process is out of descriptors
# accept() errors that mean "not now" (asyncio's own server rests on the same ones).
_RESOURCES: Final = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

Factory = Callable[[], asyncio.Protocol]


def bind(host: str, port: int, *, reuse_port: bool, backlog: int) -> list[socket.socket]:
    """Listening sockets on every address ``host`` names, as ``loop.create_server`` binds."""
    found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners


class TlsListener:
    """Accepts on ``sockets``; TLS connections get ``tls``'s protocol, others ``plain``'s."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: list[socket.socket],
        context: ssl.SSLContext,
        *,
        tls: Factory,
        plain: Factory,
        first_byte_timeout: float,
        max_pending: int,
    ) -> None:
        self._loop = loop
        self.sockets = sockets
        self._context = context
        self._tls = tls
        self._plain = plain
        self._timeout = first_byte_timeout
        self._max_pending = max_pending
        # Both in arrival order (dicts): the oldest is the first dropped.
        self._waiting: dict[socket.socket, asyncio.TimerHandle] = {}
        self._connecting: dict[asyncio.Task[None], None] = {}
        self._closed = False
        for sock in sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop accepting; drop connections still silent or in their handshake."""
        self._closed = True
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        for conn in list(self._waiting):
            self._forget(conn)
            conn.close()
        for task in list(self._connecting):
            task.cancel()

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):  # what waits in the backlog, a batch a loop turn
            try:
                conn, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                if err.errno in _RESOURCES:  # out of descriptors: rest, then try again
                    log.warning("accept() failed (%s); retrying in %.0f s", err, ACCEPT_RETRY)
                    self._loop.remove_reader(listener.fileno())
                    self._loop.call_later(ACCEPT_RETRY, self._resume, listener)
                return  # ECONNABORTED and the like: that connection is gone
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self._waiting) + len(self._connecting) >= self._max_pending:
                self._drop_oldest()
            self._waiting[conn] = self._loop.call_later(self._timeout, self._silent, conn)
            self._loop.add_reader(conn.fileno(), self._sniff, conn)

    def _drop_oldest(self) -> None:
        if self._waiting:
            self._silent(next(iter(self._waiting)))
        elif self._connecting:
            task = next(iter(self._connecting))
            del self._connecting[task]
            task.cancel()

    def _resume(self, listener: socket.socket) -> None:
        if not self._closed:
            self._loop.add_reader(listener.fileno(), self._accept, listener)

    def _sniff(self, conn: socket.socket) -> None:
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset before a byte came
            first = b""
        self._forget(conn)
        if not first:
            conn.close()
            return
        task = self._loop.create_task(self._connect(conn, tls=first[0] == HANDSHAKE))
        self._connecting[task] = None
        task.add_done_callback(lambda done: self._connecting.pop(done, None))

    async def _connect(self, conn: socket.socket, *, tls: bool) -> None:
        try:
            if tls:
                await self._loop.connect_accepted_socket(
                    self._tls, conn, ssl=self._context, ssl_handshake_timeout=self._timeout
                )
            else:
                await self._loop.connect_accepted_socket(self._plain, conn)
        except (OSError, ssl.SSLError, TimeoutError):
            # A failed or abandoned handshake: nothing to answer in any protocol.
            conn.close()
        except asyncio.CancelledError:  # the listener closed during the handshake
            conn.close()
            raise

    def _silent(self, conn: socket.socket) -> None:
        """Nothing came within the head deadline."""
        self._forget(conn)
        conn.close()

    def _forget(self, conn: socket.socket) -> None:
        self._loop.remove_reader(conn.fileno())
        timer = self._waiting.pop(conn, None)
        if timer is not None:
            timer.cancel()
