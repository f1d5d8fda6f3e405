"""What a request head must be for the gateway to serve it, beyond what llhttp checks.

Each function returns what the connection needs from the head, or raises the
:mod:`gateway.core.errors` refusal; none of the messages repeats the client's bytes.
"""

from __future__ import annotations

import logging
from typing import Final

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserInvalidMethodError,
    HttpParserInvalidURLError,
)
from httptools import parse_url as _parse_url
from multidict import CIMultiDict

from gateway.core.errors import (
    BadRequest,
    HeaderFieldsTooLarge,
    HTTPVersionNotSupported,
    MethodNotAllowed,
    URITooLong,
)

from .limits import MAX_FIELD, MAX_FIELDS, MAX_HEAD, MAX_TARGET

log = logging.getLogger(__name__)

ALLOW: Final = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"  # the 405 to CONNECT says


def too_large() -> HeaderFieldsTooLarge:
    return HeaderFieldsTooLarge(
        f"request header fields too large: at most {MAX_FIELD} bytes per field, "
        f"{MAX_FIELDS} fields and {MAX_HEAD // 1024} KiB in all"
    )


def too_long() -> URITooLong:
    return URITooLong(f"request target too long (at most {MAX_TARGET} bytes)")


def check_version(version: str) -> None:
    if version != "1.1" and version != "1.0":
        raise HTTPVersionNotSupported()


def check_host(headers: CIMultiDict[str], version: str) -> None:
    hosts = len(headers.getall("Host", ()))
    if hosts > 1 or (hosts == 0 and version == "1.1"):  # RFC 9112 §3.2: a MUST
        raise BadRequest("send exactly one Host header", code="invalid_host")


def body_framing(headers: CIMultiDict[str]) -> tuple[int | None, bool]:
    """``(Content-Length or None, whether a body follows)``; llhttp has checked the
    syntax (one length, a Transfer-Encoding ending in chunked, never both)."""
    if "Transfer-Encoding" in headers:
        codings = [
            coding.strip().lower()
            for value in headers.getall("Transfer-Encoding")
            for coding in value.split(",")
        ]
        if codings != ["chunked"]:
            # RFC 9112 §6.1: a coding before chunked (gzip) would reach the upstream
            # undecoded and undeclared: refuse what cannot be passed on faithfully.
            raise BadRequest(
                "only Transfer-Encoding: chunked is supported",
                code="unsupported_transfer_encoding",
                status=501,
            )
        return None, True
    text = headers.get("Content-Length")
    length = None if text is None else int(text)
    return length, bool(length)


def upgrade_protocol(method: str, version: str, headers: CIMultiDict[str], body: bool) -> str:
    """The protocol a request llhttp flagged as an upgrade switches to: WebSocket, or a
    refusal (``CONNECT`` is flagged too)."""
    if method == "CONNECT":
        raise MethodNotAllowed(
            "CONNECT is not supported: Tollgate is a reverse proxy, not a forward proxy",
            headers={"Allow": ALLOW},
        )
    protocols = {p.strip().lower() for p in headers.get("Upgrade", "").split(",")}
    if "websocket" not in protocols:
        raise BadRequest(
            "only Upgrade: websocket is supported (send the request without Upgrade)",
            code="unsupported_upgrade",
        )
    if method != "GET" or version != "1.1" or body:
        raise BadRequest(
            "a WebSocket handshake is an HTTP/1.1 GET without a body", code="invalid_upgrade"
        )
    return "websocket"


def split_target(target: bytes) -> tuple[str, str]:
    """Path and query of the request target: origin-form, or the path of absolute-form."""
    text = target.decode("latin-1")  # llhttp allows ASCII only in a target
    if text[:1] == "/":
        path, _, query = text.partition("?")
        return path, query
    if text[:7].lower() == "http://" or text[:8].lower() == "https://":
        try:
            url = _parse_url(target)
        except HttpParserError:
            raise malformed(HttpParserInvalidURLError()) from None
        return (url.path or b"/").decode("latin-1"), (url.query or b"").decode("latin-1")
    if text == "*":
        message = "OPTIONS * is not supported: ask OPTIONS of a path (OPTIONS /...)"
    else:
        message = "the request target must be a path (/...)"
    raise BadRequest(message, code="invalid_target")


def plain_http_to_tls() -> BadRequest:
    """A plain HTTP request on the listener that speaks TLS (nginx answers the same)."""
    return BadRequest(
        "this port speaks HTTPS: send the request to https://, not http://",
        code="https_required",
    )


def malformed(err: HttpParserError) -> BadRequest:
    """The 400 for a head llhttp refused. Its reasons are fixed texts of the parser (never
    the client's bytes), so they can be shown to help the client find its mistake."""
    if isinstance(err, HttpParserInvalidMethodError):
        return BadRequest("malformed request: invalid method", code="malformed_request")
    if isinstance(err, HttpParserInvalidURLError):
        return BadRequest("malformed request: invalid request target", code="malformed_request")
    if isinstance(err, HttpParserCallbackError):  # a bug of ours, not the client's
        log.error("request parsing failed: %s", type(err.__context__).__name__)
        return BadRequest("malformed request", code="malformed_request")
    reason = str(err)[:100] if str(err).isascii() else "invalid syntax"
    return BadRequest(f"malformed request: {reason}", code="malformed_request")
