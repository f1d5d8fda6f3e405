"""The head of an upstream answer: status line, header fields and the body's framing."""

from __future__ import annotations

from typing import Final

_FRAMING: Final = frozenset({"content-length", "transfer-encoding", "connection"})

# Body framing of the answer being received.
_LENGTH, _CHUNKED, _UNTIL_CLOSE, _NONE = range(4)


def parse_head(raw: bytes) -> tuple[int, str, list[tuple[str, str]], int, int, bool]:
    """Status, reason, headers, framing, length and keep-alive of a response head.

    Decoded once as a whole (header values as aiohttp's client does: UTF-8, other
    bytes kept as surrogates) and split with str methods: one call per line, not
    several, since this runs for every proxied request.
    """
    lines = raw.decode("utf-8", "surrogateescape").split("\r\n")
    status_line = lines[0]
    code = status_line[9:12]
    if (
        status_line[:7] != "HTTP/1."
        or status_line[8:9] != " "
        or status_line[12:13] not in ("", " ")
        or not (code.isascii() and code.isdigit())
    ):
        raise ValueError("bad status line")
    status = int(code)
    reason = status_line[13:]
    keep_alive = status_line[7:8] == "1"  # HTTP/1.1 keeps alive unless told otherwise
    headers: list[tuple[str, str]] = []
    length = -1
    chunked = False
    has_te = False
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name[-1] in " \t" or name[0] in " \t":
            raise ValueError("bad header line")  # also obsolete line folding
        value = value.strip(" \t")
        headers.append((name, value))
        lower = name.lower()
        if lower not in _FRAMING:
            continue
        if lower == "content-length":
            if not (value.isascii() and value.isdigit()) or (length >= 0 and int(value) != length):
                raise ValueError("bad Content-Length")
            length = int(value)
        elif lower == "transfer-encoding":
            has_te = True
            chunked = value.rsplit(",", 1)[-1].strip().lower() == "chunked"
        else:  # connection
            tokens = {t.strip().lower() for t in value.split(",")}
            if "close" in tokens:
                keep_alive = False
            elif "keep-alive" in tokens:
                keep_alive = True
    if has_te:
        # RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; both present is a
        # smuggling smell, so never reuse that connection.
        if length >= 0:
            keep_alive = False
        return status, reason, headers, _CHUNKED if chunked else _UNTIL_CLOSE, 0, keep_alive
    if length >= 0:
        return status, reason, headers, _LENGTH, length, keep_alive
    return status, reason, headers, _UNTIL_CLOSE, 0, keep_alive
