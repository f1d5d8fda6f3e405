"""Malformed and hostile upstream answers through the gateway (SPEC §5: upstream → 502):
a raw upstream on a real socket writes what no HTTP library would, the client must get
a clean 502 (or the upstream's answer, exactly), the access log and the metrics say
``upstream_error``, nothing is logged as a crash, and the next answer is in step."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway.core.config import Settings
from gateway.proxy.accesslog import AccessLog
from tests.conftest import IssueToken, StartGateway
from tests.helpers import bearer, sample
from tests.proxy.rawserver import Script, in_turn, raw_server

OK_HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
BIG = 300_000  # more than one read of the gateway's socket: the answer is streamed


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


@dataclass
class Front:
    """The gateway in front of a raw upstream, with its access log at hand."""

    client: Any
    headers: dict[str, str]
    log: AccessLog
    stream: io.StringIO

    async def get(self) -> aiohttp.ClientResponse:
        response: aiohttp.ClientResponse = await self.client.get("/x", headers=self.headers)
        return response

    def logged(self) -> list[dict[str, Any]]:
        self.log.flush()
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def counted(self, outcome: str) -> float:
        return sample(self.client.gateway, "gateway_requests_total", outcome=outcome)


@pytest.fixture
def front(settings: Settings, start_gateway: StartGateway, issue_token: IssueToken) -> Any:
    @asynccontextmanager
    async def start(script: Script) -> AsyncIterator[Front]:
        token = await issue_token()
        async with raw_server(script) as up:
            stream = io.StringIO()
            log = AccessLog("json", stream)  # type: ignore[arg-type]
            changed = dataclasses.replace(settings, upstream_url=up.url, log_format="json")
            client = await start_gateway(changed, access_log=log)
            yield Front(client, bearer(token.raw), log, stream)

    return start


async def refused(front: Front) -> None:
    """One request: a clean 502, counted and logged as the upstream's failure."""
    response = await front.get()
    assert response.status == 502
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Request-Id"]
    assert (await response.json())["error"] == {
        "code": "upstream_unreachable",
        "message": "the upstream API's answer was not valid HTTP",
    }
    assert front.counted("upstream_error") == 1
    line = front.logged()[-1]
    assert (line["status"], line["outcome"]) == (502, "upstream_error")


def no_crash(caplog: pytest.LogCaptureFixture) -> None:
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() for r in crashes]


@pytest.mark.parametrize("length", [5, 100])
@pytest.mark.parametrize("te_first", [False, True])
async def test_length_and_chunked_together_are_refused(
    front: Any, caplog: pytest.LogCaptureFixture, length: int, te_first: bool
) -> None:
    """Issue: the client got 5 of the bytes, or (Content-Length 100) the next answer as
    the rest of this body. Now a 502, and the next answer arrives as itself."""
    fields = [b"Content-Length: %d\r\n" % length, b"Transfer-Encoding: chunked\r\n"]
    if te_first:
        fields.reverse()
    both = b"HTTP/1.1 200 OK\r\n" + b"".join(fields) + b"\r\n" + chunked(b"z" * BIG)
    async with front(in_turn(both, OK_HELLO)) as gateway:
        await refused(gateway)
        response = await gateway.get()  # the same client connection
        assert (response.status, await response.read()) == (200, b"hello")
        assert response.headers["Content-Length"] == "5"
    no_crash(caplog)


def ending(head: bytes) -> bytes:
    return head + b"Content-Length: 5\r\n\r\nhello"


@pytest.mark.parametrize(
    "answer",
    [
        ending(b"HTTP/1.1 200 OK\r\nX-A: a\nb\r\n"),  # bare LF in a field value
        ending(b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\n"),  # bare CR in a field value
        ending(b"HTTP/1.1 200 O\nK\r\n"),  # bare LF in the reason phrase
        ending(b"HTTP/1.1 200 O\rK\r\n"),  # bare CR in the reason phrase
        ending(b"HTTP/1.1 200 O\x1bK\r\n"),  # another control character there
        ending(b"HTTP/1.1 200 OK\r\nX Bad Name: 1\r\n"),  # a field name that is not a token
        ending(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n"),  # obsolete line folding
        ending(b"HTTP/1.1 200 OK\r\nX-Filler: " + b"x" * 70_000 + b"\r\n"),  # over the limit
        ending(b"HTTP/1.1 100 Continue\r\n\r\n" * 3000 + b"HTTP/1.1 200 OK\r\n"),  # one write
        ending(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"),
        ending(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"),
        # A body longer than its Content-Length: the rest is never taken for the next answer.
        ending(b"HTTP/1.1 200 OK\r\n") + b", and more",
    ],
)
async def test_malformed_answers_are_a_clean_502(
    front: Any, caplog: pytest.LogCaptureFixture, answer: bytes
) -> None:
    """Issue: no answer at all while the log said 200 proxied (bare CR/LF), a 500 (LF
    in the reason), the bad field passed on, a RecursionError (3,000 interim answers)."""
    async with front(in_turn(answer, OK_HELLO)) as gateway:
        await refused(gateway)
        response = await gateway.get()
        assert (response.status, await response.read()) == (200, b"hello")
    no_crash(caplog)


async def test_oversized_chunk_line_is_the_upstreams_failure(
    front: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused once it passes the limit: a 502 if the head had not gone to the client
    yet, else the stream is cut (whichever read the limit is passed in)."""
    endless = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x="
        + b"x" * (1024 * 1024)
        + b"\r\nhello\r\n0\r\n\r\n"
    )
    async with front(in_turn(endless, OK_HELLO)) as gateway:
        response = await gateway.get()
        if response.status == 200:
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        else:
            assert response.status == 502
        assert gateway.counted("upstream_error") == 1
        assert gateway.logged()[-1]["outcome"] == "upstream_error"
    no_crash(caplog)


async def test_streamed_chunked_answer_has_no_upstream_length(front: Any) -> None:
    """The client's framing is the gateway's own: a streamed chunked answer carries no
    Content-Length, and arrives whole."""
    body = bytes(range(256)) * (BIG // 256)
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body)
    async with front(in_turn(answer)) as gateway:
        response = await gateway.get()
        assert response.status == 200
        assert "Content-Length" not in response.headers
        assert await response.read() == body
