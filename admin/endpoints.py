"""An endpoint of the admin API: its declaration, and the aiohttp handler made from it.

``@documented(Operation(...))`` turns ``async def handler(request, given) -> Reply`` into an
aiohttp handler. Before the handler runs, the declared body and query string are checked
(``schemas``) and handed over, checked and canonical, as ``given``; what the handler returns
becomes the declared answer: JSON with the declared status (and ``Location``), or no body.
The OpenAPI document is generated from the same declarations (``openapi``), so what is
served and what is documented cannot drift apart.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from .fields import Body, Query

# An answer carrying a secret shown once (a new raw token) must not be kept by any cache,
# the browser's included (RFC 9111 §5.2.2.5); Pragma for HTTP/1.0 caches.
NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer: its status and, for a JSON body, its schema component."""

    status: int
    description: str
    schema: str | None = None
    # A URL template filled from the answer's own fields: "/v1/projects/{id}".
    location: str | None = None
    # It carries a secret shown this once: never stored by a cache.
    secret: bool = False
    media_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class RawBody:
    """A request body the handler reads itself (a signed one must be read as sent): its
    OpenAPI component ``name`` and JSON Schema."""

    name: str
    schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Operation:
    """What one method on one path takes and answers; ``answer`` None: it always refuses."""

    summary: str
    answer: Answer | None
    errors: tuple[int, ...] = ()
    description: str = ""
    body: Body | None = None
    query: Query | None = None
    public: bool = False  # no admin token needed
    raw_body: RawBody | None = None  # documented only: the handler reads and checks it


@dataclass(frozen=True, slots=True)
class Given:
    """The checked input of a request: body fields and query parameters, defaults filled."""

    body: dict[str, Any]
    query: dict[str, Any]


# JSON data, an own response (metrics' text), or None for an answer without a body.
Reply = web.StreamResponse | Mapping[str, Any] | None
Endpoint = Callable[[web.Request, Given], Awaitable[Reply]]

_DECLARED: dict[object, Operation] = {}


def documented(operation: Operation) -> Callable[[Endpoint], Handler]:
    def decorate(endpoint: Endpoint) -> Handler:
        @functools.wraps(endpoint)
        async def handler(request: web.Request) -> web.StreamResponse:
            body = {} if operation.body is None else await operation.body.read(request)
            query = {} if operation.query is None else operation.query.check(request.query)
            return _answer(operation, await endpoint(request, Given(body, query)))

        _DECLARED[handler] = operation
        return handler

    return decorate


def operation_of(handler: object) -> Operation:
    """The declaration of a handler made by :func:`documented`."""
    try:
        return _DECLARED[handler]
    except KeyError:
        name = getattr(handler, "__qualname__", repr(handler))
        raise LookupError(f"{name} is not @documented: the API description needs it") from None


def is_public(handler: object) -> bool:
    """Whether a handler is declared to need no admin token (undeclared ones do)."""
    operation = _DECLARED.get(handler)
    return operation is not None and operation.public


def _answer(operation: Operation, reply: Reply) -> web.StreamResponse:
    answer = operation.answer
    if answer is None:
        raise TypeError(f"{operation.summary}: declared to always refuse, yet it answered")
    if isinstance(reply, web.StreamResponse):
        response = reply
    elif reply is None:
        response = web.Response(status=answer.status)
    else:
        response = web.json_response(reply, status=answer.status)
        if answer.location is not None:
            response.headers["Location"] = answer.location.format_map(reply)
    if answer.secret:
        response.headers.update(NO_STORE)
    return response
