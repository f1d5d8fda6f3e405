"""Errors users see, and the middleware that renders them as JSON.

Every error answer has the shape ``{"error": {"code": ..., "message": ...}}``::

    TollgateError                 500 internal_error
    ├── BadRequest                400 (code given per case: invalid_json, unknown_field, …)
    ├── Unauthorized              401 unauthorized
    │   └── InvalidToken          401 invalid_token     (RFC 6750 error="invalid_token")
    ├── NotFound                  404 not_found
    ├── MethodNotAllowed          405 method_not_allowed
    ├── PayloadTooLarge           413 payload_too_large
    ├── UnsupportedMediaType      415 unsupported_media_type
    ├── TooManyRequests           429 rate_limited
    ├── BadGateway                502 upstream_unreachable
    ├── ServiceUnavailable        503 unavailable
    └── GatewayTimeout            504 upstream_timeout

The public message is fixed per case; internal detail goes to the log only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger(__name__)


class TollgateError(Exception):
    status: int = 500
    code: str = "internal_error"
    message: str = "internal error; the details are in the server log"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})
        super().__init__(self.message)


class BadRequest(TollgateError):
    status, code, message = 400, "bad_request", "bad request"


class Unauthorized(TollgateError):
    status, code, message = 401, "unauthorized", "missing or invalid credentials"


class InvalidToken(Unauthorized):
    code, message = "invalid_token", "invalid token"


class NotFound(TollgateError):
    status, code, message = 404, "not_found", "not found"


class MethodNotAllowed(TollgateError):
    status, code, message = 405, "method_not_allowed", "method not allowed"


class PayloadTooLarge(TollgateError):
    status, code, message = 413, "payload_too_large", "request body too large"


class UnsupportedMediaType(TollgateError):
    status, code, message = 415, "unsupported_media_type", "send JSON (application/json)"


class TooManyRequests(TollgateError):
    status, code, message = 429, "rate_limited", "rate limit exceeded; retry later"


class BadGateway(TollgateError):
    status, code, message = 502, "upstream_unreachable", "the upstream API could not be reached"


class ServiceUnavailable(TollgateError):
    status, code, message = 503, "unavailable", "temporarily unavailable; retry later"


class GatewayTimeout(TollgateError):
    status, code, message = 504, "upstream_timeout", "the upstream API did not answer in time"


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def error_response(err: TollgateError) -> web.Response:
    return web.Response(
        status=err.status,
        body=error_body(err.code, err.message),
        content_type="application/json",
        headers=err.headers,
    )


_HTTP_CODES = {
    error.status: error.code
    for error in (BadRequest, NotFound, MethodNotAllowed, PayloadTooLarge, UnsupportedMediaType)
}


def from_http_exception(exc: web.HTTPException) -> TollgateError:
    """aiohttp's own errors (no route, wrong method, body too large) in our shape."""
    err = TollgateError(
        exc.reason.lower() if exc.status != 413 else PayloadTooLarge.message,
        code=_HTTP_CODES.get(exc.status, "http_error"),
    )
    err.status = exc.status
    if exc.status == 405 and "Allow" in exc.headers:
        err.headers["Allow"] = exc.headers["Allow"]
    return err


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: every failure leaves as a JSON error, never a traceback."""
    try:
        return await handler(request)
    except TollgateError as err:
        return error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(from_http_exception(exc))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(TollgateError())
