"""Who is asking, in which request: what every use case that changes something needs.

The request id middleware gives each request its id (the client's ``X-Request-Id`` when
it is a sane one, as the gateway does) and sends it back on every answer; the
authentication middleware stores the :class:`Principal` it proved. :func:`actor` turns
both, and the client's address, into the audit log's :class:`~gateway.core.journal.Actor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.core.journal import Actor
from gateway.core.requestids import HEADER, RequestIds

from .ssrf import literal

Role = Literal["admin", "manager", "viewer"]
ROLES: Final[tuple[Role, ...]] = (
    "viewer",
    "manager",
    "admin",
)  # each may do what the one before may


@dataclass(frozen=True, slots=True)
class Principal:
    """A proven credential: the bootstrap ``ADMIN_TOKEN``, an admin key or a portal session."""

    type: Literal["bootstrap", "admin_key", "portal"]
    role: Role
    id: str | None = None
    name: str | None = None
    project_id: str | None = None  # the one project of a project role

    def may(self, role: Role) -> bool:
        """Whether this principal's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)


BOOTSTRAP: Final = Principal("bootstrap", "admin", name="ADMIN_TOKEN")

REQUEST_ID: Final = web.RequestKey("admin_request_id", str)
PRINCIPAL: Final = web.RequestKey("admin_principal", Principal)


def request_ids() -> Middleware:
    """Outside the error middleware, so every answer, refusals included, carries the id."""
    ids = RequestIds()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request[REQUEST_ID] = ids.of(request.headers.get(HEADER))
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # a redirect, passed on by the error middleware
            exc.headers[HEADER] = request_id
            raise
        response.headers[HEADER] = request_id
        return response

    return middleware


def client_ip(request: web.Request) -> str | None:
    """The peer's address, when it is one (audit events store it as inet)."""
    remote = request.remote
    return remote if remote is not None and literal(remote) is not None else None


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def actor(request: web.Request) -> Actor:
    """The audit log's actor for a change made by this request."""
    who = request[PRINCIPAL]
    return Actor(
        who.type,
        who.id,
        who.name,
        request_id=request.get(REQUEST_ID),
        ip=client_ip(request),
    )
