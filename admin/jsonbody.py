"""Reading a request's JSON body: its size (413), its type (415), then strict JSON (400).

That order is the API's contract (SPEC §4): a client learns first what it can fix
without reading the body at all. What the object must contain is ``schemas``' concern.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from gateway.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_BODY: Final = 64 * 1024

JSON_TYPE: Final = "application/json"


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; an empty body counts as ``{}``."""
    raw = await json_bytes(request)
    return parse_object(raw) if raw else {}


async def json_bytes(request: web.Request) -> bytes:
    """The raw bytes of a JSON body, its size and type checked (empty: ``b""``)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large() from None
    if raw and not _is_json(request.content_type):
        raise UnsupportedMediaType(
            f"send the body as JSON with Content-Type: {JSON_TYPE} "
            f"(got {request.content_type or 'none'})"
        )
    return raw


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than {MAX_BODY // 1024} KiB")


def _is_json(content_type: str) -> bool:
    return content_type == JSON_TYPE or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def parse_object(raw: bytes) -> dict[str, Any]:
    """Strict JSON (:func:`parse_json`) with an object at the top."""
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_json")
    return value


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN/Infinity."""
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
    except UnicodeDecodeError:
        raise BadRequest("the body is not valid UTF-8", code="invalid_json") from None
    except ValueError as err:  # JSONDecodeError and our hooks' errors
        reason = _reason(err)
        raise BadRequest(f"the body is not valid JSON: {reason}", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply", code="invalid_json") from None
    return value


def _reason(err: ValueError) -> str:
    return err.msg if isinstance(err, json.JSONDecodeError) else str(err)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f'duplicate key "{printable(key)}"')
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def printable(text: str, limit: int = 40) -> str:
    """A client-supplied name, safe and short enough to echo in an error message."""
    shown = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return shown + ("…" if len(text) > limit else "")
