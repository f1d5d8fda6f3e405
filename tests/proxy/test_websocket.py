"""WebSocket through the gateway: the token and the rate limit are checked at the
handshake, then messages flow both ways between aiohttp's WebSocket client and an
aiohttp WebSocket server upstream until either side closes or the relay idles."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from typing import Any

import aiohttp
import pytest

from gateway.core.config import Settings
from gateway.proxy.accesslog import AccessLog
from tests.conftest import Issued, IssueToken, StartGateway
from tests.helpers import GatewayClient, bearer, sample, until
from tests.rawhttp import RawUpstream, answers, exchange, read_head, request_head
from tests.upstream import WS_CLOSED

GROSS = 5.0  # seconds: bounds of timeouts set to 0.3 s


@pytest.fixture
async def token(issue_token: IssueToken) -> Issued:
    return await issue_token()


async def test_messages_flow_both_ways_and_the_client_closes(
    gateway_client: GatewayClient, token: Issued, upstream: Any
) -> None:
    async with gateway_client.session.ws_connect(
        gateway_client.make_url("/ws"), headers=bearer(token.raw)
    ) as ws:
        # The upstream saw the handshake with the gateway's identity headers.
        assert await ws.receive_str(timeout=GROSS) == f"hello {token.token_id}"
        await ws.send_str("ping")
        assert await ws.receive_str(timeout=GROSS) == "echo: ping"
        await ws.send_bytes(b"\x00\x01binary")
        assert await ws.receive_bytes(timeout=GROSS) == b"\x00\x01binary"
    await until(lambda: upstream.app[WS_CLOSED] == [1000], timeout=GROSS)
    gateway = gateway_client.gateway
    await until(lambda: sample(gateway, "gateway_requests_total", outcome="proxied") == 1)


async def test_the_switch_is_answered_with_the_upstreams_101(
    gateway_client: GatewayClient, token: Issued
) -> None:
    handshake = request_head(
        "GET",
        "/ws",
        f"Authorization: Bearer {token.raw}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway_client.port)
    writer.write(handshake)
    head = (await asyncio.wait_for(read_head(reader), GROSS)).decode()
    writer.close()
    status_line, *lines = head.strip().split("\r\n")
    fields = [tuple(line.split(": ", 1)) for line in lines]
    assert status_line.startswith("HTTP/1.1 101 ")
    # RFC 6455's accept key for the sample nonce: the upstream's own answer.
    assert ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") in fields
    assert [v for n, v in fields if n.lower() == "connection"] == ["Upgrade"]
    assert [v.lower() for n, v in fields if n.lower() == "upgrade"] == ["websocket"]
    assert any(n == "X-Request-Id" for n, _ in fields)


async def test_the_upstream_closing_reaches_the_client(
    gateway_client: GatewayClient, token: Issued
) -> None:
    async with gateway_client.session.ws_connect(
        gateway_client.make_url("/ws"), headers=bearer(token.raw)
    ) as ws:
        await ws.receive_str(timeout=GROSS)
        await ws.send_str("close")
        message = await ws.receive(timeout=GROSS)
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4000


async def test_the_handshake_needs_a_valid_token(gateway_client: GatewayClient) -> None:
    for headers in ({}, bearer("tg_not_a_token")):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await gateway_client.session.ws_connect(gateway_client.make_url("/ws"), headers=headers)
        assert refused.value.status == 401


async def test_the_handshake_is_rate_limited(
    gateway_client: GatewayClient, issue_token: IssueToken
) -> None:
    limited = await issue_token(rate_limit="1/minute")
    url = gateway_client.make_url("/ws")
    async with gateway_client.session.ws_connect(url, headers=bearer(limited.raw)) as ws:
        await ws.receive_str(timeout=GROSS)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway_client.session.ws_connect(url, headers=bearer(limited.raw))
    assert refused.value.status == 429


async def test_the_upstreams_refusal_of_a_handshake_is_passed_on(
    gateway_client: GatewayClient, token: Issued
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway_client.session.ws_connect(
            gateway_client.make_url("/status/403"), headers=bearer(token.raw)
        )
    assert refused.value.status == 403


async def test_an_idle_websocket_is_closed(
    gateway_settings: Settings,
    pg_pool: Any,
    start_gateway: StartGateway,
    token: Issued,
    upstream: Any,
) -> None:
    stream = io.StringIO()
    client = await start_gateway(
        dataclasses.replace(gateway_settings, websocket_timeout=0.3),
        access_log=AccessLog("json", stream),
    )
    async with client.session.ws_connect(client.make_url("/ws"), headers=bearer(token.raw)) as ws:
        assert await ws.receive_str(timeout=GROSS) == f"hello {token.token_id}"
        message = await ws.receive(timeout=GROSS)  # nothing more is sent either way
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await until(lambda: len(upstream.app[WS_CLOSED]) == 1, timeout=GROSS)
    await until(lambda: client.server.connections == 0, timeout=GROSS)
    client.gateway.handler._access_log.flush()
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert (line["status"], line["outcome"], line["path"]) == (101, "proxied", "/ws")


async def test_an_upstream_switching_protocols_unasked_is_502(
    gateway_settings: Settings, pg_pool: Any, start_gateway: StartGateway, token: Issued
) -> None:
    async def switch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"
        )
        await reader.read()

    upstream = RawUpstream(switch)
    url = await upstream.start()
    client = await start_gateway(dataclasses.replace(gateway_settings, upstream_url=url))
    request = request_head("GET", "/x", f"Authorization: Bearer {token.raw}", "Connection: close")
    [answer] = answers(await exchange(client.port, request))
    assert answer.status == 502
    assert answer.json()["error"]["code"] == "upstream_unreachable"
    await upstream.close()
