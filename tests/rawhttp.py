"""HTTP on raw sockets, for what a well-behaved client library cannot send or be:
malformed heads, slow or silent clients, clients that leave, upstreams that misbehave."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from httptools import HttpResponseParser
from multidict import CIMultiDict


@dataclass
class Answer:
    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def answers(data: bytes) -> list[Answer]:
    """Every complete answer in ``data``, in order (for answers with a body or framing)."""
    found: list[Answer] = []

    class Collect:
        def __init__(self) -> None:
            self.fields: list[tuple[str, str]] = []
            self.body = b""

        def on_message_begin(self) -> None:
            self.fields, self.body = [], b""

        def on_header(self, name: bytes, value: bytes) -> None:
            self.fields.append((name.decode(), value.decode()))

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            status = parser.get_status_code()
            found.append(Answer(status, CIMultiDict(self.fields), self.body))

    parser = HttpResponseParser(Collect())
    parser.feed_data(data)
    return found


def request_head(method: str, target: str, *fields: str) -> bytes:
    """``method target HTTP/1.1`` with ``Host`` and ``fields`` ("Name: value")."""
    return "\r\n".join([f"{method} {target} HTTP/1.1", "Host: gateway", *fields, "", ""]).encode()


def head_only(data: bytes) -> Answer:
    """The one answer in ``data`` that is a head alone (to HEAD): nothing may follow it."""
    head, end, rest = data.partition(b"\r\n\r\n")
    assert end and not rest, data
    status_line, *lines = head.decode().split("\r\n")
    fields = [tuple(line.split(": ", 1)) for line in lines]
    return Answer(int(status_line.split()[1]), CIMultiDict(fields), b"")


async def exchange(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection; everything received until the gateway closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def until_closed(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    """What arrives until the other side closes (TimeoutError if it does not)."""
    return await asyncio.wait_for(reader.read(), timeout)


def small_receive_buffer(size: int = 4096) -> socket.socket:
    """A client socket that can hold little unread data (set before connecting)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    sock.setblocking(False)
    return sock


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawUpstream:
    """An upstream on a raw socket, playing what a real app will not (a body that never
    ends, a 101 nobody asked for); ``ended`` counts connections that closed."""

    serve: Serve
    ended: int = 0
    sent: int = 0  # body bytes a streaming ``serve`` managed to write
    url: str = ""
    server: asyncio.Server | None = field(default=None, repr=False)

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.ended += 1
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")
