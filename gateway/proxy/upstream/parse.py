"""Upstream answers as llhttp reads them (``httptools.HttpResponseParser``), one at a time.

llhttp does the framing, strictly: status line, field names and values (a bare CR or
LF, obsolete line folding, a name that is not a token: refused), Content-Length
(duplicates and lists refused, and refused together with Transfer-Encoding, RFC 9112
§6.3), chunked coding, trailers, interim 1xx answers (skipped in its own loop) and 101.
What it leaves to its user is checked here:

- the answer to a HEAD request has no body whatever its head says; llhttp cannot be
  told so through httptools (MagicStack/httptools#47), so such an answer is fed to it
  only up to the end of its head, and the parser is renewed;
- no control character in the reason phrase (RFC 9112 §4; llhttp refuses only CR and
  LF there, and aiohttp would refuse to send the rest when answering the client);
- only ``chunked`` as transfer coding (any other would reach the client still coded,
  as nginx also refuses);
- a 101 only to a request that asked to upgrade;
- bytes after a complete answer mean the upstream is out of step: the answer is refused
  when they came with it, and the connection is never reused;
- the bytes that are not body (heads, interim answers, chunk lines with their
  extensions, trailers) are bounded: ``MAX_HEAD`` plus ``CHUNK_LINE`` per chunk.

A malformed answer raises :class:`UpstreamBroken` from :meth:`AnswerParser.feed`.
"""

from __future__ import annotations

import re
from typing import Final

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpResponseParser,
)
from multidict import CIMultiDict, CIMultiDictProxy

from .errors import UpstreamBroken
from .response import Link, UpstreamResponse

MAX_HEAD: Final = 64 * 1024  # non-body bytes of an answer beyond its chunks' allowance
CHUNK_LINE: Final = 256  # non-body bytes allowed per chunk (size line, extensions, CRLF)

_NO_BODY: Final = frozenset({204, 304})
_CONTROL: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # HTAB, SP, VCHAR, obs-text pass


class AnswerParser:
    """Reads the answers of one connection; :meth:`expect` before each request."""

    def __init__(self, conn: Link) -> None:
        self._conn = conn
        self._parser = HttpResponseParser(self)
        self.idle = True  # no answer is expected: bytes now are out of step
        self.keep_alive = False  # the connection may carry another request afterwards
        self.switched: bytes | None = None  # after a 101: the new protocol's first bytes
        self._answer: UpstreamResponse | None = None  # head complete, not yet handed out
        self._response: UpstreamResponse | None = None  # its body is being received
        self._reason = b""
        self._headers: list[tuple[str, str]] = []
        self._head_only = False
        self._upgrade = False
        self._until_close = False
        self._tail = b""
        self._fed = self._body = 0
        self._budget = MAX_HEAD

    def expect(self, method: str, upgrade: bool) -> None:
        """A request went out: its answer comes next."""
        self.idle = False
        self._head_only = method == "HEAD"
        self._upgrade = upgrade
        self._until_close = False
        self._tail = b""
        self._fed = self._body = 0
        self._budget = MAX_HEAD

    def feed(self, data: bytes) -> UpstreamResponse | None:
        """Parse ``data``; returns the answer once, when its head is complete."""
        self._fed += len(data)
        try:
            if self._head_only:
                self._feed_head_only(data)
            else:
                self._parser.feed_data(data)
        except HttpParserUpgrade as switched:
            self.switched = data[switched.args[0] :]
            self.idle = True
        except HttpParserCallbackError as err:
            cause = err.__context__
            if isinstance(cause, UpstreamBroken):
                raise cause from None
            raise
        except HttpParserError as err:
            raise UpstreamBroken(f"malformed upstream answer: {err}") from None
        if self._fed - self._body > self._budget:
            what = "head" if self._response is None else "framing"
            raise UpstreamBroken(f"upstream answer {what} too large")
        answer, self._answer = self._answer, None
        return answer

    def eof(self) -> None:
        """The upstream closed the connection: the end of a body framed by the close,
        else a body cut short."""
        response, self._response = self._response, None
        self.idle = True
        if response is None:
            return
        if self._until_close:
            response._finish()
        else:
            response._finish(UpstreamBroken("upstream closed the connection mid-body"))

    def broken(self, error: UpstreamBroken) -> None:
        """The answer being received will not complete."""
        response, self._response = self._response, None
        self._answer = None
        self.idle = True
        if response is not None:
            response._finish(error)

    def _feed_head_only(self, data: bytes) -> None:
        # Up to each "\r\n\r\n" (llhttp refuses a bare CR or LF, so the first one ends
        # a head): interim answers are parsed in turn, the final head is the last byte
        # llhttp sees of this answer.
        while data and not self.idle:
            joined = self._tail + data
            end = joined.find(b"\r\n\r\n")
            if end < 0:
                self._parser.feed_data(data)
                self._tail = joined[-3:]
                return
            cut = end + 4 - len(self._tail)
            self._tail = b""
            self._parser.feed_data(data[:cut])
            data = data[cut:]
        if self.idle:
            self._parser = HttpResponseParser(self)  # the old one waits for a body
            if data:
                raise UpstreamBroken("bytes after the upstream's answer")

    # -- llhttp's callbacks (through httptools)

    def on_message_begin(self) -> None:
        if self.idle:
            raise UpstreamBroken("bytes after the upstream's answer")
        self._reason = b""
        self._headers = []

    def on_status(self, reason: bytes) -> None:
        self._reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        # Names are tokens (llhttp checked), values decoded as aiohttp's client does:
        # UTF-8, other bytes kept as surrogates. llhttp drops leading whitespace only.
        self._headers.append(
            (name.decode("latin-1"), value.decode("utf-8", "surrogateescape").rstrip(" \t"))
        )

    def on_headers_complete(self) -> None:
        parser = self._parser
        status: int = parser.get_status_code()
        if status < 200 and (status != 101 or not self._upgrade):
            if status == 101:
                raise UpstreamBroken("upstream switched protocols unasked")
            return  # interim (100 Continue, 103 Early Hints): the final answer follows
        reason = self._reason
        if not reason.isalpha() and _CONTROL.search(reason) is not None:
            raise UpstreamBroken("control character in the upstream's reason phrase")
        headers = CIMultiDictProxy(CIMultiDict(self._headers))
        text = reason.decode("utf-8", "surrogateescape")
        self._answer = answer = UpstreamResponse(self._conn, status, text, headers)
        self.keep_alive = parser.should_keep_alive()
        if status == 101:
            self.keep_alive = False  # llhttp pauses next; the bytes after are the tunnel's
            return
        if self._head_only:
            self.idle = True
            answer._finish()
            return
        if status not in _NO_BODY:
            codings = headers.getall("Transfer-Encoding", None)
            if codings is not None and (len(codings) > 1 or codings[0].lower() != "chunked"):
                raise UpstreamBroken("unsupported upstream Transfer-Encoding")
            self._until_close = codings is None and "Content-Length" not in headers
        self._response = answer

    def on_body(self, body: bytes) -> None:
        self._body += len(body)
        response = self._response
        assert response is not None
        response._feed(body)

    def on_chunk_header(self) -> None:
        self._budget += CHUNK_LINE

    def on_message_complete(self) -> None:
        response = self._response
        if response is not None:  # else an interim answer, a 101 or a HEAD answer
            self._response = None
            self.idle = True
            response._finish()
