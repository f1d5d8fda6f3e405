"""The admin bearer check on every ``/v1`` route: who is asking (SPEC §8).

Accepted credentials: ``ADMIN_TOKEN`` (the bootstrap credential, role ``admin``), an
admin key or a portal session (``<TOKEN_PREFIX>adm_…``, proven by ``credentials``).
``ADMIN_TOKEN`` may hold several tokens, comma-separated, while one replaces another
(README "Rotating ADMIN_TOKEN"): any of them is accepted. The presented token is
compared with every one, in constant time. Answers without a valid credential are 401
with ``WWW-Authenticate`` (RFC 6750); the routes declared public (the API's own
description, leak reports, the portal code exchange) need none, whatever the method.
The proven :class:`~admin.context.Principal` is left on the request for ``authz``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection, Sequence
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.core.config import Secret
from gateway.core.errors import Unauthorized

from .context import BOOTSTRAP, PRINCIPAL, Principal
from .credentials import REALM, Credentials

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


def accepted(given: bytes, expected: Sequence[bytes]) -> bool:
    """Whether ``given`` is one of ``expected``: every one compared, none skipped, so the
    time taken says nothing about which matched or how much of one."""
    matches = [hmac.compare_digest(given, token) for token in expected]
    return any(matches)


def admin_auth(
    admin_tokens: Sequence[Secret],
    public: Collection[str],
    credentials: Callable[[web.Application], Credentials],
) -> Middleware:
    """``admin_tokens``: every bootstrap token accepted (``Settings.admin_tokens()``);
    ``public``: the paths of the routes declared public (``routes.public_paths``);
    ``credentials``: the app's key prover (made once the database pool is open)."""
    expected = [token.reveal().encode() for token in admin_tokens]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if needs_admin(request.path, public):
            given = presented_token(request)
            if given is None:
                raise Unauthorized(
                    "send an admin credential: Authorization: Bearer $ADMIN_TOKEN (or an "
                    "admin key)",
                    headers={"WWW-Authenticate": REALM},
                )
            if accepted(given, expected):
                request[PRINCIPAL] = BOOTSTRAP
            else:
                request[PRINCIPAL] = await _prove(credentials(request.app), given)
        return await handler(request)

    return middleware


async def _prove(credentials: Credentials, given: bytes) -> Principal:
    raw = given.decode("utf-8", "surrogateescape")
    if not credentials.looks_like_key(raw) or not raw.isascii():
        raise Unauthorized(
            "the admin token is not valid",
            headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
        )
    return await credentials.prove(raw)
