"""Raw upstreams for tests: asyncio TCP servers on 127.0.0.1 that answer byte for byte
what each test scripts (malformed answers no HTTP library would write)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Raw:
    """A TCP server running ``script`` for each connection; counts connections."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.url = ""
        self.handlers: list[tuple[asyncio.Task[object], asyncio.StreamWriter]] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append((task, writer))
        try:
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[Raw]:
    raw = Raw(script)
    server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    raw.url = f"http://127.0.0.1:{port}"
    try:
        yield raw
    finally:
        server.close()
        for _, writer in raw.handlers:
            writer.transport.abort()  # scripts waiting for the client's close end now
        await asyncio.gather(*(task for task, _ in raw.handlers), return_exceptions=True)
        await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def answering(*answers: bytes, then_close: bool = False) -> Script:
    """Each request on a connection gets the next answer."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await read_head(reader)
            writer.write(answer)
            await writer.drain()
        if not then_close:
            await reader.read()  # keep the connection open until the client closes it

    return script


def in_turn(*answers: bytes) -> Script:
    """The n-th request to the server, on whichever connection it comes, gets the n-th
    answer (a connection the client gave up on does not start the list again)."""
    queue = list(answers)

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while queue:
            await read_head(reader)
            writer.write(queue.pop(0))
            await writer.drain()
        await reader.read()

    return script
