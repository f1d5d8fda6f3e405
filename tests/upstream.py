"""A real upstream API for gateway tests, served on a real socket by the ``upstream`` fixture.

Every path under ``/base`` is echoed as JSON, except the special routes below. The
slow routes sleep on purpose: they play a slow server, they do not wait for state.
``/base/ws`` is a WebSocket endpoint: it greets with the token id it was given, echoes
text and binary messages, closes (code 4000) when sent "close", and records each
session's close code in ``app[WS_CLOSED]``.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from typing import Any

from aiohttp import WSMsgType, web

BASE = "/base"
WS_CLOSED = web.AppKey("ws_closed", list[int | None])
CHUNK = 64 * 1024


def pattern(size: int) -> bytes:
    """Deterministic, non-repeating-looking bytes, so a reordered chunk would show."""
    block = hashlib.sha256(b"tollgate").digest() * (CHUNK // 32)
    data = bytearray()
    counter = 0
    while len(data) < size:
        data += counter.to_bytes(4, "big") + block[4:]
        counter += 1
    return bytes(data[:size])


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    answer: dict[str, Any] = {
        "method": request.method,
        "raw_path": request.rel_url.raw_path,
        "query": request.rel_url.raw_query_string,
        "headers": [[name, value] for name, value in request.headers.items()],
        "body_length": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "chunked": request.headers.get("Transfer-Encoding", "").lower() == "chunked",
    }
    return web.json_response(answer)


async def download(request: web.Request) -> web.StreamResponse:
    size = int(request.query.get("size", str(4 * 1024 * 1024)))
    data = pattern(size)
    response = web.StreamResponse()
    response.content_type = "application/octet-stream"
    await response.prepare(request)
    for start in range(0, size, CHUNK):
        await response.write(data[start : start + CHUNK])
    await response.write_eof()
    return response


async def slow_headers(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("delay", "5")))
    return web.Response(text="late")


async def slow_body(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    await response.write(b"first part;")
    await asyncio.sleep(float(request.query.get("delay", "5")))
    await response.write(b"never seen")
    await response.write_eof()
    return response


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/elsewhere")


async def gzipped(request: web.Request) -> web.Response:
    return web.Response(
        body=gzip.compress(b"compressed payload " * 100),
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
    )


async def hop_headers(request: web.Request) -> web.Response:
    response = web.Response(text="ok")
    response.headers["Connection"] = "X-Private-Hop"
    response.headers["X-Private-Hop"] = "secret"
    response.headers["Keep-Alive"] = "timeout=5"
    response.headers["Proxy-Authenticate"] = "Basic"
    response.headers["X-Request-Id"] = "from-upstream"
    response.headers["RateLimit-Limit"] = "999999"
    response.headers["X-Upstream"] = "kept"
    response.headers.add("Set-Cookie", "a=1")
    response.headers.add("Set-Cookie", "b=2")
    return response


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.Response(status=code, text=None if code == 204 else "as asked")


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    try:
        await ws.send_str(f"hello {request.headers.get('X-Token-Id')}")
        async for message in ws:
            if message.type == WSMsgType.TEXT and message.data == "close":
                await ws.close(code=4000, message=b"upstream says bye")
            elif message.type == WSMsgType.TEXT:
                await ws.send_str(f"echo: {message.data}")
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data)
    finally:  # also when the test server cancels the handler of a connection that went
        request.app[WS_CLOSED].append(ws.close_code)
    return ws


def create_upstream() -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[WS_CLOSED] = []
    app.router.add_get(f"{BASE}/ws", websocket)
    app.router.add_get(f"{BASE}/download", download)
    app.router.add_get(f"{BASE}/slow-headers", slow_headers)
    app.router.add_get(f"{BASE}/slow-body", slow_body)
    app.router.add_get(f"{BASE}/redirect", redirect)
    app.router.add_get(f"{BASE}/gzip", gzipped)
    app.router.add_get(f"{BASE}/hop", hop_headers)
    app.router.add_route("*", f"{BASE}/status/{{code}}", status)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app
