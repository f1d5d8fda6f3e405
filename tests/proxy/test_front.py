"""The client side of the proxy listener, on raw sockets against the real server:
requests the parser refuses, slow clients, the connection cap, clients that leave,
pipelining, ``Expect: 100-continue`` and a graceful stop."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import io
import json
import logging
import re
import resource
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.core.config import Settings
from gateway.proxy.accesslog import AccessLog
from gateway.proxy.app import running, serve
from gateway.proxy.front import ClientLimits
from tests.conftest import Issued, IssueToken, StartGateway
from tests.helpers import GatewayClient, bearer, sample, until
from tests.rawhttp import (
    RawUpstream,
    answers,
    exchange,
    head_only,
    read_head,
    request_head,
    small_receive_buffer,
    until_closed,
)

SECRET = "s3cr3t-value-only-in-a-header"
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
GROSS = 5.0  # seconds: bounds of deadlines set to 0.3 s (ten times that and more)


@dataclass
class Logged:
    """A gateway whose access log is kept in memory."""

    client: GatewayClient
    access_log: AccessLog
    stream: io.StringIO

    @property
    def port(self) -> int:
        return self.client.port

    def text(self) -> str:
        self.access_log.flush()
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines()]

    def count(self, outcome: str) -> float:
        return sample(self.client.gateway, "gateway_requests_total", outcome=outcome)


async def start_logged(start_gateway: StartGateway, settings: Settings, **limits: Any) -> Logged:
    stream = io.StringIO()
    access_log = AccessLog("json", stream)
    client = await start_gateway(dataclasses.replace(settings, **limits), access_log=access_log)
    return Logged(client, access_log, stream)


@pytest.fixture
async def logged(gateway_settings: Settings, pg_pool: Any, start_gateway: StartGateway) -> Logged:
    return await start_logged(start_gateway, gateway_settings)


@pytest.fixture
async def token(issue_token: IssueToken) -> Issued:
    return await issue_token()


def get(path: str = "/x", token: Issued | None = None, *more: str) -> bytes:
    auth = () if token is None else (f"Authorization: Bearer {token.raw}",)
    return request_head("GET", path, *auth, *more)


class HeldUpstream(RawUpstream):
    """An upstream that answers each request only once ``release`` is set (``heads``
    counts the requests that reached it), so a test knows a request is in flight."""

    def __init__(self) -> None:
        super().__init__(self._answer)
        self.heads = 0
        self.release = asyncio.Event()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        self.heads += 1
        closed = asyncio.ensure_future(reader.read())  # the body, until the gateway closes
        released = asyncio.ensure_future(self.release.wait())
        await asyncio.wait((closed, released), return_when=asyncio.FIRST_COMPLETED)
        released.cancel()
        if not closed.done():
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
            await writer.drain()
        await closed


@pytest.fixture
async def held() -> AsyncIterator[HeldUpstream]:
    upstream = HeldUpstream()
    await upstream.start()
    yield upstream
    upstream.release.set()
    await upstream.close()


# ---------------------------------------------------------------- refused by the parser


# What a client sent -> (status, error code). SECRET and the token are header values
# that must never come back in the answer or reach a log.
TOO_LARGE, MALFORMED = (431, "header_fields_too_large"), (400, "malformed_request")
SECRET_FIELD = b"X-Field: " + SECRET.encode() + b"\r\n"
REFUSED: dict[str, tuple[tuple[int, str], bytes]] = {
    "a header line over 8 KiB": (
        TOO_LARGE,
        b"GET /x HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {token}" + b" " * 9000 + b"\r\n\r\n",
    ),
    "too many header fields": (
        TOO_LARGE,
        b"GET /x HTTP/1.1\r\nHost: g\r\n" + SECRET_FIELD * 101 + b"\r\n",
    ),
    "a head over 64 KiB": (
        TOO_LARGE,
        b"GET /x HTTP/1.1\r\nHost: g\r\n"
        + (SECRET_FIELD[:-2] + b"v" * 4000 + b"\r\n") * 20
        + b"\r\n",
    ),
    "a request target over 8 KiB": (
        (414, "uri_too_long"),
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: g\r\n" + SECRET_FIELD + b"\r\n",
    ),
    "Content-Length with Transfer-Encoding": (
        MALFORMED,
        b"POST /x HTTP/1.1\r\nHost: g\r\n" + SECRET_FIELD + b"Content-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    "two Content-Lengths": (
        MALFORMED,
        b"POST /x HTTP/1.1\r\nHost: g\r\n"
        + SECRET_FIELD
        + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
    ),
    "a Transfer-Encoding that is not chunked": (
        (501, "unsupported_transfer_encoding"),
        b"POST /x HTTP/1.1\r\nHost: g\r\n" + SECRET_FIELD + b"Transfer-Encoding: gzip\r\n\r\n",
    ),
    "a coding before chunked": (
        (501, "unsupported_transfer_encoding"),
        b"POST /x HTTP/1.1\r\nHost: g\r\n" + SECRET_FIELD + b"Transfer-Encoding: gzip\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ),
    "obsolete line folding": (
        MALFORMED,
        b"GET /x HTTP/1.1\r\nHost: g\r\nX-A: a\r\n " + SECRET_FIELD + b"\r\n",
    ),
    "a bare CR in a header": (
        MALFORMED,
        b"GET /x HTTP/1.1\r\nHost: g\r\nX-A: a\rb" + SECRET_FIELD + b"\r\n",
    ),
    "a bad request line": (MALFORMED, b"GET /a b HTTP/1.1\r\nHost: g\r\n" + SECRET_FIELD + b"\r\n"),
    "an invalid method": (MALFORMED, b"G@T /x HTTP/1.1\r\nHost: g\r\n\r\n"),
    "HTTP/2.0 in a request line": (
        (505, "http_version_not_supported"),
        b"GET /x HTTP/2.0\r\n" + SECRET_FIELD + b"\r\n",
    ),
    "OPTIONS *": (
        (400, "invalid_target"),
        b"OPTIONS * HTTP/1.1\r\nHost: g\r\n" + SECRET_FIELD + b"\r\n",
    ),
    "CONNECT": (
        (405, "method_not_allowed"),
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n" + SECRET_FIELD + b"\r\n",
    ),
    "Upgrade: h2c": (
        (400, "unsupported_upgrade"),
        b"GET /x HTTP/1.1\r\nHost: g\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"HTTP2-Settings: " + SECRET.encode() + b"\r\n\r\n",
    ),
    "no Host header": ((400, "invalid_host"), b"GET /x HTTP/1.1\r\n" + SECRET_FIELD + b"\r\n"),
    "two Host headers": (
        (400, "invalid_host"),
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + SECRET_FIELD + b"\r\n",
    ),
    "a WebSocket handshake that is not a GET": (
        (400, "invalid_upgrade"),
        b"POST /ws HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + SECRET_FIELD
        + b"\r\n",
    ),
}


@pytest.mark.parametrize(("expected", "request_bytes"), REFUSED.values(), ids=REFUSED.keys())
async def test_a_request_the_parser_refuses_gets_a_json_error_and_one_log_line(
    logged: Logged,
    token: Issued,
    caplog: pytest.LogCaptureFixture,
    expected: tuple[int, str],
    request_bytes: bytes,
) -> None:
    status, code = expected
    sent = request_bytes.replace(b"{token}", token.raw.encode())
    with caplog.at_level(logging.INFO):
        data = await exchange(logged.port, sent)  # returns once the gateway closed
    [answer] = answers(data)
    assert answer.status == status
    assert answer.headers["Content-Type"] == "application/json"
    error = answer.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert answer.headers["Connection"] == "close"
    request_id = answer.headers["X-Request-Id"]
    assert REQUEST_ID.fullmatch(request_id)
    assert answer.headers["Date"].endswith(" GMT")
    if status == 405:
        assert "GET" in answer.headers["Allow"]
    # Not one header value in the answer, the access log or any other log line.
    logs = logged.text() + caplog.text
    for secret in (token.raw, token.raw[:20], SECRET):
        assert secret not in data.decode("latin-1")
        assert secret not in logs
    assert "Traceback" not in logs
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    [line] = logged.lines()
    assert (line["status"], line["outcome"], line["request_id"]) == (
        status,
        "invalid_request",
        request_id,
    )
    assert logged.count("invalid_request") == 1


async def test_a_refusal_after_a_good_request_comes_after_its_answer(
    logged: Logged, token: Issued
) -> None:
    data = await exchange(
        logged.port, get("/first", token) + b"GET /a b HTTP/1.1\r\nHost: g\r\n\r\n"
    )
    first, refused = answers(data)
    assert first.status == 200
    assert first.json()["raw_path"] == "/base/first"
    assert refused.status == 400
    assert [line["status"] for line in logged.lines()] == [200, 400]


async def test_the_gateways_own_answers_carry_a_date(
    gateway_client: GatewayClient, issue_token: IssueToken
) -> None:
    limited = await issue_token(rate_limit="1/minute")
    refused = [await gateway_client.get("/x")]  # 401
    for _ in range(2):
        refused.append(await gateway_client.get("/x", headers=bearer(limited.raw)))
    assert [r.status for r in refused] == [401, 200, 429]
    assert all(r.headers["Date"].endswith(" GMT") for r in refused)


# ---------------------------------------------------------------- keep-alive and order


async def test_pipelined_requests_are_answered_in_order_on_one_connection(
    logged: Logged, token: Issued
) -> None:
    paths = [f"/p{i}" for i in range(5)]
    pipelined = b"".join(get(path, token) for path in paths[:-1])
    pipelined += get(paths[-1], token, "Connection: close")
    data = await exchange(logged.port, pipelined)
    found = answers(data)
    assert [answer.json()["raw_path"] for answer in found] == [f"/base{p}" for p in paths]
    assert found[-1].headers["Connection"] == "close"


async def test_http_1_0_streams_until_close(logged: Logged, token: Issued) -> None:
    request = f"GET /download?size=300000 HTTP/1.0\r\nAuthorization: Bearer {token.raw}\r\n\r\n"
    data = await exchange(logged.port, request.encode())
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 "))
    assert b"chunked" not in head.lower()
    assert len(body) == 300_000


async def test_head_answers_have_no_body(logged: Logged, token: Issued) -> None:
    request = request_head("HEAD", "/x", f"Authorization: Bearer {token.raw}", "Connection: close")
    data = await exchange(logged.port, request)
    answer = head_only(data)
    assert answer.status == 200
    assert int(answer.headers["Content-Length"]) > 0


async def test_expect_100_continue_is_answered_only_after_the_token_is_proven(
    logged: Logged, token: Issued
) -> None:
    upload = "POST /upload HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
    # Refused: the 401 comes without a 100 Continue before it, and the body is never sent.
    data = await exchange(logged.port, (upload + "\r\n").encode())
    assert data.startswith(b"HTTP/1.1 401 ")
    # Accepted: 100 Continue, then the body, then the upstream's answer.
    reader, writer = await asyncio.open_connection("127.0.0.1", logged.port)
    writer.write(f"{upload}Authorization: Bearer {token.raw}\r\n\r\n".encode())
    assert await asyncio.wait_for(read_head(reader), GROSS) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    head = await asyncio.wait_for(read_head(reader), GROSS)
    assert head.startswith(b"HTTP/1.1 200 ")
    writer.close()


# ---------------------------------------------------------------- slow clients


async def test_a_partial_head_gets_408_at_the_header_deadline(
    gateway_settings: Settings, pg_pool: Any, start_gateway: StartGateway
) -> None:
    logged = await start_logged(start_gateway, gateway_settings, header_timeout=0.3)
    started = time.monotonic()
    data = await exchange(logged.port, b"GET /x HTTP/1.1\r\nHost: g\r\nX-Slow: " + SECRET.encode())
    assert time.monotonic() - started < GROSS
    [answer] = answers(data)
    assert answer.status == 408
    assert answer.json()["error"]["code"] == "request_timeout"
    assert SECRET not in data.decode() + logged.text()
    [line] = logged.lines()
    assert (line["status"], line["outcome"], line["method"]) == (408, "client_timeout", "GET")


async def test_a_silent_connection_is_closed_at_the_header_deadline(
    gateway_settings: Settings, pg_pool: Any, start_gateway: StartGateway
) -> None:
    logged = await start_logged(start_gateway, gateway_settings, header_timeout=0.3)
    assert await exchange(logged.port, b"", timeout=GROSS) == b""  # closed, nothing to answer
    assert logged.lines() == []


async def test_an_idle_keep_alive_connection_is_closed_silently(
    gateway_settings: Settings, pg_pool: Any, start_gateway: StartGateway, token: Issued
) -> None:
    logged = await start_logged(start_gateway, gateway_settings, keepalive_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", logged.port)
    writer.write(get("/x", token))
    head = await asyncio.wait_for(read_head(reader), GROSS)
    length = int(re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE)[1])  # type: ignore[index]
    await reader.readexactly(length)
    assert await until_closed(reader, GROSS) == b""
    writer.close()


async def test_a_stalled_upload_gets_408_and_releases_the_upstream_connection(
    gateway_settings: Settings, pg_pool: Any, start_gateway: StartGateway, token: Issued
) -> None:
    async def wait_for_the_whole_body(reader: asyncio.StreamReader, _: Any) -> None:
        await read_head(reader)
        await reader.read()  # until the gateway gives the connection up

    upstream = RawUpstream(wait_for_the_whole_body)
    url = await upstream.start()
    logged = await start_logged(start_gateway, gateway_settings, upstream_url=url, body_timeout=0.3)
    upload = request_head(
        "POST", "/up", f"Authorization: Bearer {token.raw}", "Content-Length: 1000"
    )
    data = await exchange(logged.port, upload + b"x" * 10)
    [answer] = answers(data)
    assert answer.status == 408
    assert answer.json()["error"]["code"] == "request_timeout"
    await until(lambda: upstream.ended == 1, timeout=GROSS, what="upstream connection pinned")
    [line] = logged.lines()
    assert (line["status"], line["outcome"]) == (408, "client_timeout")
    await upstream.close()


async def test_a_client_that_never_reads_is_cut_and_holds_little(
    gateway_settings: Settings, pg_pool: Any, start_gateway: StartGateway, token: Issued
) -> None:
    gib = 1 << 30

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % gib)
        block = b"x" * 65536
        while upstream.sent < gib:
            writer.write(block)
            await writer.drain()  # only as fast as the gateway takes it
            upstream.sent += len(block)

    upstream = RawUpstream(endless)
    url = await upstream.start()
    logged = await start_logged(
        start_gateway, gateway_settings, upstream_url=url, write_timeout=0.3
    )
    sock = small_receive_buffer()
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", logged.port))
    _, writer = await asyncio.open_connection(sock=sock)
    writer.write(get("/big", token))
    await until(lambda: logged.client.server.connections == 0, timeout=GROSS, what="never cut")
    await until(lambda: upstream.ended == 1, timeout=GROSS, what="upstream connection pinned")
    # Back-pressure reached the upstream: it could send only what buffers hold.
    assert upstream.sent < 64 * 1024 * 1024
    [line] = logged.lines()
    assert (line["status"], line["outcome"]) == (200, "client_timeout")
    writer.close()
    await upstream.close()


# ---------------------------------------------------------------- the connection cap


async def test_at_the_cap_the_longest_idle_connections_make_room(
    gateway_settings: Settings, pg_pool: Any, start_gateway: StartGateway, token: Issued
) -> None:
    logged = await start_logged(start_gateway, gateway_settings, max_connections=20)
    slow = []
    for _ in range(60):  # slowloris: heads that never end
        reader, writer = await asyncio.open_connection("127.0.0.1", logged.port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: g\r\nX-Slow: a")
        slow.append((reader, writer))
    # The oldest were closed to make room, without an answer...
    for reader, _ in slow[:30]:
        assert await until_closed(reader, GROSS) == b""
    assert logged.client.server.connections <= 20
    # ...so a legitimate client still gets in.
    data = await exchange(logged.port, get("/x", token, "Connection: close"))
    assert answers(data)[0].status == 200
    for _, writer in slow:
        writer.close()


async def test_at_the_cap_with_nothing_idle_a_new_connection_gets_503(
    gateway_settings: Settings,
    pg_pool: Any,
    start_gateway: StartGateway,
    token: Issued,
    held: HeldUpstream,
) -> None:
    logged = await start_logged(
        start_gateway, gateway_settings, upstream_url=held.url, max_connections=2
    )
    busy = [
        asyncio.create_task(exchange(logged.port, get("/x", token, "Connection: close")))
        for _ in range(2)
    ]
    await until(lambda: held.heads == 2, timeout=GROSS, what="requests never in flight")
    data = await exchange(logged.port, get("/x", token))
    [answer] = answers(data)
    assert answer.status == 503
    assert answer.json()["error"]["code"] == "unavailable"
    assert answer.headers["Retry-After"] == "1"
    assert REQUEST_ID.fullmatch(answer.headers["X-Request-Id"])
    held.release.set()
    assert [answers(await task)[0].status for task in busy] == [200, 200]
    assert logged.count("unavailable") == 1


# ---------------------------------------------------------------- clients that leave


@pytest.fixture
async def before_held(
    gateway_settings: Settings, pg_pool: Any, start_gateway: StartGateway, held: HeldUpstream
) -> Logged:
    """A gateway in front of the held upstream."""
    return await start_logged(start_gateway, gateway_settings, upstream_url=held.url)


async def test_a_client_leaving_mid_upload_is_client_closed_not_an_upstream_error(
    before_held: Logged, held: HeldUpstream, token: Issued, caplog: pytest.LogCaptureFixture
) -> None:
    logged = before_held
    upload = f"POST /upload HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {token.raw}\r\n"
    upload += "Content-Length: 100000\r\n\r\n" + "x" * 1000
    with caplog.at_level(logging.INFO):
        _, writer = await asyncio.open_connection("127.0.0.1", logged.port)
        writer.write(upload.encode())
        await until(lambda: held.heads == 1, timeout=GROSS, what="upload never reached upstream")
        writer.close()  # mid-upload
        await until(lambda: logged.count("client_closed") == 1, timeout=GROSS)
        await until(lambda: held.ended == 1, timeout=GROSS, what="upstream connection pinned")
        gc.collect()  # an answer's error nobody retrieved is logged now, not in a later test
    [line] = logged.lines()
    assert (line["status"], line["outcome"]) == (499, "client_closed")
    assert line["token_id"] == token.token_id
    assert logged.count("upstream_error") == 0
    assert "upstream" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_client_leaving_before_its_answer_is_client_closed(
    before_held: Logged, held: HeldUpstream, token: Issued
) -> None:
    logged = before_held
    _, writer = await asyncio.open_connection("127.0.0.1", logged.port)
    writer.write(get("/x", token))
    await until(lambda: held.heads == 1, timeout=GROSS, what="request never reached upstream")
    writer.close()
    await until(lambda: logged.client.server.connections == 0, timeout=GROSS)
    held.release.set()  # the upstream answers, to a client that is gone
    await until(lambda: logged.count("client_closed") == 1, timeout=GROSS)
    [line] = logged.lines()
    assert (line["status"], line["outcome"]) == (499, "client_closed")
    assert logged.count("proxied") == 0


# ---------------------------------------------------------------- stopping


async def test_stopping_drains_requests_in_flight_and_closes_idle_connections(
    gateway_settings: Settings, pg_pool: Any, token: Issued, held: HeldUpstream
) -> None:
    settings = dataclasses.replace(gateway_settings, upstream_url=held.url)
    async with running(settings) as gateway:
        listening = serve(gateway, "127.0.0.1", 0, shutdown_timeout=GROSS)
        server = await listening.__aenter__()
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
        in_flight = asyncio.create_task(exchange(server.port, get("/x", token)))
        await until(lambda: held.heads == 1, timeout=GROSS, what="request never in flight")
        stopping = asyncio.create_task(listening.__aexit__(None, None, None))
        assert await until_closed(idle_reader, GROSS) == b""  # at once, not after the drain
        assert not stopping.done()
        held.release.set()
        [answer] = answers(await in_flight)
        assert (answer.status, answer.body) == (200, b"late")
        assert answer.headers["Connection"] == "close"
        await asyncio.wait_for(stopping, GROSS)
        idle_writer.close()


# ---------------------------------------------------------------- limits from settings


def test_the_connection_cap_is_derived_from_the_open_file_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    auto = ClientLimits.from_settings(Settings.from_env({})).max_connections
    if soft != resource.RLIM_INFINITY:
        # Room for an upstream connection per client and a reserve: never the fd limit.
        assert auto == max(16, min(100_000, (soft - 128) // 2))
        assert 2 * auto + 100 < soft or auto == 16
    given = Settings.from_env({"GATEWAY_MAX_CONNECTIONS": "7"})
    assert ClientLimits.from_settings(given).max_connections == 7
