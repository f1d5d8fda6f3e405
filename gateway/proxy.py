"""Forwarding to the upstream: a confined URL, filtered headers, bodies streamed both ways.

One ClientSession per app (see :func:`client_session`). Request and response bodies
are streamed chunk by chunk as they arrive (``iter_any``); nothing is buffered
whole. Failures before the answer started become 502 (unreachable) or 504 (no
headers within ``UPSTREAM_TIMEOUT``); a body that stalls or breaks after the answer
started cuts the connection, so the client can tell the body is incomplete.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable, Mapping
from typing import Final, NamedTuple
from urllib.parse import unquote

from aiohttp import (
    ClientError,
    ClientRequest,
    ClientSession,
    ClientTimeout,
    DummyCookieJar,
    StreamReader,
    TCPConnector,
    web,
)
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .errors import BadGateway, BadRequest, GatewayTimeout

log = logging.getLogger(__name__)

# Upstream connections per process. aiohttp's default (100) queues every request past
# the 100th in flight; at ~10k requests/s and tens of ms per upstream answer a worker
# has a few hundred in flight, so allow that many and no more (the upstream's capacity).
CONNECTION_LIMIT: Final = 512

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
# Never passed upstream as the client sent them: the credential, what aiohttp sets
# itself (Host, Expect), and every identity header we set (a client could forge them).
_REQUEST_DROP: Final = (
    *HOP_BY_HOP,
    "authorization",
    "host",
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
# aiohttp adds these unless told not to: a proxy must not invent them (an invented
# Accept-Encoding would make the upstream compress for a client that cannot decode).
_NO_AUTO_HEADERS: Final = CIMultiDict(
    (name, None) for name in ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
)


class UpstreamRequest(ClientRequest):
    """A client request that sends the client's headers and invents none.

    ``skip_auto_headers`` would do the same, but aiohttp rebuilds and sorts the skip
    list and copies the headers on every request: about 10 µs of a ~140 µs request.
    """

    def update_auto_headers(self, skip_auto_headers: Iterable[str] | None) -> None:
        # Still consulted later, for the Content-Type a body would otherwise get.
        self._skip_auto_headers = _NO_AUTO_HEADERS


_SEPARATORS = re.compile(r"[/\\]")


def client_session() -> ClientSession:
    return ClientSession(
        connector=TCPConnector(limit=CONNECTION_LIMIT, limit_per_host=0),
        auto_decompress=False,  # pass bodies through exactly as encoded
        request_class=UpstreamRequest,
        # Cookies belong to the clients: a shared jar would hand one client's to another.
        cookie_jar=DummyCookieJar(),
    )


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


class Proxy:
    def __init__(self, session: ClientSession, upstream_url: str, timeout: float) -> None:
        base = URL(upstream_url)
        self._session = session
        self._prefix = str(base.origin()) + base.raw_path.rstrip("/")
        self._timeout = ClientTimeout(
            total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
        )

    def target(self, request: web.BaseRequest) -> URL:
        """UPSTREAM_URL + path + query; 400 when the path could leave UPSTREAM_URL's path."""
        # The request target exactly as received: the URL object would re-encode it.
        path, _, query = request.raw_path.partition("?")
        if not path.startswith("/"):  # absolute-form ("GET http://host/path"): its path only
            path = request.rel_url.raw_path
        if ("." in path or "%" in path or "\\" in path) and escapes(path):
            raise BadRequest("dot segments are not allowed in the path", code="invalid_path")
        return URL(f"{self._prefix}{path}?{query}" if query else self._prefix + path, encoded=True)

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
        request: web.Request,
        url: URL,
        identity: Mapping[str, str],
        extra: Mapping[str, str],
    ) -> Forwarded:
        """Send the request to ``url`` (see :meth:`target`) and stream the answer back.

        ``identity`` headers go upstream, ``extra`` headers go to the client.
        """
        headers = self.upstream_headers(request, identity)
        data = request.content if request.body_exists else None
        started = time.perf_counter()
        try:
            upstream = await self._session.request(
                request.method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=self._timeout,
            )
        except TimeoutError:
            raise GatewayTimeout() from None
        except (ClientError, OSError) as err:
            log.warning("upstream unreachable: %s", err or type(err).__name__)
            raise BadGateway() from None
        upstream_seconds = time.perf_counter() - started
        try:
            headers = without(upstream.headers, _RESPONSE_DROP)
            headers.update(extra)
            content = upstream.content
            if content.is_eof() and _may_have_body(request.method, upstream.status):
                # The whole body came with the headers (the usual small API answer):
                # one write for both instead of one each. Nothing waits, nothing is
                # buffered beyond what already arrived.
                headers.popall("Content-Length", None)  # recomputed from the body
                response: web.StreamResponse = web.Response(
                    status=upstream.status,
                    reason=upstream.reason,
                    headers=headers,
                    body=content.read_nowait(),
                )
                return Forwarded(response, upstream_seconds, "proxied")
            response = web.StreamResponse(
                status=upstream.status, reason=upstream.reason, headers=headers
            )
            try:
                await response.prepare(request)
            except ConnectionResetError:  # the client left while we waited upstream
                return Forwarded(response, upstream_seconds, "proxied")
            outcome = await self._stream(request, content, response)
        finally:
            upstream.release()
        return Forwarded(response, upstream_seconds, outcome)

    async def _stream(
        self, request: web.Request, content: StreamReader, response: web.StreamResponse
    ) -> str:
        try:
            async for chunk in content.iter_any():
                await response.write(chunk)
        except TimeoutError:
            return self._cut(request, "upstream_timeout", "upstream body stalled")
        except (ClientError, OSError) as err:
            if request.transport is None or request.transport.is_closing():
                return "proxied"  # the client went away; nothing to tell it
            return self._cut(request, "upstream_error", f"upstream body broke: {err}")
        except asyncio.CancelledError:
            raise
        return "proxied"

    @staticmethod
    def _cut(request: web.Request, outcome: str, why: str) -> str:
        # The status line is sent already: closing the connection without the final
        # chunk is the only way left to tell the client the body is incomplete.
        log.warning("%s; cutting the answer to the client", why)
        transport = request.transport
        if transport is not None:
            transport.abort()
        return outcome
