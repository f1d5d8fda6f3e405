"""The upstream of the workloads that nginx cannot play: answers after a delay, large
downloads, and an upload sink that reads the whole body before answering.

* ``GET /big``: 200 with ``--big`` bytes (application/octet-stream);
* any other request: its body (``Content-Length`` only) read and dropped, then,
  ``--delay`` seconds after the request arrived whole, 200 with the same 29-byte JSON
  body as the fast upstream.

Keep-alive connections, answers in order (the same delay for every request, so the
timers fire in order). A uvloop server with a timer per request and one write: about
10-20 µs of CPU per small request, one process. (nginx has no delay directive, and its
``return`` answers an upload before reading it, which leaves wrk's next request stuck.)

    python bench/pyupstream.py --port 8081 --delay 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import uvloop

BODY = b'{"ok":true,"from":"upstream"}'


def answer(body: bytes, content_type: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class Upstream(asyncio.Protocol):
    def __init__(self, delay: float, small: bytes, big: bytes) -> None:
        self.delay = delay
        self.small = small
        self.big = big
        self.buffer = b""
        self.body_left = 0  # bytes of the current request's body still to drop
        self.pending: bytes | None = None  # the answer once the body is in
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.body_left:
            if len(data) <= self.body_left:
                self.body_left -= len(data)
                if not self.body_left:
                    self.request_done()
                return
            data = data[self.body_left :]
            self.body_left = 0
            self.request_done()
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self.pending = self.big if head.startswith(b"GET /big ") else self.small
            if length <= len(self.buffer):
                self.buffer = self.buffer[length:]
                self.request_done()
                continue
            self.body_left = length - len(self.buffer)
            self.buffer = b""
            return

    def request_done(self) -> None:
        reply, self.pending = self.pending, None
        if self.delay > 0:
            self.loop.call_later(self.delay, self.send, reply)
        else:
            self.send(reply)

    def send(self, reply: bytes | None) -> None:
        transport = self.transport
        if reply is not None and transport is not None and not transport.is_closing():
            transport.write(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int, delay: float, big_size: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    small = answer(BODY, b"application/json")
    big = answer(b"x" * big_size, b"application/octet-stream")
    server = await loop.create_server(
        lambda: Upstream(delay, small, big), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="An HTTP upstream: delays, big bodies.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--big", type=int, default=10 * 1024 * 1024, help="bytes of GET /big")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.delay, args.big))


if __name__ == "__main__":
    main()
