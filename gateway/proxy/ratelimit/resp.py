"""The limiter's Redis connection: one pipelined connection, RESP by hiredis.

Why not ``redis.asyncio``: a general client pays per command for a connection pool
with its locks and conditions, retry wrappers, command and response callbacks;
measured here, about 400 µs of CPU per ``EVALSHA`` on a loaded 2-core machine, as much
as the rest of a proxied request. The limiter sends one command per request, always
to one server, so this client keeps one connection and pipelines every command on it
(replies come back in order, each to the future waiting first); the commands of one
event-loop iteration leave in one write. About 15 µs a command. The protocol itself is
hiredis' (``pack_command`` and ``Reader``, the C parser the Redis project maintains):
this module only pairs replies with the commands waiting for them.

``REDIS_URL`` as redis-py reads it: ``redis://[[user]:password@]host[:port][/db]``,
``rediss://`` (TLS, the certificate and host name verified), ``unix:///path?db=N``;
``AUTH`` and ``SELECT`` are sent when the connection opens.

Errors: the server's error replies raise :class:`ReplyError` (``NOSCRIPT``:
:class:`NoScript`); a connection that cannot be made or breaks raises
:class:`ConnectionError`, no reply within ``timeout`` :class:`TimeoutError` (both
``OSError``), and the connection is then dropped, so the next command opens a new
one. A command that finds a reused connection broken is sent again once on a new
connection, as redis-py's ``Retry`` on ``ConnectionError`` did; a timeout is not (the
server may have run the command).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

Reply = bytes | int | None | list["Reply"]


class ReplyError(Exception):
    """The server answered with an error."""


class NoScript(ReplyError):
    """``EVALSHA`` of a script the server does not hold (restarted, or flushed)."""


def encode(args: tuple[bytes | str | int, ...]) -> bytes:
    """A command as RESP (hiredis' encoder)."""
    return hiredis.pack_command(args)  # type: ignore[arg-type,no-any-return]  # stub: one argument


def reader() -> hiredis.Reader:
    """A RESP parser (hiredis, the C parser Redis maintains): error replies come out as
    :class:`ReplyError` values (:class:`NoScript` is told apart by :func:`reply_error`)."""
    return hiredis.Reader(replyError=ReplyError)


def reply_error(err: ReplyError) -> ReplyError:
    """``NOSCRIPT`` as its own class: the caller then sends the script itself."""
    return NoScript(*err.args) if str(err).startswith("NOSCRIPT") else err


class _Connection(asyncio.Protocol):
    """One pipelined connection: commands go out in order, replies come back in order.

    Every command gets ``timeout`` seconds for its reply. All have the same timeout, so
    the oldest one waiting always expires first: one timer per connection, at the oldest
    command's deadline, re-armed when it fires early, instead of a timer per command.
    """

    def __init__(self, timeout: float, expired: Callable[[_Connection], None]) -> None:
        # Kept, not asked for per command: on Python 3.11, asyncio.get_running_loop()
        # makes a getpid() system call each time (it checks for a fork).
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Reply]] = deque()
        self._deadlines: deque[float] = deque()  # the loop time each waiting reply is due
        self._watch: asyncio.TimerHandle | None = None
        self._expired = expired
        self.reader = reader()
        self.lost = False
        self.used = False  # a command was answered on it: it is a reused connection now
        self._out: list[bytes] = []  # commands of this loop iteration, sent in one write

    def send(self, command: bytes, future: asyncio.Future[Reply]) -> None:
        loop = self.loop
        deadline = loop.time() + self.timeout
        self.waiting.append(future)
        self._deadlines.append(deadline)
        if self._watch is None:
            self._watch = loop.call_at(deadline, self._check)
        if not self._out:
            loop.call_soon(self._flush)
        self._out.append(command)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None:
            self.transport.write(b"".join(out))

    def _check(self) -> None:
        """The watch timer: the oldest reply is overdue (the connection is given up), or
        the timer waits for the oldest deadline now."""
        self._watch = None
        if not self._deadlines:
            return
        due = self._deadlines[0]
        if due > self.loop.time():
            self._watch = self.loop.call_at(due, self._check)
            return
        oldest = self.waiting[0]
        if not oldest.done():
            oldest.set_exception(TimeoutError(f"no reply from Redis within {self.timeout:g} s"))
        self.fail(TimeoutError("an earlier command on this connection timed out"))
        self._expired(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                self._answer(reply)
        except (hiredis.ProtocolError, ReplyError) as err:  # out of step: give up on it
            self.fail(ConnectionError(f"unreadable reply from Redis: {err}"))

    def _answer(self, reply: Reply | ReplyError) -> None:
        if not self.waiting:
            raise ReplyError("a reply nothing asked for")
        future = self.waiting.popleft()
        self._deadlines.popleft()
        self.used = True
        if future.done():  # timed out meanwhile
            return
        if isinstance(reply, ReplyError):
            future.set_exception(reply_error(reply))
        else:
            future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail_waiting(ConnectionError(f"Redis closed the connection ({exc or 'EOF'})"))

    def fail(self, err: Exception) -> None:
        """Drop the connection; every command waiting on it gets ``err``."""
        transport = self.transport
        self.transport = None
        if transport is not None:
            transport.abort()
        self._fail_waiting(err)

    def _fail_waiting(self, err: Exception) -> None:
        self.lost = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._deadlines.clear()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(err)


class RespClient:
    """Commands to one Redis server over one pipelined connection, opened on first use."""

    def __init__(self, url: str, *, timeout: float) -> None:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.timeout = timeout
        self._unix = parts.path if parts.scheme == "unix" else None
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        db = query.get("db", [parts.path.strip("/") if parts.scheme != "unix" else ""])[0]
        self._db = int(db) if db else 0
        password = unquote(parts.password) if parts.password else None
        user = unquote(parts.username) if parts.username else None
        self._hello: list[tuple[bytes | str | int, ...]] = []
        if password is not None:
            self._hello.append(("AUTH", user, password) if user else ("AUTH", password))
        if self._db:
            self._hello.append(("SELECT", self._db))
        self._conn: _Connection | None = None
        self._opening: asyncio.Future[_Connection] | None = None
        self._closed = False

    async def call(self, *args: bytes | str | int) -> Reply:
        """Send one command; its reply (error replies raise :class:`ReplyError`)."""
        for attempt in (0, 1):
            conn = await self._connection()
            reused = conn.used
            try:
                return await self._send(conn, encode(args))
            except ConnectionError:
                if attempt or not reused:
                    raise
        raise AssertionError("unreachable")

    async def _send(self, conn: _Connection, command: bytes) -> Reply:
        future: asyncio.Future[Reply] = conn.loop.create_future()
        conn.send(command, future)
        return await future

    def _expired(self, conn: _Connection) -> None:
        if self._conn is conn:
            self._conn = None

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.lost:
            return conn
        if self._closed:
            raise ConnectionError("the Redis client is closed")
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        opening = self._opening
        try:
            return await asyncio.shield(opening)
        finally:
            if self._opening is opening and opening.done():
                self._opening = None

    def _protocol(self) -> _Connection:
        return _Connection(self.timeout, self._expired)

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                if self._unix is not None:
                    _, conn = await loop.create_unix_connection(self._protocol, self._unix)
                else:
                    _, conn = await loop.create_connection(
                        self._protocol,
                        self._host,
                        self._port,
                        ssl=self._ssl,
                        server_hostname=self._host if self._ssl else None,
                    )
                for command in self._hello:
                    await self._send(conn, encode(command))
        except TimeoutError:
            raise TimeoutError(f"connecting to Redis took over {self.timeout:g} s") from None
        except ssl.SSLError as err:
            raise ConnectionError(f"TLS with Redis failed: {err.reason or err}") from None
        except ReplyError as err:
            raise ConnectionError(f"Redis refused the connection: {err}") from None
        except OSError as err:
            where = self._unix or f"{self._host}:{self._port}"
            raise ConnectionError(f"cannot connect to Redis at {where}: {err}") from None
        conn.used = False
        self._conn = conn
        return conn

    async def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail(ConnectionError("the Redis client is closed"))
