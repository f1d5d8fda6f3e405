"""The relay after the upstream switched protocols (a WebSocket): bytes both ways, as
they come, until either side closes.

It becomes the upstream connection's protocol (``transport.set_protocol``); the
client connection hands it what the client sends. Back-pressure both ways: a side
that cannot take more pauses reading from the other. Either side closing (or the
relay being idle, which the client connection's deadline watches) closes both;
what one side sent before closing is still delivered to the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Tunnel(asyncio.Protocol):
    def __init__(
        self,
        client: asyncio.Transport,
        upstream: asyncio.Transport,
        touch: Callable[[], None],
    ) -> None:
        self._client = client
        self._upstream = upstream
        self._touch = touch  # called on traffic either way: the idle deadline moves on
        self._client_open = True
        self._upstream_open = True
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        upstream.set_protocol(self)

    # ------------------------------------------------------------ the upstream side

    def data_received(self, data: bytes) -> None:
        self._client.write(data)
        self._touch()

    def eof_received(self) -> bool:
        self.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._upstream_open = False
        self._client.close()  # after what is buffered for it
        self._check_done()

    def pause_writing(self) -> None:
        _pause(self._client)

    def resume_writing(self) -> None:
        _resume(self._client)

    # ------------------------------------------------------------ the client side

    def from_client(self, data: bytes) -> None:
        self._upstream.write(data)
        self._touch()

    def client_full(self) -> None:
        """The client is not reading: stop reading what the upstream sends it."""
        _pause(self._upstream)

    def client_ready(self) -> None:
        _resume(self._upstream)

    def client_lost(self) -> None:
        self._client_open = False
        if self._upstream.get_write_buffer_size():
            # Nothing would time out an upstream that stopped reading: do not wait for it.
            self._upstream.abort()
        else:
            self._upstream.close()
        self._check_done()

    # ------------------------------------------------------------

    def close(self) -> None:
        """End the relay (either side closed, it idled, or the server stops)."""
        self._client.close()
        self._upstream.close()

    def _check_done(self) -> None:
        if not (self._client_open or self._upstream_open) and not self.done.done():
            self.done.set_result(None)


def _pause(transport: asyncio.Transport) -> None:
    if not transport.is_closing():
        transport.pause_reading()


def _resume(transport: asyncio.Transport) -> None:
    if not transport.is_closing():
        transport.resume_reading()
