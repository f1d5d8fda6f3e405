"""A real webhook receiver: an aiohttp app on a socket that records what it is sent.

``answer(request_number, event_id) -> status`` decides each answer (200 by default); while
``hold`` is set, requests wait until it is released, like a receiver that hangs. Each
request is recorded with its headers and body as they arrived.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    answer: Callable[[int, str], int] = lambda number, event_id: 200
    received: list[Received] = field(default_factory=list)
    hold: asyncio.Event | None = None  # set: every request waits for release()
    waiting: int = 0
    peak: int = 0  # the most requests waiting at once
    server: TestServer | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def close(self) -> None:
        self.release()
        if self.server is not None:
            await self.server.close()

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    def hang(self) -> None:
        self.hold = asyncio.Event()

    def release(self) -> None:
        if self.hold is not None:
            self.hold.set()
            self.hold = None

    def count(self) -> Counter[str]:
        """How many times each event id arrived."""
        return Counter(item.event_id for item in self.received)

    def types(self) -> list[str]:
        return [json.loads(item.body)["type"] for item in self.received]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        item = Received({k.lower(): v for k, v in request.headers.items()}, body)
        self.received.append(item)
        number = len(self.received)
        if self.hold is not None:
            self.waiting += 1
            self.peak = max(self.peak, self.waiting)
            try:
                await self.hold.wait()
            finally:
                self.waiting -= 1
        return web.Response(status=self.answer(number, item.event_id))
