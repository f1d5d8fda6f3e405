"""Forwarding to the upstream: a confined URL, filtered headers, bodies streamed both ways.

One :class:`~gateway.proxy.upstream.UpstreamClient` per process (made in :mod:`.app`):
a lean keep-alive HTTP/1.1 client for the one upstream, about half the CPU per
request of ``aiohttp.ClientSession``. Request and response bodies are streamed chunk
by chunk as they arrive; nothing is buffered whole. Failures before the answer
started become 502 (unreachable) or 504 (no headers within ``UPSTREAM_TIMEOUT``); a
body that stalls or breaks after the answer started cuts the connection, so the
client can tell the body is incomplete. A client that stalls or leaves mid-upload
raises from its body (408 / client_closed): the upstream connection is then
abandoned, and nothing is blamed on the upstream.

WebSocket handshakes go upstream with their ``Upgrade``/``Connection``; when the
upstream switches protocols (101), the client connection and the upstream one are
relayed to each other until either closes. Any other answer is passed back as the
upstream's refusal.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Final, NamedTuple
from urllib.parse import unquote

from multidict import CIMultiDict, MultiMapping
from yarl import URL

from gateway.core.errors import BadGateway, BadRequest, ClientClosed, GatewayTimeout, RequestTimeout

from .front import Request
from .front.response import no_body
from .upstream import UpstreamBroken, UpstreamClient, UpstreamResponse

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
    "traceparent",  # the handler's (the client's when valid: tracecontext.of)
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


_UPGRADE: Final = {"Connection": "Upgrade", "Upgrade": "websocket"}


class Forwarded(NamedTuple):
    upstream_seconds: float
    outcome: str  # "proxied", or why a started stream was cut


def escapes(raw_path: str) -> bool:
    """Whether a path has dot segments, literal or percent-encoded (also with \\ or %2F)."""
    return any(seg in (".", "..") for seg in _SEPARATORS.split(unquote(raw_path)))


def without(headers: MultiMapping[str], drop: tuple[str, ...]) -> CIMultiDict[str]:
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

    def target(self, request: Request) -> str:
        """UPSTREAM_URL's path + path + query (the request target sent upstream); 400 when
        the path could leave UPSTREAM_URL's path."""
        # The path exactly as received (absolute-form: its path only), never re-encoded.
        path, query = request.path, request.query
        if ("." in path or "%" in path or "\\" in path) and escapes(path):
            raise BadRequest("dot segments are not allowed in the path", code="invalid_path")
        return f"{self._prefix}{path}?{query}" if query else self._prefix + path

    def upstream_headers(self, request: Request, identity: Mapping[str, str]) -> CIMultiDict[str]:
        incoming = request.headers
        headers = without(incoming, _REQUEST_DROP)
        headers.update(identity)
        if "tracestate" in headers and identity.get("traceparent") != incoming.get("traceparent"):
            # The client's traceparent was replaced: its tracestate belongs to no trace now.
            del headers["tracestate"]
        remote = request.peer
        if remote and "X-Forwarded-For" not in identity:  # the handler's (TRUSTED_PROXIES)
            headers["X-Forwarded-For"] = remote
        headers["X-Forwarded-Proto"] = request.scheme
        host = incoming.get("Host")
        if host:
            headers["X-Forwarded-Host"] = host
        return headers

    async def forward(
        self,
        request: Request,
        url: str,
        identity: Mapping[str, str],
        extra: Mapping[str, str],
    ) -> Forwarded:
        """Send the request to ``url`` (see :meth:`target`) and stream the answer back.

        ``identity`` headers go upstream, ``extra`` headers go to the client.
        """
        headers = self.upstream_headers(request, identity)
        body = request if request.has_body else None
        started = time.perf_counter()
        try:
            # An upgrade is hop-by-hop, but this hop is the one being upgraded: the client
            # sends Connection/Upgrade for it.
            upstream = await self._client.request(
                request.method,
                url,
                headers.items(),
                body,
                request.content_length,
                upgrade=request.upgrade,
            )
        except TimeoutError:
            raise GatewayTimeout() from None
        except UpstreamBroken as err:  # it answered, but not with HTTP this gateway passes on
            log.warning("upstream answer refused: %s", err)
            raise BadGateway("the upstream API's answer was not valid HTTP") from None
        except OSError as err:
            log.warning("upstream unreachable: %s", err or type(err).__name__)
            raise BadGateway() from None
        upstream_seconds = time.perf_counter() - started
        try:
            headers = without(upstream.headers, _RESPONSE_DROP)
            headers.update(extra)
            if upstream.status == 101:  # only ever to a handshake (the pool refuses others)
                return Forwarded(upstream_seconds, await self._relay(request, upstream, headers))
            whole = upstream.complete_body()
            # HEAD, 1xx, 204 and 304 answers carry no body: their Content-Length must stay
            # the upstream's, not be recomputed from an empty body (they are "streamed").
            if whole is not None and not no_body(request.method, upstream.status):
                # The whole body came with the headers (the usual small API answer):
                # one write for both instead of one each. Nothing waits, nothing is
                # buffered beyond what already arrived.
                headers.popall("Content-Length", None)  # recomputed from the body
                request.respond(upstream.status, headers, whole, reason=upstream.reason)
                return Forwarded(upstream_seconds, "proxied")
            try:
                request.start(upstream.status, headers, reason=upstream.reason)
            except ClientClosed:  # the client left while we waited upstream
                return Forwarded(upstream_seconds, "client_closed")
            outcome = await self._stream(request, upstream, whole)
        finally:
            upstream.release()
        return Forwarded(upstream_seconds, outcome)

    async def _relay(
        self, request: Request, upstream: UpstreamResponse, headers: CIMultiDict[str]
    ) -> str:
        try:
            transport, leftover = upstream.upgrade()
        except OSError:
            raise BadGateway() from None
        headers.update(_UPGRADE)
        headers["Upgrade"] = upstream.headers.get("Upgrade", "websocket")
        try:
            await request.tunnel(101, headers, transport, leftover, reason=upstream.reason)
        except ClientClosed:
            return "client_closed"
        return "proxied"

    async def _stream(
        self, request: Request, upstream: UpstreamResponse, first: bytes | None
    ) -> str:
        try:
            if first:  # a HEAD/204/304 answer's empty "body", or bytes already received
                await request.write(first)
            while chunk := await upstream.read():
                await request.write(chunk)
        except TimeoutError:
            return self._cut(request, "upstream_timeout", "upstream body stalled")
        except OSError as err:
            return self._cut(request, "upstream_error", f"upstream body broke: {err}")
        except (ClientClosed, RequestTimeout) as err:
            request.cut()  # the client left, or read nothing for too long
            return err.outcome
        request.end()
        return "proxied"

    @staticmethod
    def _cut(request: Request, outcome: str, why: str) -> str:
        # The status line is sent already: closing the connection without the final
        # chunk is the only way left to tell the client the body is incomplete.
        log.warning("%s; cutting the answer to the client", why)
        request.cut()
        return outcome
