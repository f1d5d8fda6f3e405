"""The errors users see, and their JSON body.

Every error answer, from the admin API and the gateway alike, has the shape
``{"error": {"code": ..., "message": ...}}``. Each class fixes the HTTP status, the
code, a public message and the gateway outcome it counts as (SPEC §6)::

    TollgateError                 500 internal_error         outcome unavailable
    ├── BadRequest                400 (code per case)        invalid_request
    ├── Unauthorized              401 unauthorized           unauthenticated
    │   └── InvalidToken          401 invalid_token          invalid_token
    │       └── ExpiredToken      401 invalid_token          expired_token
    ├── Forbidden                 403 forbidden (code per case) forbidden
    ├── NotFound                  404 not_found
    ├── MethodNotAllowed          405 method_not_allowed     invalid_request
    ├── RequestTimeout            408 request_timeout        client_timeout
    ├── PayloadTooLarge           413 payload_too_large
    ├── URITooLong                414 uri_too_long           invalid_request
    ├── UnsupportedMediaType      415 unsupported_media_type
    ├── TooManyRequests           429 rate_limited           rate_limited
    │   └── QuotaExceeded         429 quota_exceeded         quota_exceeded
    ├── HeaderFieldsTooLarge      431 header_fields_too_large invalid_request
    ├── ClientClosed              499 client_closed          client_closed
    ├── BadGateway                502 upstream_unreachable   upstream_error
    ├── ServiceUnavailable        503 unavailable            unavailable
    ├── GatewayTimeout            504 upstream_timeout       upstream_timeout
    └── HTTPVersionNotSupported   505 http_version_not_supported invalid_request

499 is nginx's "client closed request": never sent (there is no one to send it to),
only counted and logged.

The public message is fixed per case and never carries client input verbatim;
internal detail goes to the log only. Renderers (the admin middleware, the gateway's
handler) take :meth:`TollgateError.body`, ``status`` and ``headers``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import ClassVar

# Encoded bodies of the fixed (code, message) pairs: a flood of refusals encodes none.
_BODIES: dict[tuple[str, str], bytes] = {}
_BODIES_MAX = 256


def error_body(code: str, message: str) -> bytes:
    """``{"error": {"code": ..., "message": ...}}`` as UTF-8 JSON."""
    key = (code, message)
    body = _BODIES.get(key)
    if body is None:
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        if len(_BODIES) < _BODIES_MAX:  # messages are fixed per case; stay bounded regardless
            _BODIES[key] = body
    return body


class TollgateError(Exception):
    status: int = 500
    code: str = "internal_error"
    message: str = "internal error; the details are in the server log"
    outcome: ClassVar[str] = "unavailable"  # the gateway could not serve the request

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def body(self) -> bytes:
        return error_body(self.code, self.message)


class BadRequest(TollgateError):
    status, code, message = 400, "bad_request", "bad request"
    outcome = "invalid_request"


class Unauthorized(TollgateError):
    status, code, message = 401, "unauthorized", "missing or invalid credentials"
    outcome = "unauthenticated"


class InvalidToken(Unauthorized):
    code, message = "invalid_token", "invalid token"
    outcome = "invalid_token"


class ExpiredToken(InvalidToken):
    """A genuine token past its ``expires_at``: the only refusal that admits a token exists."""

    message = "token expired"
    outcome = "expired_token"


class Forbidden(TollgateError):
    """A proven credential that may not do this: a token out of scope or from an address
    not allowed, an admin credential whose role or project does not reach it."""

    status, code, message = 403, "forbidden", "forbidden"
    outcome = "forbidden"


class NotFound(TollgateError):
    status, code, message = 404, "not_found", "not found"


class MethodNotAllowed(TollgateError):
    status, code, message = 405, "method_not_allowed", "method not allowed"
    outcome = "invalid_request"


class RequestTimeout(TollgateError):
    """The client sent its request head, or its body, too slowly."""

    status, code, message = 408, "request_timeout", "the request did not arrive in time"
    outcome = "client_timeout"


class PayloadTooLarge(TollgateError):
    status, code, message = 413, "payload_too_large", "request body too large"


class URITooLong(TollgateError):
    status, code, message = 414, "uri_too_long", "request target too long"
    outcome = "invalid_request"


class UnsupportedMediaType(TollgateError):
    status, code, message = 415, "unsupported_media_type", "send JSON (application/json)"


class TooManyRequests(TollgateError):
    status, code, message = 429, "rate_limited", "rate limit exceeded; retry later"
    outcome = "rate_limited"


class QuotaExceeded(TooManyRequests):
    code = "quota_exceeded"
    message = "the project's quota for this period is used up; retry after it resets"
    outcome = "quota_exceeded"


class HeaderFieldsTooLarge(TollgateError):
    status, code, message = 431, "header_fields_too_large", "request header fields too large"
    outcome = "invalid_request"


class ClientClosed(TollgateError):
    """The client's connection went away before its answer could be sent."""

    status, code, message = 499, "client_closed", "the client closed the connection"
    outcome = "client_closed"


class BadGateway(TollgateError):
    status, code, message = 502, "upstream_unreachable", "the upstream API could not be reached"
    outcome = "upstream_error"


class ServiceUnavailable(TollgateError):
    status, code, message = 503, "unavailable", "temporarily unavailable; retry later"


class GatewayTimeout(TollgateError):
    status, code, message = 504, "upstream_timeout", "the upstream API did not answer in time"
    outcome = "upstream_timeout"


class HTTPVersionNotSupported(TollgateError):
    status, code, message = 505, "http_version_not_supported", "send HTTP/1.1 (or HTTP/1.0)"
    outcome = "invalid_request"
