"""The admin bearer check: ``Authorization: Bearer $ADMIN_TOKEN`` on every ``/v1`` route.

The token is compared in constant time. Answers without it are 401 with
``WWW-Authenticate`` (RFC 6750); the routes declared public (the API's own description)
need none, whatever the method.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.core.config import Secret
from gateway.core.errors import Unauthorized

REALM: Final = 'Bearer realm="tollgate-admin"'
PROTECTED_PREFIX: Final = "/v1/"


def needs_admin(path: str, public: Collection[str]) -> bool:
    """Every ``/v1`` request, routed or not, but for the ``public`` paths."""
    return (path == "/v1" or path.startswith(PROTECTED_PREFIX)) and path not in public


def presented_token(request: web.Request) -> bytes | None:
    """The credential of a single ``Bearer`` Authorization header, as bytes."""
    values = request.headers.getall("Authorization", [])
    if len(values) != 1:
        return None
    scheme, _, credential = values[0].partition(" ")
    if scheme.lower() != "bearer" or not credential:
        return None
    # surrogateescape: undecodable header bytes compare (and fail) instead of raising.
    return credential.encode("utf-8", "surrogateescape")


def admin_auth(admin_token: Secret, public: Collection[str]) -> Middleware:
    """``public``: the paths of the routes declared public (``routes.public_paths``)."""
    expected = admin_token.reveal().encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if needs_admin(request.path, public):
            given = presented_token(request)
            if given is None:
                raise Unauthorized(
                    "send the admin token: Authorization: Bearer $ADMIN_TOKEN",
                    headers={"WWW-Authenticate": REALM},
                )
            if not hmac.compare_digest(given, expected):
                raise Unauthorized(
                    "the admin token is not valid",
                    headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
                )
        return await handler(request)

    return middleware
