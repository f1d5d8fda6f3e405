"""The limiter's Redis client (gateway/proxy/ratelimit/resp.py): framing, pipelining,
the URL's AUTH and SELECT, a broken connection retried once, error replies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import hiredis
import pytest

from gateway.proxy.ratelimit.resp import (
    NoScript,
    ReplyError,
    RespClient,
    encode,
    reader,
    reply_error,
)

REDIS_URL = "redis://127.0.0.1:6379"


@pytest.fixture
async def client() -> AsyncIterator[RespClient]:
    resp = RespClient(REDIS_URL, timeout=5.0)
    try:
        await resp.call("PING")
    except OSError as err:
        pytest.skip(f"no Redis at {REDIS_URL}: {err}")
    yield resp
    await resp.close()


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert encode(("EVALSHA", b"ab", 1, "k")) == (
        b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$1\r\nk\r\n"
    )


def test_replies_come_out_whole_or_not_at_all() -> None:
    whole = b"*4\r\n:1\r\n:-2\r\n$3\r\nabc\r\n$-1\r\n+OK\r\n"
    for cut in range(len(whole) - 5):
        parser = reader()
        parser.feed(whole[:cut])
        assert parser.gets() is False  # incomplete: wait for more bytes
        parser.feed(whole[cut:])
        assert parser.gets() == [1, -2, b"abc", None]
        assert parser.gets() == b"OK"
    parser = reader()
    parser.feed(b"-NOSCRIPT No matching script\r\n-ERR wrong\r\n")
    first, second = parser.gets(), parser.gets()
    assert isinstance(first, ReplyError) and isinstance(reply_error(first), NoScript)
    assert type(reply_error(second)) is ReplyError and str(second) == "ERR wrong"
    parser.feed(b"?\r\n")
    with pytest.raises(hiredis.ProtocolError):
        parser.gets()


async def test_concurrent_commands_share_one_connection_in_order(client: RespClient) -> None:
    replies = await asyncio.gather(*(client.call("ECHO", f"n{i}") for i in range(300)))
    assert replies == [f"n{i}".encode() for i in range(300)]
    clients = await client.call("CLIENT", "LIST")
    assert isinstance(clients, bytes)
    own_id = await client.call("CLIENT", "ID")
    assert isinstance(own_id, int)
    # One connection for all 300: its id is the one CLIENT ID gives now.
    assert f"id={own_id} ".encode() in clients


async def test_error_replies_raise_and_the_connection_stays(client: RespClient) -> None:
    with pytest.raises(NoScript):
        await client.call("EVALSHA", "0" * 40, 0)
    with pytest.raises(ReplyError, match="unknown command"):
        await client.call("NOSUCHCOMMAND")
    assert await client.call("ECHO", "still here") == b"still here"


async def test_the_urls_database_is_selected() -> None:
    resp = RespClient(REDIS_URL + "/3", timeout=5.0)
    try:
        info = await resp.call("CLIENT", "INFO")
    except OSError as err:
        pytest.skip(f"no Redis at {REDIS_URL}: {err}")
    finally:
        await resp.close()
    assert isinstance(info, bytes) and b" db=3 " in info


async def test_a_killed_connection_is_retried_once_on_a_new_one(client: RespClient) -> None:
    first = await client.call("CLIENT", "ID")
    other = RespClient(REDIS_URL, timeout=5.0)
    try:
        assert await other.call("CLIENT", "KILL", "ID", str(first)) == 1
    finally:
        await other.close()
    assert await client.call("ECHO", "again") == b"again"  # no error: sent again
    assert await client.call("CLIENT", "ID") != first


async def test_auth_is_sent_first_with_the_urls_password() -> None:
    seen: list[bytes] = []

    async def fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                seen.append(data)
                writer.write(b"+OK\r\n" * data.count(b"*"))
        writer.close()

    server = await asyncio.start_server(fake, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    resp = RespClient(f"redis://bob:s%40cret@127.0.0.1:{port}/2", timeout=5.0)
    try:
        assert await resp.call("PING") == b"OK"
    finally:
        await resp.close()
        server.close()
        await server.wait_closed()
    sent = b"".join(seen)
    assert sent.startswith(encode(("AUTH", "bob", "s@cret")) + encode(("SELECT", 2)))
    assert sent.endswith(encode(("PING",)))


async def test_an_unreachable_server_is_a_connection_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    resp = RespClient(f"redis://127.0.0.1:{port}", timeout=2.0)
    with pytest.raises(ConnectionError, match=f"cannot connect to Redis at 127.0.0.1:{port}"):
        await resp.call("PING")
    await resp.close()


async def test_each_command_gets_the_whole_timeout_after_an_earlier_one() -> None:
    # One timer per connection, armed for the first command: a later command stalled on
    # the same connection still gets its own full timeout, then fails, and the next
    # command opens a new connection.
    timeout = 0.3
    connections = 0

    async def first_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(b"+OK\r\n" * data.count(b"*"))
                if first:  # the first connection answers once, then nothing
                    await reader.read()
                    break
        writer.close()

    server = await asyncio.start_server(first_only, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    resp = RespClient(f"redis://127.0.0.1:{port}", timeout=timeout)
    loop = asyncio.get_running_loop()
    try:
        assert await resp.call("PING") == b"OK"
        await asyncio.sleep(timeout / 2)  # the connection's timer is now half run
        sent = loop.time()
        with pytest.raises(TimeoutError, match=r"no reply from Redis within 0\.3 s"):
            await resp.call("PING")
        waited = loop.time() - sent
        assert timeout * 0.9 <= waited < timeout * 10
        assert await resp.call("PING") == b"OK"  # on a new connection
        assert connections == 2
    finally:
        await resp.close()
        server.close()
        await server.wait_closed()
