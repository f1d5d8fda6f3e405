"""Forwarding to the upstream: a confined URL, filtered headers, bodies streamed both ways.

One :class:`~gateway.proxy.upstream.UpstreamClient` per process (made in :mod:`.app`):
a lean keep-alive HTTP/1.1 client for the one upstream, about half the CPU per
request of ``aiohttp.ClientSession``. Request and response bodies are streamed chunk
by chunk as they arrive; nothing is buffered whole. Failures before the answer
started become 502 (unreachable) or 504 (no headers within ``UPSTREAM_TIMEOUT``); a
body that stalls or breaks after the answer started cuts the connection, so the
client can tell the body is incomplete.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Final, NamedTuple
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.core.errors import BadGateway, BadRequest, GatewayTimeout

from .upstream import UpstreamClient, UpstreamResponse

log = logging.getLogger(__name__)

# RFC 9110 §7.6.1 hop-by-hop fields, plus the legacy ones proxies still meet.
HOP_BY_HOP: Final = (
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
)
# Never passed upstream as the client sent them: the credential, what the upstream
# client sets itself (Host, the body's framing; Expect), and every identity header we
# set (a client could forge them).
_REQUEST_DROP: Final = (
    *HOP_BY_HOP,
    "authorization",
    "host",
    "content-length",
    "expect",
    "x-project-id",
    "x-token-id",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
)
# Set by the gateway on every answer; the upstream's values would contradict ours.
_RESPONSE_DROP: Final = (
    *HOP_BY_HOP,
    "x-request-id",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
)
_SEPARATORS = re.compile(r"[/\\]")


def _may_have_body(method: str, status: int) -> bool:
    # HEAD, 1xx, 204 and 304 answers carry no body: their Content-Length must stay
    # the upstream's, not be recomputed from an empty body.
    return method != "HEAD" and status >= 200 and status not in (204, 304)


class Forwarded(NamedTuple):
    response: web.StreamResponse
    upstream_seconds: float
    outcome: str  # "proxied", or why a started stream was cut


def escapes(raw_path: str) -> bool:
    """Whether a path has dot segments, literal or percent-encoded (also with \\ or %2F)."""
    return any(seg in (".", "..") for seg in _SEPARATORS.split(unquote(raw_path)))


def without(headers: CIMultiDictProxy[str], drop: tuple[str, ...]) -> CIMultiDict[str]:
    """A copy of ``headers`` without ``drop`` and the fields named in ``Connection``.

    Copying the whole multidict (in C) and deleting the few names present is several
    times faster than filtering name by name in Python.
    """
    out = CIMultiDict(headers)
    for name in drop:
        if name in out:
            del out[name]
    connection = headers.get("Connection")
    if connection:
        for name in connection.split(","):
            name = name.strip()
            if name and name in out:
                del out[name]
    return out


class Forwarder:
    def __init__(self, client: UpstreamClient, upstream_url: str) -> None:
        self._client = client
        self._prefix = URL(upstream_url).raw_path.rstrip("/")

    def target(self, request: web.BaseRequest) -> str:
        """UPSTREAM_URL's path + path + query (the request target sent upstream); 400 when
        the path could leave UPSTREAM_URL's path."""
        # The request target exactly as received: the URL object would re-encode it.
        path, _, query = request.raw_path.partition("?")
        if not path.startswith("/"):  # absolute-form ("GET http://host/path"): its path only
            path = request.rel_url.raw_path
        if ("." in path or "%" in path or "\\" in path) and escapes(path):
            raise BadRequest("dot segments are not allowed in the path", code="invalid_path")
        return f"{self._prefix}{path}?{query}" if query else self._prefix + path

    def upstream_headers(
        self, request: web.BaseRequest, identity: Mapping[str, str]
    ) -> CIMultiDict[str]:
        incoming = request.headers
        headers = without(incoming, _REQUEST_DROP)
        headers.update(identity)
        remote = request.remote
        if remote:
            headers["X-Forwarded-For"] = remote
        headers["X-Forwarded-Proto"] = request.scheme
        host = incoming.get("Host")
        if host:
            headers["X-Forwarded-Host"] = host
        return headers

    async def forward(
        self,
        request: web.BaseRequest,
        url: str,
        identity: Mapping[str, str],
        extra: Mapping[str, str],
    ) -> Forwarded:
        """Send the request to ``url`` (see :meth:`target`) and stream the answer back.

        ``identity`` headers go upstream, ``extra`` headers go to the client.
        """
        headers = self.upstream_headers(request, identity)
        body = request.content.iter_any() if request.body_exists else None
        started = time.perf_counter()
        try:
            upstream = await self._client.request(
                request.method, url, headers.items(), body, request.content_length
            )
        except TimeoutError:
            raise GatewayTimeout() from None
        except OSError as err:
            log.warning("upstream unreachable: %s", err or type(err).__name__)
            raise BadGateway() from None
        upstream_seconds = time.perf_counter() - started
        try:
            headers = without(upstream.headers, _RESPONSE_DROP)
            headers.update(extra)
            whole = upstream.complete_body()
            if whole is not None and _may_have_body(request.method, upstream.status):
                # The whole body came with the headers (the usual small API answer):
                # one write for both instead of one each. Nothing waits, nothing is
                # buffered beyond what already arrived.
                headers.popall("Content-Length", None)  # recomputed from the body
                response: web.StreamResponse = web.Response(
                    status=upstream.status,
                    reason=upstream.reason,
                    headers=headers,
                    body=whole,
                )
                return Forwarded(response, upstream_seconds, "proxied")
            response = web.StreamResponse(
                status=upstream.status, reason=upstream.reason, headers=headers
            )
            try:
                await response.prepare(request)
            except ConnectionResetError:  # the client left while we waited upstream
                return Forwarded(response, upstream_seconds, "proxied")
            outcome = await self._stream(request, upstream, whole, response)
        finally:
            upstream.release()
        return Forwarded(response, upstream_seconds, outcome)

    async def _stream(
        self,
        request: web.BaseRequest,
        upstream: UpstreamResponse,
        first: bytes | None,
        response: web.StreamResponse,
    ) -> str:
        try:
            if first:  # a HEAD/204/304 answer's empty "body", or bytes already received
                await response.write(first)
            while chunk := await upstream.read():
                await response.write(chunk)
        except TimeoutError:
            return self._cut(request, "upstream_timeout", "upstream body stalled")
        except OSError as err:
            if request.transport is None or request.transport.is_closing():
                return "proxied"  # the client went away; nothing to tell it
            return self._cut(request, "upstream_error", f"upstream body broke: {err}")
        return "proxied"

    @staticmethod
    def _cut(request: web.BaseRequest, outcome: str, why: str) -> str:
        # The status line is sent already: closing the connection without the final
        # chunk is the only way left to tell the client the body is incomplete.
        log.warning("%s; cutting the answer to the client", why)
        transport = request.transport
        if transport is not None:
            transport.abort()
        return outcome
