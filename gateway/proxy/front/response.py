"""The bytes of an answer's head: status line, header fields, framing, in one buffer."""

from __future__ import annotations

import time
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import Final

from gateway.core.errors import TollgateError

_PHRASES: Final = {status.value: status.phrase for status in HTTPStatus}
_LINES: Final = {code: f"HTTP/1.1 {code} {phrase}\r\n" for code, phrase in _PHRASES.items()}

CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
CLOSE: Final = "Connection: close\r\n"
KEEP_ALIVE: Final = "Connection: keep-alive\r\n"  # said to HTTP/1.0 clients that asked for it
CHUNKED: Final = "Transfer-Encoding: chunked\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"


def no_body(method: str, status: int) -> bool:
    """HEAD answers and 1xx/204/304 carry no body (RFC 9112 §6.3), whatever their headers say."""
    return method == "HEAD" or status < 200 or status in (204, 304)


def status_line(status: int, reason: str | None) -> str:
    line = _LINES.get(status)
    if line is None or (reason and reason != _PHRASES[status]):
        return f"HTTP/1.1 {status} {reason or _PHRASES.get(status, '')}\r\n"
    return line


def head(status: int, reason: str | None, headers: Iterable[tuple[str, str]], tail: str) -> bytes:
    """Status line, ``headers``, then ``tail`` (the framing and connection lines we add).

    Header text is encoded back to the bytes it was decoded from (the upstream's
    answer is decoded as UTF-8 with surrogate escapes, like the client's request).
    """
    lines = [status_line(status, reason)]
    lines += [f"{name}: {value}\r\n" for name, value in headers]
    lines.append(tail)
    lines.append("\r\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


_date_second = -1
_date = ""


def http_date() -> str:
    """Now as an HTTP date, for the ``Date`` of answers the gateway makes itself (RFC 9110
    §6.6.1); formatted once a second."""
    global _date_second, _date
    now = int(time.time())
    if now != _date_second:
        _date_second = now
        _date = formatdate(now, usegmt=True)
    return _date


def error_answer(err: TollgateError, request_id: str, *, method: str = "GET") -> bytes:
    """A refusal the connection itself sends (an unparsable request, a timeout, a full
    server): the JSON error shape, ``X-Request-Id``, and ``Connection: close``."""
    body = err.body()
    headers = [*err.headers.items(), ("Content-Type", "application/json")]
    headers += [("X-Request-Id", request_id), ("Date", http_date())]
    tail = f"Content-Length: {len(body)}\r\n{CLOSE}"
    data = head(err.status, None, headers, tail)
    return data if no_body(method, err.status) else data + body
