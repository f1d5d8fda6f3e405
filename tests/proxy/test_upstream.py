"""The lean upstream client against real servers on 127.0.0.1: an aiohttp app, and raw
asyncio servers that answer byte for byte what each test scripts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.proxy.upstream import (
    UpstreamBroken,
    UpstreamClient,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from tests.helpers import until
from tests.proxy.rawserver import answering, in_turn, raw_server, read_head


async def body_of(
    client: UpstreamClient, target: str = "/", method: str = "GET"
) -> tuple[int, bytes]:
    response = await client.request(method, target, [])
    chunks = []
    try:
        while chunk := await response.read():
            chunks.append(chunk)
    finally:
        response.release()
    return response.status, b"".join(chunks)


@asynccontextmanager
async def client_for(url: str, timeout: float = 5.0) -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(url, timeout=timeout)
    try:
        yield client
    finally:
        await client.close()


OK_HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello"


async def test_keep_alive_connection_is_reused_and_head_kept_in_order() -> None:
    async with raw_server(answering(OK_HELLO, OK_HELLO, OK_HELLO)) as up, client_for(up.url) as c:
        for _ in range(3):
            response = await c.request("GET", "/a?b=1", [("X-Test", "yes")])
            assert (response.status, response.reason) == (200, "OK")
            assert list(response.headers.items()) == [("Content-Length", "5"), ("X-Up", "1")]
            assert await response.read() == b"hello"
            assert await response.read() == b""
            response.release()
        assert up.connections == 1


async def test_sends_method_target_host_and_headers() -> None:
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_head(reader))
        writer.write(OK_HELLO)
        await reader.read()

    async with raw_server(script) as up, client_for(up.url) as c:
        response = await c.request("DELETE", "/x/y?q=%20", [("X-A", "1"), ("X-A", "2")])
        response.release()
    port = up.url.rsplit(":", 1)[1]
    assert (
        seen[0]
        == (
            f"DELETE /x/y?q=%20 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
        ).encode()
    )


async def test_empty_body_with_a_length_says_so() -> None:
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_head(reader))
        writer.write(OK_HELLO)
        await reader.read()

    async with raw_server(script) as up, client_for(up.url) as c:
        response = await c.request("POST", "/", [], None, 0)
        response.release()
    assert seen[0].endswith(b"\r\nContent-Length: 0\r\n\r\n")


async def test_chunked_answer_is_decoded_even_byte_by_byte() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1A\r\n" + b"x" * 26 + b"\r\n0\r\nTrailer-Field: t\r\n\r\n"
    )

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await read_head(reader)
            for i in range(len(answer)):
                writer.write(answer[i : i + 1])
                await writer.drain()
        await reader.read()

    async with raw_server(dribble) as up, client_for(up.url) as c:
        for _ in range(2):
            assert await body_of(c) == (200, b"hello" + b"x" * 26)
        assert up.connections == 1


async def test_body_until_close_when_no_length() -> None:
    answer = b"HTTP/1.0 200 OK\r\n\r\nall of it"
    async with raw_server(answering(answer, then_close=True)) as up, client_for(up.url) as c:
        assert await body_of(c) == (200, b"all of it")
        assert await body_of(c) == (200, b"all of it")
        assert up.connections == 2  # such a connection cannot be reused


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
    ],
)
async def test_answers_without_a_body(method: str, answer: bytes) -> None:
    async with raw_server(answering(answer, OK_HELLO)) as up, client_for(up.url) as c:
        _, body = await body_of(c, method=method)
        assert body == b""
        assert await body_of(c) == (200, b"hello")  # the connection stayed in step
        assert up.connections == 1


async def test_endless_head_is_refused() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100):
            writer.write(b"X-Filler: " + b"x" * 1000 + b"\r\n")
            await writer.drain()
        await reader.read()

    async with raw_server(endless) as up, client_for(up.url) as c:
        with pytest.raises(UpstreamBroken):
            await c.request("GET", "/", [])


async def test_interim_answers_are_skipped() -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK_HELLO
    )
    async with raw_server(answering(answer)) as up, client_for(up.url) as c:
        assert await body_of(c) == (200, b"hello")


async def body_echo(request: web.Request) -> web.Response:
    body = await request.read()
    framing = "chunked" if request.headers.get("Transfer-Encoding") else "length"
    return web.Response(body=body, headers={"X-Framing": framing})


@pytest.mark.parametrize("known_length", [True, False])
async def test_request_body_is_streamed(known_length: bool) -> None:
    app = web.Application()
    app.router.add_post("/echo", body_echo)
    parts = [b"a" * 70000, b"b" * 3, b"c" * 100000]

    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    async with (
        TestServer(app, host="127.0.0.1") as server,
        client_for(str(server.make_url(""))) as c,
    ):
        length = sum(map(len, parts)) if known_length else None
        response = await c.request("POST", "/echo", [], body(), length)
        received = b""
        while chunk := await response.read():
            received += chunk
        response.release()
    assert received == b"".join(parts)
    assert response.headers["X-Framing"] == ("length" if known_length else "chunked")


async def test_large_answer_with_back_pressure_arrives_whole() -> None:
    big = bytes(range(256)) * 16384  # 4 MiB

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=big)

    app = web.Application()
    app.router.add_get("/big", handler)
    async with (
        TestServer(app, host="127.0.0.1") as server,
        client_for(str(server.make_url(""))) as c,
    ):
        response = await c.request("GET", "/big", [])
        received = bytearray()
        while chunk := await response.read():
            received += chunk
            await asyncio.sleep(0)  # a slow reader: the client must pause the socket
        response.release()
        assert bytes(received) == big
        assert await body_of(c, "/big") == (200, big)  # connection resumed and reused


async def test_no_head_in_time_is_a_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with raw_server(silent) as up, client_for(up.url, timeout=0.2) as c:
        with pytest.raises(UpstreamTimeout):
            await c.request("GET", "/", [])


async def test_a_reused_connection_gives_each_request_the_whole_timeout() -> None:
    # One timer per connection, armed for the first request: the second request, sent
    # on the same connection after half the timeout, is not cut short by it.
    timeout = 0.3
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    loop = asyncio.get_running_loop()
    async with raw_server(answering(ok)) as up, client_for(up.url, timeout=timeout) as c:
        assert await body_of(c, "/") == (200, b"ok")
        await asyncio.sleep(timeout / 2)  # the connection's timer is now half run
        sent = loop.time()
        with pytest.raises(UpstreamTimeout):
            await c.request("GET", "/", [])
        waited = loop.time() - sent
    assert timeout * 0.9 <= waited < timeout * 10


async def test_stalled_body_is_a_timeout() -> None:
    stall = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf "
    async with raw_server(answering(stall)) as up, client_for(up.url, timeout=0.2) as c:
        response = await c.request("GET", "/", [])
        assert await response.read() == b"half "
        with pytest.raises(UpstreamTimeout):
            await response.read()
        response.release()


async def test_body_cut_short_is_broken() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf "
    async with raw_server(answering(cut, then_close=True)) as up, client_for(up.url) as c:
        response = await c.request("GET", "/", [])
        assert await response.read() == b"half "
        with pytest.raises(UpstreamBroken):
            await response.read()
        response.release()


async def test_refused_connection_is_unreachable() -> None:
    async with raw_server(answering()) as up:
        url = up.url
    async with client_for(url) as c:
        with pytest.raises(UpstreamUnreachable):
            await c.request("GET", "/", [])


async def test_closed_before_answering_is_unreachable() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)

    async with raw_server(hang_up) as up, client_for(up.url) as c:
        with pytest.raises(UpstreamUnreachable):
            await c.request("GET", "/", [])


async def test_stale_keep_alive_connection_is_retried_once() -> None:
    # The upstream answers one request per connection, then closes without saying so.
    async with raw_server(answering(OK_HELLO, then_close=True)) as up, client_for(up.url) as c:
        assert await body_of(c) == (200, b"hello")
        await asyncio.sleep(0.05)  # the close reaches the client while the connection is idle
        assert await body_of(c) == (200, b"hello")
        assert up.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        # A bare LF or CR in a field value or the reason phrase (RFC 9112 §2.2).
        b"HTTP/1.1 200 OK\r\nX-A: a\nb\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 O\nK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        # Field names are tokens; no whitespace before the colon; no obsolete folding.
        b"HTTP/1.1 200 OK\r\nX Bad Name: 1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
        # Framing that cannot be trusted (RFC 9112 §6.3), or a coding the client would get.
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        # Switching protocols to a request that did not ask to.
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ],
)
async def test_malformed_head_is_broken(answer: bytes) -> None:
    async with raw_server(answering(answer)) as up, client_for(up.url) as c:
        with pytest.raises(UpstreamBroken):
            await c.request("GET", "/", [])


BAD_CHUNK = b"0x5\r\nhello\r\n0\r\n\r\n"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


async def test_malformed_chunk_with_the_head_refuses_the_answer() -> None:
    async with raw_server(answering(CHUNKED_HEAD + BAD_CHUNK)) as up, client_for(up.url) as c:
        with pytest.raises(UpstreamBroken):
            await c.request("GET", "/", [])


async def test_malformed_chunk_after_the_head_breaks_the_body() -> None:
    head_seen = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(CHUNKED_HEAD)
        await head_seen.wait()  # the client has the head: the bad chunk comes apart
        writer.write(BAD_CHUNK)
        await reader.read()

    async with raw_server(script) as up, client_for(up.url) as c:
        response = await c.request("GET", "/", [])
        head_seen.set()
        with pytest.raises(UpstreamBroken):
            await response.read()
        response.release()


async def test_complete_body_is_offered_whole_only_when_it_has_all_arrived() -> None:
    long = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstart"
    async with raw_server(answering(OK_HELLO, long)) as up, client_for(up.url) as c:
        response = await c.request("GET", "/", [])
        assert response.complete_body() == b"hello"
        response.release()
        response = await c.request("GET", "/", [])
        assert response.complete_body() is None
        response.release()


async def test_abandoned_body_closes_the_connection() -> None:
    long = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstart"
    first, later = answering(long), answering(OK_HELLO)

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await (first if up.connections == 1 else later)(reader, writer)

    async with raw_server(script) as up, client_for(up.url) as c:
        response = await c.request("GET", "/", [])
        assert await response.read() == b"start"
        response.release()  # the rest never came: the connection is out of step
        assert await body_of(c) == (200, b"hello")
        assert up.connections == 2


def test_works_on_uvloop() -> None:
    """The gateway's workers run uvloop, whose transports are not asyncio classes."""
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"

    async def scenario() -> tuple[list[tuple[int, bytes]], int]:
        async with raw_server(answering(OK_HELLO, chunked)) as up, client_for(up.url) as c:
            return [await body_of(c), await body_of(c)], up.connections

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        answers, connections = runner.run(scenario())
    assert answers == [(200, b"hello"), (200, b"hello")]
    assert connections == 1


def test_early_answer_then_close_while_the_body_is_still_coming_is_that_answer() -> None:
    """An upstream may refuse a body (413) and close before the client has sent it all;
    the refusal is the answer, not an error writing the rest (uvloop raises on a write to a
    closed transport, where asyncio only logs)."""
    too_big = (
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 7\r\nConnection: close\r\n\r\ntoo big"
    )

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(too_big)
        await writer.drain()

    async def scenario() -> tuple[int, bytes]:
        async with raw_server(refuse) as up, client_for(up.url) as c:

            async def body() -> AsyncIterator[bytes]:
                yield b"a" * 1000
                deadline = asyncio.get_running_loop().time() + 5
                while c._all and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.01)  # until the client has seen the close
                yield b"b" * 1000

            response = await c.request("POST", "/upload", [], body(), 2000)
            received = b""
            while chunk := await response.read():
                received += chunk
            response.release()
            return response.status, received

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) == (413, b"too big")


async def test_early_answer_while_the_body_waits_for_the_upstream_to_read() -> None:
    """The upstream reads nothing of the body, answers and ends the connection while the
    client is held up by back-pressure: the answer comes at once, without waiting for the
    rest of the body (which here never comes)."""
    too_big = (
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 7\r\nConnection: close\r\n\r\ntoo big"
    )
    never = asyncio.Event()

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(too_big)
        writer.write_eof()  # FIN, no RST: the unread body stays in this socket
        await never.wait()

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * (16 * 1024 * 1024)  # far more than the socket buffers: writing pauses
        await never.wait()
        yield b"b"

    async with raw_server(refuse) as up, client_for(up.url) as c:
        try:
            response = await asyncio.wait_for(
                c.request("POST", "/upload", [], body(), 16 * 1024 * 1024 + 1), 5
            )
            assert response.status == 413
            assert await response.read() == b"too big"
            response.release()
        finally:
            never.set()  # the server's script ends


async def test_three_thousand_interim_answers_in_one_write_are_refused() -> None:
    flood = b"HTTP/1.1 100 Continue\r\n\r\n" * 3000 + OK_HELLO
    async with raw_server(in_turn(flood, OK_HELLO)) as up, client_for(up.url) as c:
        with pytest.raises(UpstreamBroken, match="head too large"):
            await c.request("GET", "/", [])
        assert await body_of(c) == (200, b"hello")  # a new connection, in step
        assert up.connections == 2


async def test_interim_answers_in_pieces_are_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\n" * 3 + b"HTTP/1.1 103 Early\r\n\r\n" + OK_HELLO

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await read_head(reader)
            for i in range(0, len(answer), 7):
                writer.write(answer[i : i + 7])
                await writer.drain()
        await reader.read()

    async with raw_server(dribble) as up, client_for(up.url) as c:
        assert await body_of(c) == (200, b"hello")
        assert await body_of(c) == (200, b"hello")
        assert up.connections == 1


async def test_head_over_the_limit_in_one_write_is_refused() -> None:
    big = b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"x" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n"
    async with raw_server(answering(big)) as up, client_for(up.url) as c:
        with pytest.raises(UpstreamBroken, match="too large"):
            await c.request("GET", "/", [])


async def read_all(client: UpstreamClient) -> None:
    response = await client.request("GET", "/", [])
    try:
        while await response.read():
            pass
    finally:
        response.release()


async def test_oversized_chunk_line_is_refused() -> None:
    """A chunk extension without end: refused once it passes the limit, whichever read it
    is in (the answer's head may have been handed out already)."""
    endless = CHUNKED_HEAD + b"5;ext=" + b"x" * (1024 * 1024) + b"\r\nhello\r\n0\r\n\r\n"
    async with raw_server(answering(endless)) as up, client_for(up.url) as c:
        with pytest.raises(UpstreamBroken, match="too large"):
            await read_all(c)


async def test_chunk_extensions_and_trailers_within_limits_are_fine() -> None:
    answer = (
        CHUNKED_HEAD
        + b"".join(b"1;name=value\r\n%c\r\n" % c for c in b"abcdefghij" * 100)
        + b"0\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n"
    )
    async with raw_server(answering(answer, OK_HELLO)) as up, client_for(up.url) as c:
        assert await body_of(c) == (200, b"abcdefghij" * 100)
        assert await body_of(c) == (200, b"hello")
        assert up.connections == 1


async def test_bytes_after_the_body_refuse_the_answer_and_its_connection() -> None:
    after = OK_HELLO + b"HTTP/1.1 200 OK\r\n"
    async with raw_server(answering(after)) as up, client_for(up.url) as c:
        with pytest.raises(UpstreamBroken, match="bytes after"):
            await c.request("GET", "/", [])
        assert not c._idle


async def test_bytes_after_a_delivered_answer_close_the_connection() -> None:
    """Extra bytes that come once the answer was handed out: that answer stands, the
    connection is not reused, and the next answer is not taken from those bytes."""
    answered = asyncio.Event()
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nWRONG"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(OK_HELLO)
        if up.connections == 1:
            await answered.wait()
            writer.write(extra)
        await reader.read()

    async with raw_server(script) as up, client_for(up.url) as c:
        assert await body_of(c) == (200, b"hello")
        answered.set()
        await until(lambda: not c._idle, what="the out-of-step connection is closed")
        assert await body_of(c) == (200, b"hello")
        assert up.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
    ],
)
async def test_head_answer_in_pieces_keeps_the_connection_in_step(answer: bytes) -> None:
    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        for i in range(len(answer)):
            writer.write(answer[i : i + 1])
            await writer.drain()
        await read_head(reader)
        writer.write(OK_HELLO)
        await reader.read()

    async with raw_server(dribble) as up, client_for(up.url) as c:
        response = await c.request("HEAD", "/", [])
        assert response.status == 200
        assert response.complete_body() == b""
        response.release()
        assert await body_of(c) == (200, b"hello")
        assert up.connections == 1


async def test_body_after_a_head_answer_is_refused() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    async with raw_server(answering(answer)) as up, client_for(up.url) as c:
        with pytest.raises(UpstreamBroken, match="bytes after"):
            await c.request("HEAD", "/", [])


async def test_field_values_are_trimmed_and_decoded() -> None:
    answer = "HTTP/1.1 200 Très bien\r\nX-A:  é\udcff \t\r\nX-B:\r\nContent-Length: 0\r\n\r\n"
    raw = answer.encode("utf-8", "surrogateescape")  # é in UTF-8, then a lone 0xff byte
    async with raw_server(answering(raw)) as up, client_for(up.url) as c:
        response = await c.request("GET", "/", [])
        response.release()
    assert response.reason == "Très bien"
    assert response.headers["X-A"] == "é\udcff"  # UTF-8, other bytes kept as surrogates
    assert response.headers["X-B"] == ""


SWITCHED = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


def streams(transport: asyncio.Transport) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A handed-over transport as a reader and writer (what a relay would set up)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def upgrade_scenario() -> None:
    """A 101 to a request that asked to upgrade: the bytes sent with the head come
    first, then what the upstream echoes, both ways with back-pressure, until close."""
    seen: list[bytes] = []
    big = bytes(range(256)) * 8192  # 2 MiB: more than the socket buffers, both ways

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_head(reader))
        writer.write(SWITCHED + b"welcome")
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async with raw_server(echo) as up, client_for(up.url) as c:
        response = await c.request("GET", "/ws", [("Sec-WebSocket-Key", "k")], upgrade="websocket")
        assert response.status == 101
        assert response.headers["Upgrade"] == "websocket"
        transport, leftover = response.upgrade()
        reader, writer = streams(transport)
        greeting = leftover
        while len(greeting) < len(b"welcome"):
            greeting += await asyncio.wait_for(reader.read(65536), 5)
        assert greeting == b"welcome"
        writer.write(b"ping")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"

        async def send() -> None:
            writer.write(big)
            await writer.drain()

        sending = asyncio.create_task(send())
        received = await asyncio.wait_for(reader.readexactly(len(big)), 10)
        await sending
        assert received == big
        writer.close()
        assert not c._idle  # never back in the pool
    head = seen[0]
    assert b"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" in head
    assert b"\r\nSec-WebSocket-Key: k\r\n" in head


async def test_upgrade_hands_the_connection_over() -> None:
    await upgrade_scenario()


def test_upgrade_on_uvloop() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(upgrade_scenario())


async def test_upstream_closing_the_tunnel_ends_it() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(SWITCHED)
        await writer.drain()
        writer.write(b"bye")

    async with raw_server(once) as up, client_for(up.url) as c:
        response = await c.request("GET", "/ws", [], upgrade="websocket")
        transport, received = response.upgrade()
        reader, _ = streams(transport)
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            received += chunk
        assert received == b"bye"  # then the end: the upstream closed


async def test_refused_upgrade_is_an_ordinary_answer() -> None:
    refusal = b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 2\r\n\r\nno"
    async with raw_server(answering(refusal, OK_HELLO)) as up, client_for(up.url) as c:
        response = await c.request("GET", "/ws", [], upgrade="websocket")
        assert (response.status, response.complete_body()) == (426, b"no")
        with pytest.raises(RuntimeError):
            response.upgrade()
        response.release()
        assert await body_of(c) == (200, b"hello")
        assert up.connections == 1


async def test_switching_without_the_upgrade_fields_is_broken() -> None:
    bare = b"HTTP/1.1 101 Switching\r\n\r\n"
    async with raw_server(answering(bare)) as up, client_for(up.url) as c:
        with pytest.raises(UpstreamBroken):
            await c.request("GET", "/ws", [], upgrade="websocket")
