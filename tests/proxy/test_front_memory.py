"""What a client connection leaves behind when it goes: nothing that only the cyclic
collector could free (the workers run it seldom, gateway/runtime/worker.py)."""

from __future__ import annotations

import asyncio
import gc

from gateway.core.errors import TollgateError
from gateway.proxy.front import ClientLimits, Request, Server
from tests.helpers import until


class Refusing:
    """Answers every request at once without reading its body (as a 403 does)."""

    async def __call__(self, request: Request) -> None:
        request.respond(403, {"Content-Type": "application/json"}, b"{}")

    def rejected(self, err: TollgateError, method: str, path: str, started: float) -> str:
        return "id"


def requests_alive() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, Request))


async def test_a_client_leaving_mid_upload_leaves_no_cycle_behind() -> None:
    server = Server(Refusing(), ClientLimits())
    await server.start("127.0.0.1", 0)
    gc.collect()
    before = requests_alive()
    gc.disable()  # what is still alive now is held by references, not waiting for a pass
    try:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n"
                + b"x" * 300_000  # more than the body buffer: reading pauses
            )
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 403 ")
            writer.close()  # mid-body
            await until(lambda: server.connections == 0, what="the connection closed")
        assert requests_alive() == before
    finally:
        gc.enable()
        await server.stop(1.0)
