"""Checking what clients send: JSON bodies, their fields, text values, query parameters.

Bodies are checked in the order size (413), type (415), content (400), and every 400
names the offending field, so a client can fix its request without guessing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from gateway.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from gateway.core.rates import parse_rate

MAX_BODY: Final = 64 * 1024

JSON_TYPE: Final = "application/json"

# Listing pages: the size when the client names none, and the most one may ask for.
PAGE_DEFAULT: Final = 20
PAGE_MAX: Final = 100


def field_error(code: str, field: str, problem: str) -> BadRequest:
    return BadRequest(f'"{field}" {problem}', code=code)


# ---------------------------------------------------------------- bodies


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; an empty body counts as ``{}``."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large() from None
    if not raw:
        return {}
    if not _is_json(request.content_type):
        raise UnsupportedMediaType(
            f"send the body as JSON with Content-Type: {JSON_TYPE} "
            f"(got {request.content_type or 'none'})"
        )
    return parse_object(raw)


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than {MAX_BODY // 1024} KiB")


def _is_json(content_type: str) -> bool:
    return content_type == JSON_TYPE or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def parse_object(raw: bytes) -> dict[str, Any]:
    """Strict JSON: UTF-8, an object at the top, no duplicate keys, no NaN/Infinity."""
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
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_json")
    return value


def _reason(err: ValueError) -> str:
    return err.msg if isinstance(err, json.JSONDecodeError) else str(err)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f'duplicate key "{_printable(key)}"')
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _printable(text: str, limit: int = 40) -> str:
    """A client-supplied name, safe and short enough to echo in an error message."""
    shown = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return shown + ("…" if len(text) > limit else "")


# ---------------------------------------------------------------- fields


def check_fields(
    body: Mapping[str, Any],
    types: Mapping[str, tuple[type, ...]],
    *,
    required: tuple[str, ...] = (),
) -> None:
    """Reject unknown fields, missing required ones and values of the wrong JSON type."""
    for name in body:
        if name not in types:
            known = ", ".join(f'"{n}"' for n in types) or "none"
            raise field_error(
                "unknown_field", _printable(name), f"is not a known field (known: {known})"
            )
    for name in required:
        if name not in body:
            raise field_error("missing_field", name, "is required")
    for name, value in body.items():
        allowed = types[name]
        # bool is an int in Python, never in JSON.
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            raise field_error("invalid_type", name, f"must be {_describe(allowed)}")


_JSON_NAMES = {str: "a string", int: "an integer", bool: "a boolean", type(None): "null"}


def _describe(allowed: tuple[type, ...]) -> str:
    return " or ".join(_JSON_NAMES.get(t, t.__name__) for t in allowed)


# ---------------------------------------------------------------- values


def text(field: str, value: str, *, min_len: int = 0, max_len: int) -> str:
    """A text value Postgres can store: no NUL, no lone surrogate, length in range."""
    if "\x00" in value:
        raise field_error("invalid_value", field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise field_error("invalid_value", field, "must be valid Unicode text") from None
    if not min_len <= len(value) <= max_len:
        span = f"at most {max_len}" if min_len == 0 else f"{min_len} to {max_len}"
        raise field_error("invalid_value", field, f"must be {span} characters long")
    return value


def rate_limit(field: str, value: str | None) -> str | None:
    """A ``N/unit`` rate limit in its canonical spelling, or None for the default."""
    if value is None:
        return None
    try:
        return str(parse_rate(value))
    except ValueError:
        raise field_error(
            "invalid_value",
            field,
            "must be N/second, N/minute or N/hour (1 <= N < 10^9), or null for the default",
        ) from None


# ---------------------------------------------------------------- query parameters


def page_limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit")
    if raw is None:
        return PAGE_DEFAULT
    # Length first: int() of thousands of digits is slow and then refused.
    short = len(raw) <= len(str(PAGE_MAX))
    if not (raw.isascii() and raw.isdigit() and short and 1 <= int(raw) <= PAGE_MAX):
        raise BadRequest(
            f'"limit" must be a whole number from 1 to {PAGE_MAX}', code="invalid_parameter"
        )
    return int(raw)
