"""TLS on both sides (SPEC §14): the proxy listener with ``GATEWAY_TLS_CERT_FILE`` /
``GATEWAY_TLS_KEY_FILE``, an ``https`` upstream verified against ``UPSTREAM_CA_FILE``.

The upstream is tests/upstream.py's app on a real TLS socket, with a certificate signed
by a CA the test makes; it counts TLS handshakes (its context's SNI callback runs once
per handshake) and the connections its requests arrive on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.core.config import Settings
from gateway.proxy.front.tls import TlsListener, bind
from tests.conftest import IssueToken, StartGateway
from tests.helpers import GatewayClient, Issued, bearer, sample
from tests.proxy.test_forward import headers_of
from tests.proxy.test_front import start_logged
from tests.tlsfiles import TLSFiles, make_tls_files
from tests.upstream import create_upstream

GROSS = 10.0


@dataclasses.dataclass(frozen=True)
class TLSUpstream:
    url: str  # https://localhost:port
    handshakes: list[str]  # the server name of each TLS handshake
    connections: list[tuple[str, int]]  # the peer of each request


@pytest.fixture
def tls_files(tmp_path: Path) -> TLSFiles:
    return make_tls_files(tmp_path / "tls")


async def serve_upstream(aiohttp_server: Any, files: TLSFiles) -> TLSUpstream:
    handshakes: list[str] = []
    connections: list[tuple[str, int]] = []
    context = files.server_context()
    context.sni_callback = lambda sock, name, ctx: handshakes.append(name or "")

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None and transport.get_extra_info("ssl_object") is not None
        connections.append(transport.get_extra_info("peername"))
        return await handler(request)

    app = create_upstream()
    app.middlewares.append(count)
    server = await aiohttp_server(app, ssl=context)
    return TLSUpstream(f"https://localhost:{server.port}", handshakes, connections)


@pytest.fixture
async def tls_upstream(aiohttp_server: Any, tls_files: TLSFiles) -> TLSUpstream:
    return await serve_upstream(aiohttp_server, tls_files)


@pytest.fixture
async def token(issue_token: IssueToken) -> Issued:
    return await issue_token()


def to_upstream(settings: Settings, upstream: TLSUpstream, ca_file: Path | None) -> Settings:
    return dataclasses.replace(
        settings, upstream_url=f"{upstream.url}/base", upstream_ca_file=ca_file
    )


async def status_of(client: GatewayClient, token: Issued) -> tuple[int, Any]:
    async with client.get("/v1/x", headers=bearer(token.raw)) as response:
        return response.status, await response.json()


# ---------------------------------------------------------------- the upstream side


async def test_an_https_upstream_is_reached_over_reused_tls_connections(
    settings: Settings,
    tls_upstream: TLSUpstream,
    tls_files: TLSFiles,
    start_gateway: StartGateway,
    token: Issued,
) -> None:
    client = await start_gateway(to_upstream(settings, tls_upstream, tls_files.ca_file))
    for _ in range(20):
        status, echo = await status_of(client, token)
        assert status == 200
        assert echo["raw_path"] == "/base/v1/x"
    # One handshake, one connection, kept alive for all twenty.
    assert tls_upstream.handshakes == ["localhost"]
    assert len(tls_upstream.connections) == 20
    assert len(set(tls_upstream.connections)) == 1

    answers = await asyncio.gather(*(status_of(client, token) for _ in range(5)))
    assert [status for status, _ in answers] == [200] * 5
    for _ in range(10):
        assert (await status_of(client, token))[0] == 200
    # At most one new connection per request in flight at once, each then reused.
    assert len(tls_upstream.handshakes) == len(set(tls_upstream.connections)) <= 5


@pytest.mark.parametrize("trusted", ["another CA", "the system's CAs"])
async def test_an_upstream_certificate_of_an_unknown_ca_is_a_502(
    settings: Settings,
    tls_upstream: TLSUpstream,
    start_gateway: StartGateway,
    token: Issued,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    trusted: str,
) -> None:
    ca_file = make_tls_files(tmp_path / "other").ca_file if trusted == "another CA" else None
    client = await start_gateway(to_upstream(settings, tls_upstream, ca_file))
    with caplog.at_level(logging.WARNING, logger="gateway.proxy.forward"):
        status, body = await status_of(client, token)
    assert (status, body["error"]["code"]) == (502, "upstream_unreachable")
    assert sample(client.gateway, "gateway_requests_total", outcome="upstream_error") == 1
    assert tls_upstream.connections == []  # nothing was sent to it
    [line] = [r.getMessage() for r in caplog.records if "upstream" in r.getMessage()]
    assert "the upstream's TLS certificate is not trusted" in line
    assert "unable to get local issuer certificate" in line
    assert "UPSTREAM_CA_FILE" in line


async def test_an_upstream_certificate_for_another_host_is_a_502(
    settings: Settings,
    aiohttp_server: Any,
    start_gateway: StartGateway,
    token: Issued,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = make_tls_files(tmp_path / "elsewhere", "api.example.test")
    upstream = await serve_upstream(aiohttp_server, files)
    client = await start_gateway(to_upstream(settings, upstream, files.ca_file))
    with caplog.at_level(logging.WARNING, logger="gateway.proxy.forward"):
        status, body = await status_of(client, token)
    assert (status, body["error"]["code"]) == (502, "upstream_unreachable")
    assert upstream.connections == []
    assert "Hostname mismatch, certificate is not valid for 'localhost'" in caplog.text


async def test_a_plain_http_upstream_port_behind_an_https_url_is_a_502(
    settings: Settings,
    upstream: Any,
    tls_files: TLSFiles,
    start_gateway: StartGateway,
    token: Issued,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plain = dataclasses.replace(
        settings, upstream_url=f"https://localhost:{upstream.port}", upstream_ca_file=None
    )
    client = await start_gateway(plain)
    with caplog.at_level(logging.WARNING, logger="gateway.proxy.forward"):
        assert (await status_of(client, token))[0] == 502
    assert "TLS handshake with the upstream failed" in caplog.text


# ---------------------------------------------------------------- the listener side


@pytest.fixture
async def tls_gateway(
    gateway_settings: Settings, tls_files: TLSFiles, start_gateway: StartGateway
) -> GatewayClient:
    settings = dataclasses.replace(
        gateway_settings, tls_cert_file=tls_files.cert_file, tls_key_file=tls_files.key_file
    )
    return await start_gateway(settings)


async def test_the_listener_speaks_tls_and_tells_the_upstream_so(
    tls_gateway: GatewayClient, tls_files: TLSFiles, token: Issued
) -> None:
    url = f"https://localhost:{tls_gateway.port}/v1/x"
    connector = aiohttp.TCPConnector(ssl=tls_files.client_context())
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(3):
            async with session.get(url, headers=bearer(token.raw)) as response:
                assert response.status == 200
                seen = headers_of(await response.json())
                assert seen["x-forwarded-proto"] == ["https"]
        assert tls_gateway.server.connections == 1  # kept alive over TLS
        async with session.get(url) as response:  # refusals are answered over TLS too
            assert response.status == 401
            assert "error" in await response.json()


async def test_the_listener_offers_http_1_1_by_alpn(
    tls_gateway: GatewayClient, tls_files: TLSFiles
) -> None:
    context = tls_files.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    _, writer = await asyncio.open_connection(
        "127.0.0.1", tls_gateway.port, ssl=context, server_hostname="localhost"
    )
    ssl_object = writer.get_extra_info("ssl_object")
    assert ssl_object.selected_alpn_protocol() == "http/1.1"
    assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")
    writer.close()


async def test_plain_http_on_the_tls_port_is_a_400_saying_so_and_never_proxied(
    gateway_settings: Settings,
    tls_files: TLSFiles,
    start_gateway: StartGateway,
    token: Issued,
) -> None:
    """As nginx answers it: the client learns its URL has the wrong scheme, instead of an
    empty reply; the request is logged and counted, and nothing reaches the upstream."""
    settings = dataclasses.replace(
        gateway_settings, tls_cert_file=tls_files.cert_file, tls_key_file=tls_files.key_file
    )
    logged = await start_logged(start_gateway, settings)
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{logged.port}/v1/x?secret=1"
        async with session.post(url, headers=bearer(token.raw), data=b"x" * 100_000) as response:
            assert response.status == 400
            assert response.headers["Connection"] == "close"
            request_id = response.headers["X-Request-Id"]
            error = (await response.json())["error"]
    assert error["code"] == "https_required"
    assert "https://" in error["message"]
    [line] = logged.lines()
    assert (line["request_id"], line["status"], line["method"]) == (request_id, 400, "POST")
    assert (line["path"], line["outcome"], line["upstream_ms"]) == (
        "/v1/x",
        "invalid_request",
        None,
    )
    assert logged.count("invalid_request") == 1 and logged.count("proxied") == 0
    # The same port still speaks TLS, to the same token.
    connector = aiohttp.TCPConnector(ssl=tls_files.client_context())
    async with aiohttp.ClientSession(connector=connector) as session:
        https = f"https://localhost:{logged.port}/v1/x"
        async with session.get(https, headers=bearer(token.raw)) as response:
            assert response.status == 200


async def test_silent_and_failed_handshakes_are_closed_without_a_word(
    gateway_settings: Settings,
    tls_files: TLSFiles,
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A connection that sends nothing is closed at the head deadline; one whose
    handshake is garbage at once; neither is logged as an error, neither leaks."""
    settings = dataclasses.replace(
        gateway_settings,
        tls_cert_file=tls_files.cert_file,
        tls_key_file=tls_files.key_file,
        header_timeout=0.3,
    )
    client = await start_gateway(settings)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        silent = await asyncio.open_connection("127.0.0.1", client.port)
        garbage = await asyncio.open_connection("127.0.0.1", client.port)
        garbage[1].write(b"\x16\x03\x01\x00\x05hello, not a ClientHello")
        for reader, _ in (garbage, silent):
            assert await asyncio.wait_for(reader.read(), GROSS) == b""
    assert time.monotonic() - started >= 0.3  # the silent one waited for its deadline
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert client.server.connections == 0
    status, _ = await status_of_tls(client, tls_files)
    assert status == 401  # and the listener still serves


async def status_of_tls(client: GatewayClient, files: TLSFiles) -> tuple[int, Any]:
    connector = aiohttp.TCPConnector(ssl=files.client_context())
    url = f"https://localhost:{client.port}/v1/x"
    async with aiohttp.ClientSession(connector=connector) as session, session.get(url) as response:
        return response.status, await response.json()


async def test_websockets_flow_through_tls_on_both_sides(
    settings: Settings,
    tls_upstream: TLSUpstream,
    tls_files: TLSFiles,
    start_gateway: StartGateway,
    token: Issued,
) -> None:
    both = dataclasses.replace(
        to_upstream(settings, tls_upstream, tls_files.ca_file),
        tls_cert_file=tls_files.cert_file,
        tls_key_file=tls_files.key_file,
    )
    client = await start_gateway(both)
    connector = aiohttp.TCPConnector(ssl=tls_files.client_context())
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.ws_connect(f"wss://localhost:{client.port}/ws", headers=bearer(token.raw)) as ws,
    ):
        assert await ws.receive_str(timeout=GROSS) == f"hello {token.token_id}"
        await ws.send_str("over tls")
        assert await ws.receive_str(timeout=GROSS) == "echo: over tls"


async def test_closing_the_listener_drops_silent_connections_and_accepts_no_more(
    tls_files: TLSFiles,
) -> None:
    loop = asyncio.get_running_loop()
    made: list[asyncio.Protocol] = []

    def protocol() -> asyncio.Protocol:
        made.append(asyncio.Protocol())
        return made[-1]

    listener = TlsListener(
        loop,
        bind("127.0.0.1", 0, reuse_port=False, backlog=16),
        tls_files.server_context(),
        tls=protocol,
        plain=protocol,
        first_byte_timeout=60,
        max_pending=10,
    )
    port = listener.sockets[0].getsockname()[1]
    silent, _ = await asyncio.open_connection("127.0.0.1", port)
    listener.close()
    assert await asyncio.wait_for(silent.read(), GROSS) == b""
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    assert made == []  # the silent one never became a connection


async def test_a_flood_of_silent_connections_holds_a_bounded_number_and_locks_no_one_out(
    gateway_settings: Settings, tls_files: TLSFiles, start_gateway: StartGateway
) -> None:
    """Connections that never send a byte (or never finish a handshake) are at most
    GATEWAY_MAX_CONNECTIONS: each one beyond drops the oldest, and a real client still
    gets its answer over TLS at once, long before any deadline."""
    settings = dataclasses.replace(
        gateway_settings,
        tls_cert_file=tls_files.cert_file,
        tls_key_file=tls_files.key_file,
        header_timeout=60.0,
        max_connections=5,
    )
    client = await start_gateway(settings)
    silent = [await asyncio.open_connection("127.0.0.1", client.port) for _ in range(5)]
    stalled = []
    for _ in range(3):  # a handshake begun and never finished
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(b"\x16\x03\x01")
        stalled.append((reader, writer))
    # The three oldest silent ones made room for the stalled handshakes.
    for reader, _ in silent[:3]:
        assert await asyncio.wait_for(reader.read(), GROSS) == b""
    status, _ = await asyncio.wait_for(status_of_tls(client, tls_files), GROSS)
    assert status == 401
    for _, writer in silent + stalled:
        writer.close()
