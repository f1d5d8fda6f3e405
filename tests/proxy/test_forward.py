"""Forwarding (SPEC §5 item 5): a real upstream on a real socket behind the gateway."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway.core.config import Settings
from gateway.proxy.forward import escapes
from tests.conftest import Issued, IssueToken, StartGateway
from tests.helpers import bearer, free_port, sample
from tests.upstream import pattern


@pytest.fixture
async def token(issue_token: IssueToken) -> Issued:
    return await issue_token()


def exact(client: Any, target: str) -> URL:
    """An absolute URL that reaches the gateway with ``target`` byte for byte (no dot
    segment folding, no re-encoding): the test client would normalise a relative one."""
    return URL(f"http://127.0.0.1:{client.port}{target}", encoded=True)


def headers_of(echo: dict[str, Any]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_method_path_and_query_reach_the_upstream(
    gateway_client: Any, token: Issued, method: str
) -> None:
    target = exact(gateway_client, "/v1/check%20this?email=a%40b.c&x=1&x=2")
    response = await gateway_client.session.request(method, target, headers=bearer(token.raw))
    assert response.status == 200
    echo = await response.json()
    assert echo["method"] == method
    # Appended to UPSTREAM_URL's path, encoding kept byte for byte.
    assert echo["raw_path"] == "/base/v1/check%20this"
    assert echo["query"] == "email=a%40b.c&x=1&x=2"


async def test_identity_headers_are_set_and_credentials_hidden(
    gateway_client: Any, token: Issued
) -> None:
    forged = {
        "X-Project-Id": "forged",
        "X-Token-Id": "forged",
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Proto": "gopher",
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "for=6.6.6.6",
        "X-Custom": "kept",
    }
    response = await gateway_client.get(
        "/x", headers=bearer(token.raw, **forged, **{"X-Request-Id": "req-1.A_b"})
    )
    seen = headers_of(await response.json())
    assert "authorization" not in seen
    assert seen["x-project-id"] == [token.project_id]
    assert seen["x-token-id"] == [token.token_id]
    assert seen["x-request-id"] == ["req-1.A_b"]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == [f"127.0.0.1:{gateway_client.port}"]
    assert "forwarded" not in seen
    assert seen["x-custom"] == ["kept"]
    # The upstream's host, not the gateway's, in Host.
    assert seen["host"][0] != f"127.0.0.1:{gateway_client.port}"


async def test_hop_by_hop_request_headers_are_dropped(gateway_client: Any, token: Issued) -> None:
    response = await gateway_client.get(
        "/x",
        headers=bearer(
            token.raw,
            **{
                "Connection": "keep-alive, X-Private-Hop",
                "X-Private-Hop": "do not forward",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Proxy-Authorization": "Basic eDp5",
                "Upgrade": "h2c",
            },
        ),
    )
    seen = headers_of(await response.json())
    for name in ("x-private-hop", "keep-alive", "te", "proxy-authorization", "upgrade"):
        assert name not in seen, name
    assert seen.get("connection", ["keep-alive"]) == ["keep-alive"]  # aiohttp's own


async def test_hop_by_hop_response_headers_are_dropped(gateway_client: Any, token: Issued) -> None:
    response = await gateway_client.get(
        "/hop", headers=bearer(token.raw, **{"X-Request-Id": "mine"})
    )
    assert response.status == 200
    headers = response.headers
    assert "X-Private-Hop" not in headers
    assert "Keep-Alive" not in headers
    assert "Proxy-Authenticate" not in headers
    assert headers["X-Upstream"] == "kept"
    assert headers.getall("Set-Cookie") == ["a=1", "b=2"]
    # The gateway's own headers win over the upstream's.
    assert headers.getall("X-Request-Id") == ["mine"]
    assert headers.getall("RateLimit-Limit") == ["600"]


async def test_rate_limit_headers_on_proxied_answers(gateway_client: Any, token: Issued) -> None:
    response = await gateway_client.get("/x", headers=bearer(token.raw))
    assert response.headers["RateLimit-Limit"] == "600"
    assert response.headers["RateLimit-Remaining"] == "599"
    assert int(response.headers["RateLimit-Reset"]) >= 0


@pytest.mark.parametrize(
    ("given", "kept"),
    [("abc-123_X.y", True), ("x" * 128, True), ("x" * 129, False), ("bad id", False), ("", False)],
)
async def test_request_id_is_kept_when_valid(
    gateway_client: Any, token: Issued, given: str, kept: bool
) -> None:
    for headers in (bearer(token.raw), {}):  # proxied and refused answers alike
        response = await gateway_client.get("/x", headers={**headers, "X-Request-Id": given})
        request_id = response.headers["X-Request-Id"]
        assert (request_id == given) is kept
        assert 1 <= len(request_id) <= 128


async def test_new_request_ids_are_unique(gateway_client: Any) -> None:
    ids = {(await gateway_client.get("/x")).headers["X-Request-Id"] for _ in range(20)}
    assert len(ids) == 20


async def test_one_mebibyte_upload_arrives_intact(gateway_client: Any, token: Issued) -> None:
    body = pattern(1024 * 1024)
    response = await gateway_client.post("/upload", data=body, headers=bearer(token.raw))
    echo = await response.json()
    assert echo["body_length"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


async def test_chunked_upload_is_streamed_on(gateway_client: Any, token: Issued) -> None:
    body = pattern(1024 * 1024)

    async def chunks() -> Any:
        for start in range(0, len(body), 100_000):
            yield body[start : start + 100_000]

    response = await gateway_client.post("/upload", data=chunks(), headers=bearer(token.raw))
    echo = await response.json()
    assert echo["chunked"] is True
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


async def test_multi_megabyte_download_streams_intact(gateway_client: Any, token: Issued) -> None:
    size = 8 * 1024 * 1024
    response = await gateway_client.get(f"/download?size={size}", headers=bearer(token.raw))
    assert response.status == 200
    digest = hashlib.sha256()
    pieces = 0
    async for chunk in response.content.iter_any():
        digest.update(chunk)
        pieces += 1
    assert digest.hexdigest() == hashlib.sha256(pattern(size)).hexdigest()
    assert pieces > 1  # arrived as a stream, not one buffered blob


async def test_compressed_body_passes_through_untouched(gateway_client: Any, token: Issued) -> None:
    response = await gateway_client.get(
        "/gzip", headers=bearer(token.raw, **{"Accept-Encoding": "gzip"}), auto_decompress=False
    )
    assert response.headers["Content-Encoding"] == "gzip"
    raw = await response.read()
    assert gzip.decompress(raw) == b"compressed payload " * 100
    assert int(response.headers["Content-Length"]) == len(raw)


async def test_no_accept_encoding_is_invented(gateway_client: Any, token: Issued) -> None:
    response = await gateway_client.get(
        "/x",
        headers=bearer(token.raw),
        skip_auto_headers=["Accept", "Accept-Encoding", "User-Agent"],
    )
    seen = headers_of(await response.json())
    assert "accept-encoding" not in seen
    assert "user-agent" not in seen
    assert "accept" not in seen


async def test_no_content_type_is_invented(gateway_client: Any, token: Issued) -> None:
    response = await gateway_client.post(
        "/x", data=b"raw bytes", headers=bearer(token.raw), skip_auto_headers=["Content-Type"]
    )
    echo = await response.json()
    assert "content-type" not in headers_of(echo)
    assert echo["body_length"] == len(b"raw bytes")


async def test_redirects_are_passed_back_not_followed(gateway_client: Any, token: Issued) -> None:
    response = await gateway_client.get(
        "/redirect", headers=bearer(token.raw), allow_redirects=False
    )
    assert response.status == 302
    assert response.headers["Location"] == "/elsewhere"


async def test_upstream_status_passes_through(gateway_client: Any, token: Issued) -> None:
    response = await gateway_client.get("/status/418", headers=bearer(token.raw))
    assert response.status == 418
    assert await response.text() == "as asked"
    assert sample(gateway_client.gateway, "gateway_requests_total", outcome="proxied") == 1


@pytest.mark.parametrize(
    "path",
    [
        "/a/../b",
        "/..",
        "/a/./b",
        "/a/%2e%2e/b",
        "/a/%2E%2e/b",
        "/a/.%2e/b",
        "/a/%2e/b",
        "/a/..%2f..%2fadmin",
        "/a/..%5cadmin",
        "/a\\..\\b",
    ],
)
async def test_dot_segments_are_refused(gateway_client: Any, token: Issued, path: str) -> None:
    response = await gateway_client.session.get(
        exact(gateway_client, path), headers=bearer(token.raw)
    )
    assert response.status == 400
    body = await response.json()
    assert body["error"]["code"] == "invalid_path"
    assert sample(gateway_client.gateway, "gateway_requests_total", outcome="invalid_request") == 1


@pytest.mark.parametrize("path", ["/a..b/c", "/.well-known/x", "/a/...", "//double", "/%252e%252e"])
async def test_paths_that_stay_inside_are_forwarded(
    gateway_client: Any, token: Issued, path: str
) -> None:
    response = await gateway_client.session.get(
        exact(gateway_client, path), headers=bearer(token.raw)
    )
    assert response.status == 200
    assert (await response.json())["raw_path"] == "/base" + path


def test_escapes() -> None:
    assert escapes("/..")
    assert escapes("/%2e%2E")
    assert not escapes("/a.b/.c/..d")


async def client_for(settings: Settings, start_gateway: StartGateway, **changes: Any) -> Any:
    return await start_gateway(dataclasses.replace(settings, **changes))


async def test_unreachable_upstream_is_502(
    gateway_settings: Settings, start_gateway: StartGateway, issue_token: IssueToken
) -> None:
    token = await issue_token()
    client = await client_for(
        gateway_settings, start_gateway, upstream_url=f"http://127.0.0.1:{free_port()}"
    )
    response = await client.get("/x", headers=bearer(token.raw))
    assert response.status == 502
    assert (await response.json())["error"]["code"] == "upstream_unreachable"
    assert response.headers["X-Request-Id"]
    assert sample(client.gateway, "gateway_requests_total", outcome="upstream_error") == 1


async def test_upstream_without_headers_in_time_is_504(
    gateway_settings: Settings, start_gateway: StartGateway, issue_token: IssueToken
) -> None:
    token = await issue_token()
    client = await client_for(gateway_settings, start_gateway, upstream_timeout=0.2)
    response = await client.get("/slow-headers?delay=5", headers=bearer(token.raw))
    assert response.status == 504
    assert (await response.json())["error"]["code"] == "upstream_timeout"
    assert sample(client.gateway, "gateway_requests_total", outcome="upstream_timeout") == 1


async def test_stalled_body_cuts_the_stream(
    gateway_settings: Settings, start_gateway: StartGateway, issue_token: IssueToken
) -> None:
    token = await issue_token()
    client = await client_for(gateway_settings, start_gateway, upstream_timeout=0.2)
    response = await client.get("/slow-body?delay=5", headers=bearer(token.raw))
    assert response.status == 200  # the status line had gone out already
    # The client can tell: the body ends without its final chunk.
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    assert sample(client.gateway, "gateway_requests_total", outcome="upstream_timeout") == 1


async def test_upstream_url_path_with_trailing_slash(
    gateway_settings: Settings, start_gateway: StartGateway, issue_token: IssueToken, upstream: Any
) -> None:
    token = await issue_token()
    client = await client_for(
        gateway_settings, start_gateway, upstream_url=str(upstream.make_url("/base/"))
    )
    response = await client.get("/v1", headers=bearer(token.raw))
    assert (await response.json())["raw_path"] == "/base/v1"


async def test_head_keeps_the_upstream_content_length(gateway_client: Any, token: Issued) -> None:
    full = await gateway_client.get("/gzip", headers=bearer(token.raw), auto_decompress=False)
    length = len(await full.read())
    response = await gateway_client.head("/gzip", headers=bearer(token.raw))
    assert response.status == 200
    assert response.headers["Content-Length"] == str(length)
    assert await response.read() == b""


async def test_no_content_answers_pass_through(gateway_client: Any, token: Issued) -> None:
    response = await gateway_client.delete("/status/204", headers=bearer(token.raw))
    assert response.status == 204
    assert await response.read() == b""


async def test_authenticated_requests_record_last_use(
    gateway_client: Any, issue_token: IssueToken, pg_pool: Any
) -> None:
    used = await issue_token()
    idle = await issue_token()
    assert (await gateway_client.get("/x", headers=bearer(used.raw))).status == 200
    # An unauthenticated request records nothing.
    assert (await gateway_client.get("/x")).status == 401

    async def last_used(issued: Issued) -> Any:
        query = "SELECT last_used_at FROM tokens WHERE id = $1"
        return await pg_pool.fetchval(query, issued.token_id)

    # LAST_USED_FLUSH_INTERVAL is 0.05 s in tests: poll, with a deadline.
    deadline = asyncio.get_running_loop().time() + 5
    while await last_used(used) is None:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    assert await last_used(idle) is None
