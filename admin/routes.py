"""The admin HTTP API's routes: thin handlers and the route table (SPEC §4).

Each handler reads its input, calls a use case from ``projects``/``tokens`` and
answers JSON. Errors are raised as ``gateway.errors`` classes and rendered by the
error middleware.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.core import db
from gateway.core.errors import MethodNotAllowed, ServiceUnavailable
from gateway.core.store import UNSET

from . import projects, schemas, tokens
from .keys import ADMIN_METRICS, HASHER, OPENAPI, POOL, SETTINGS, STORE
from .metrics import exposition
from .views import project_view, token_view

HEALTH_TIMEOUT: Final = 2.0

_TEXT = (str,)
_TEXT_OR_NULL = (str, type(None))


def _json(data: Any, status: int = 200, location: str | None = None) -> web.Response:
    response = web.json_response(data, status=status)
    if location is not None:
        response.headers["Location"] = location
    return response


def _no_content() -> web.Response:
    return web.Response(status=204)


# ---------------------------------------------------------------- projects


async def create_project(request: web.Request) -> web.Response:
    body = await schemas.json_object(request)
    schemas.check_fields(body, {"name": _TEXT, "rate_limit": _TEXT_OR_NULL}, required=("name",))
    project = await projects.create(
        request.app[STORE], name=body["name"], rate_limit=body.get("rate_limit")
    )
    return _json(project_view(project), 201, f"/v1/projects/{project.id}")


async def list_projects(request: web.Request) -> web.Response:
    found = await projects.list_all(request.app[STORE])
    return _json({"projects": [project_view(p) for p in found]})


async def get_project(request: web.Request) -> web.Response:
    project = await projects.get(request.app[STORE], request.match_info["project_id"])
    return _json(project_view(project))


async def update_project(request: web.Request) -> web.Response:
    body = await schemas.json_object(request)
    schemas.check_fields(body, {"name": _TEXT, "rate_limit": _TEXT_OR_NULL})
    project = await projects.update(
        request.app[STORE],
        request.match_info["project_id"],
        name=body.get("name", UNSET),
        rate_limit=body.get("rate_limit", UNSET),
    )
    return _json(project_view(project))


async def delete_project(request: web.Request) -> web.Response:
    await projects.delete(request.app[STORE], request.match_info["project_id"])
    return _no_content()


# ---------------------------------------------------------------- tokens


def _prefix(request: web.Request) -> str:
    return request.app[SETTINGS].token_prefix


async def create_token(request: web.Request) -> web.Response:
    body = await schemas.json_object(request)
    schemas.check_fields(body, {"description": _TEXT, "expires_in": _TEXT})
    issued = await tokens.issue(
        request.app[STORE],
        request.app[HASHER],
        _prefix(request),
        request.match_info["project_id"],
        description=body.get("description", ""),
        expires_in=body.get("expires_in", tokens.DEFAULT_PRESET),
    )
    view = token_view(issued.info, _prefix(request))
    location = f"/v1/projects/{issued.info.project_id}/tokens/{issued.info.id}"
    # The only answer that ever carries the plaintext token.
    return _json({**view, "token": issued.token}, 201, location)


async def list_tokens(request: web.Request) -> web.Response:
    page = await tokens.list_page(
        request.app[STORE],
        request.match_info["project_id"],
        limit=schemas.page_limit(request.query),
        cursor=request.query.get("cursor") or None,
    )
    views = [token_view(info, _prefix(request)) for info in page.tokens]
    return _json({"tokens": views, "next_cursor": page.next_cursor})


async def get_token(request: web.Request) -> web.Response:
    info = await tokens.get(
        request.app[STORE], request.match_info["project_id"], request.match_info["token_id"]
    )
    return _json(token_view(info, _prefix(request)))


async def revoke_token(request: web.Request) -> web.Response:
    await tokens.revoke(
        request.app[STORE], request.match_info["project_id"], request.match_info["token_id"]
    )
    return _no_content()


_TOKEN_ALLOW: Final = {"Allow": "GET, DELETE"}


async def token_immutable(request: web.Request) -> web.Response:
    raise MethodNotAllowed(
        "tokens are immutable: create a new one and revoke this one",
        code="token_immutable",
        headers=_TOKEN_ALLOW,
    )


async def token_other_method(request: web.Request) -> web.Response:
    # aiohttp's own 405 would offer PATCH and PUT, the routes that always refuse.
    raise MethodNotAllowed(headers=_TOKEN_ALLOW)


# ---------------------------------------------------------------- service


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers a query, 503 otherwise."""
    try:
        await asyncio.wait_for(request.app[POOL].fetchval("SELECT 1"), HEALTH_TIMEOUT)
    except db.UNREACHABLE:
        raise ServiceUnavailable("the database is not answering") from None
    return _json({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    return exposition(request.app[ADMIN_METRICS])


async def openapi(request: web.Request) -> web.Response:
    return _json(request.app[OPENAPI])


# ---------------------------------------------------------------- route table


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler


PROJECTS: Final = "/v1/projects"
PROJECT: Final = "/v1/projects/{project_id}"
TOKENS: Final = "/v1/projects/{project_id}/tokens"
TOKEN: Final = "/v1/projects/{project_id}/tokens/{token_id}"

ROUTES: Final = (
    Route("POST", PROJECTS, create_project),
    Route("GET", PROJECTS, list_projects),
    Route("GET", PROJECT, get_project),
    Route("PATCH", PROJECT, update_project),
    Route("DELETE", PROJECT, delete_project),
    Route("POST", TOKENS, create_token),
    Route("GET", TOKENS, list_tokens),
    Route("GET", TOKEN, get_token),
    Route("DELETE", TOKEN, revoke_token),
    Route("PATCH", TOKEN, token_immutable),
    Route("PUT", TOKEN, token_immutable),
    Route("*", TOKEN, token_other_method),  # last: any other method
    Route("GET", "/v1/openapi.json", openapi),
    Route("GET", "/healthz", healthz),
    Route("GET", "/metrics", metrics),
)


def add_routes(router: web.UrlDispatcher) -> None:
    for route in ROUTES:
        # add_route, unlike add_get, adds no implicit HEAD: the table is exactly what is served.
        router.add_route(route.method, route.path, route.handler)
