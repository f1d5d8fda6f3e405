"""The ``Authorization: Bearer`` header (RFC 6750) and the challenges of its refusals."""

from __future__ import annotations

import re

from multidict import MultiMapping

from gateway.core.errors import BadRequest, ExpiredToken, InvalidToken, Unauthorized

REALM = 'Bearer realm="tollgate"'
# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _challenge(error: str, description: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'{REALM}, error="{error}", error_description="{description}"'}


def unauthenticated() -> Unauthorized:
    return Unauthorized(
        "send the token as: Authorization: Bearer <token>", headers={"WWW-Authenticate": REALM}
    )


def invalid_request(message: str) -> BadRequest:
    return BadRequest(
        message, code="invalid_request", headers=_challenge("invalid_request", message)
    )


def invalid_token() -> InvalidToken:
    return InvalidToken(headers=_challenge("invalid_token", InvalidToken.message))


def expired_token() -> ExpiredToken:
    return ExpiredToken(headers=_challenge("invalid_token", ExpiredToken.message))


def bearer_token(headers: MultiMapping[str]) -> str:
    """The token of ``Authorization: Bearer <token>``; raises the RFC 6750 answer.

    No header or another scheme: 401 without an error code (§3.1). A Bearer
    header that is not exactly ``Bearer <token>``, or several Authorization
    headers: 400 ``invalid_request``.
    """
    values = headers.getall("Authorization", ())
    if not values:
        raise unauthenticated()
    if len(values) > 1:
        raise invalid_request("send exactly one Authorization header")
    value = values[0]
    scheme, space, token = value.partition(" ")
    if scheme.lower() != "bearer":
        # "Bearer" followed by a tab is still a Bearer header, only a malformed one.
        if scheme[:6].lower() == "bearer" and scheme[6:7].isspace():
            raise invalid_request("use exactly: Authorization: Bearer <token>")
        raise unauthenticated()
    if not space or _B64TOKEN.fullmatch(token) is None:
        raise invalid_request("use exactly: Authorization: Bearer <token>")
    return token
