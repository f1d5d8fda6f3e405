"""The access log: one line per request, JSON or text, on standard output.

aiohttp's own access logger is disabled (its formatter has cost up to 12% of a
proxy's runtime). This one formats with one %-operation, never sees the token
(only its public id), and writes lines in batches: at most ``flush_interval``
seconds late, or as soon as ``batch`` lines are waiting.

JSON fields: time (RFC 3339 UTC, milliseconds), request_id, trace_id (of the W3C
``traceparent`` sent upstream, :mod:`.tracecontext`; null for a request refused before
its head was read), method, path (without the query string, which may carry secrets),
status, outcome (SPEC §6), duration_ms, upstream_ms (null when the upstream was not
asked), token_id and project_id (null before authentication). Text lines carry the
same fields in the same order but for trace_id, which comes last ("-" when null), so
the positions of the others stay what they were before it was added.
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
import time
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii
from typing import Literal, TextIO

_JSON = (
    '{"time":"%s","request_id":"%s","trace_id":%s,"method":"%s","path":%s,"status":%d,'
    '"outcome":"%s","duration_ms":%.3f,"upstream_ms":%s,"token_id":%s,"project_id":%s}\n'
)
_TEXT = "%s %s %s %s %d %s %.3f %s %s %s %s\n"
# The largest pipe write the system keeps whole (POSIX: at least 512; Linux: 4096).
PIPE_BUF: int = getattr(select, "PIPE_BUF", 512)


class AccessLog:
    def __init__(
        self,
        log_format: Literal["json", "text"] = "json",
        stream: TextIO | None = None,
        *,
        flush_interval: float = 0.5,
        batch: int = 256,
    ) -> None:
        self._json = log_format == "json"
        self._stream = stream
        self._flush_interval = flush_interval
        self._batch = batch
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._second_text = ""

    def log(
        self,
        request_id: str,
        trace_id: str | None,
        method: str,
        path: str,
        status: int,
        outcome: str,
        duration: float,
        upstream: float | None,
        token_id: str | None,
        project_id: str | None,
    ) -> None:
        """Queue one line; durations in seconds."""
        now = time.time()
        when = self._timestamp(now)
        if self._json:
            line = _JSON % (
                when,
                request_id,
                "null" if trace_id is None else f'"{trace_id}"',
                method,
                encode_basestring_ascii(path),
                status,
                outcome,
                duration * 1000,
                "null" if upstream is None else f"{upstream * 1000:.3f}",
                "null" if token_id is None else f'"{token_id}"',
                "null" if project_id is None else f'"{project_id}"',
            )
        else:
            line = _TEXT % (
                when,
                request_id,
                method,
                # The raw path cannot hold spaces or line breaks (the HTTP parser refuses them).
                path,
                status,
                outcome,
                duration * 1000,
                "-" if upstream is None else f"{upstream * 1000:.3f}",
                token_id or "-",
                project_id or "-",
                trace_id or "-",
            )
        self._lines.append(line)
        if len(self._lines) >= self._batch:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_interval, self.flush)

    def _timestamp(self, now: float) -> str:
        # The date and time part changes once a second: format it once a second.
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1000):03d}Z"

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        stream = self._stream if self._stream is not None else sys.stdout
        try:
            fd = stream.fileno()
        except (OSError, ValueError, AttributeError):  # not a real file (a test's StringIO)
            fd = -1
        try:
            if fd < 0:
                stream.write("".join(lines))
                stream.flush()
                return
            stream.flush()  # anything printed before goes first
            for piece in pieces(lines):
                os.write(fd, piece)
        except (OSError, ValueError):
            pass  # a closed or broken stdout must not take the request path down


def pieces(lines: list[str], limit: int = PIPE_BUF) -> Iterator[bytes]:
    """``lines`` joined into writes of whole lines, each at most ``limit`` bytes.

    Workers share one stdout: a write to a pipe of at most PIPE_BUF bytes is atomic,
    so lines from different workers never interleave mid-line (a longer single line
    goes out alone).
    """
    batch: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode()
        if batch and size + len(data) > limit:
            yield b"".join(batch)
            batch, size = [], 0
        batch.append(data)
        size += len(data)
    if batch:
        yield b"".join(batch)
