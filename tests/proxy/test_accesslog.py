"""The access log: one line per request, JSON or text, never the token."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import os
import time
from typing import Any

import pytest

from gateway.core.config import Settings
from gateway.proxy.accesslog import AccessLog, pieces
from tests.conftest import IssueToken, StartGateway


async def logged_client(
    settings: Settings, start_gateway: StartGateway, log_format: str
) -> tuple[Any, AccessLog, io.StringIO]:
    stream = io.StringIO()
    access_log = AccessLog(log_format, stream)  # type: ignore[arg-type]
    settings = dataclasses.replace(settings, log_format=log_format)
    client = await start_gateway(settings, access_log=access_log)
    return client, access_log, stream


async def test_json_lines_describe_each_request(
    gateway_settings: Settings, start_gateway: StartGateway, issue_token: IssueToken
) -> None:
    client, access_log, stream = await logged_client(gateway_settings, start_gateway, "json")
    issued = await issue_token()
    headers = {"Authorization": f"Bearer {issued.raw}", "X-Request-Id": "trace-1"}
    assert (await client.post("/v1/x?secret=hidden", headers=headers, data=b"x")).status == 200
    assert (await client.get("/v1/y")).status == 401
    access_log.flush()
    text = stream.getvalue()
    assert issued.raw not in text
    assert "hidden" not in text  # the query string is not logged
    proxied, refused = (json.loads(line) for line in text.splitlines())
    assert proxied["request_id"] == "trace-1"
    assert proxied["method"] == "POST"
    assert proxied["path"] == "/v1/x"
    assert proxied["status"] == 200
    assert proxied["outcome"] == "proxied"
    assert proxied["token_id"] == issued.token_id
    assert proxied["project_id"] == issued.project_id
    assert 0 < proxied["upstream_ms"] <= proxied["duration_ms"]
    assert proxied["time"].endswith("Z")
    assert refused["status"] == 401
    assert refused["outcome"] == "unauthenticated"
    assert refused["token_id"] is None
    assert refused["upstream_ms"] is None


async def test_text_lines(
    gateway_settings: Settings, start_gateway: StartGateway, issue_token: IssueToken
) -> None:
    client, access_log, stream = await logged_client(gateway_settings, start_gateway, "text")
    issued = await issue_token()
    await client.get("/v1/z", headers={"Authorization": f"Bearer {issued.raw}"})
    access_log.flush()
    fields = stream.getvalue().split()
    assert fields[2:6] == ["GET", "/v1/z", "200", "proxied"]
    # The trace id last: it came after the other fields, which kept their places.
    assert fields[-3:-1] == [issued.token_id, issued.project_id]
    assert len(fields[-1]) == 32 and int(fields[-1], 16)
    assert issued.raw not in stream.getvalue()


async def test_lines_are_written_soon_without_a_flush() -> None:
    stream = io.StringIO()
    access_log = AccessLog("json", stream, flush_interval=0.01)
    access_log.log("r", None, "GET", "/p", 200, "proxied", 0.001, 0.0005, "t", "p")
    assert stream.getvalue() == ""  # batched...
    deadline = time.monotonic() + 5
    while not stream.getvalue():  # ...then written by the timer
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    assert json.loads(stream.getvalue())["path"] == "/p"


@pytest.mark.parametrize("path", ['/a"b', "/a\\b", "/ü"])
async def test_json_escapes_paths(path: str) -> None:
    stream = io.StringIO()
    access_log = AccessLog("json", stream)
    access_log.log("r", None, "GET", path, 200, "proxied", 0.001, None, None, None)
    access_log.flush()
    assert json.loads(stream.getvalue())["path"] == path


async def test_logging_is_cheaper_than_the_logging_module() -> None:
    """Relative, so it holds on a busy machine: well under one stdlib log call per line."""
    access_log = AccessLog("json", io.StringIO(), batch=10_000)
    stdlib = logging.getLogger("tollgate.test.access")
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    stdlib.addHandler(handler)
    stdlib.propagate = False
    stdlib.setLevel(logging.INFO)

    def ours() -> None:
        access_log.log(
            "abc123",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "GET",
            "/v1/validate",
            200,
            "proxied",
            0.0012,
            0.0009,
            "t",
            "p",
        )

    def theirs() -> None:
        stdlib.info('%s "%s %s" %d %s', "127.0.0.1", "GET", "/v1/validate", 200, "proxied")

    best = {ours: float("inf"), theirs: float("inf")}
    for _ in range(5):
        for func in best:
            started = time.perf_counter()
            for _ in range(1000):
                func()
            best[func] = min(best[func], time.perf_counter() - started)
        access_log.flush()
    stdlib.removeHandler(handler)
    assert best[ours] < 0.5 * best[theirs]


async def test_aiohttp_access_log_is_off(
    gateway_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiohttp.access"):
        assert (await gateway_client.get("/x")).status == 401
    assert not [r for r in caplog.records if r.name == "aiohttp.access"]


def test_pieces_are_whole_lines_within_the_atomic_size() -> None:
    lines = [f"line {i} " + "x" * (i % 300) + "\n" for i in range(200)]
    out = list(pieces(lines, limit=1000))
    assert b"".join(out) == "".join(lines).encode()
    assert all(len(piece) <= 1000 and piece.endswith(b"\n") for piece in out)
    assert len(out) > 1
    long = ["y" * 3000 + "\n", "short\n"]
    assert list(pieces(long, limit=1000)) == [long[0].encode(), b"short\n"]


async def test_lines_reach_a_pipe_intact() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader, os.fdopen(write_end, "w") as writer:
        access_log = AccessLog("json", writer)
        for i in range(100):
            access_log.log(f"r{i}", None, "GET", f"/p/{i}", 200, "proxied", 0.001, None, "t", "p")
        access_log.flush()
        writer.close()
        lines = reader.read().decode().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [f"r{i}" for i in range(100)]
