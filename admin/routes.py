"""The admin HTTP API's routes (SPEC §4): the route table, each handler under its declaration.

A handler gets its input checked (``given``), calls a use case from ``projects``/``tokens``
and returns a view; ``@documented`` renders it as the declared answer, and the OpenAPI
document is generated from these same declarations. Errors are raised as
``gateway.core.errors`` classes and rendered by the error middleware.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

from gateway.core import db
from gateway.core.errors import MethodNotAllowed, ServiceUnavailable

from . import projects, schemas, tokens
from .endpoints import Answer, Given, Operation, Reply, documented, is_public
from .keys import ADMIN_METRICS, HASHER, OPENAPI, POOL, SETTINGS, STORE
from .metrics import exposition
from .views import new_token_view, project_list_view, project_view, token_page_view, token_view

HEALTH_TIMEOUT: Final = 2.0

PROJECTS: Final = "/v1/projects"
PROJECT: Final = "/v1/projects/{project_id}"
TOKENS: Final = "/v1/projects/{project_id}/tokens"
TOKEN: Final = "/v1/projects/{project_id}/tokens/{token_id}"

# The routes the app serves, in this order (see add_routes).
ROUTES: Final = web.RouteTableDef()

_BODY_ERRORS: Final = (400, 401, 413, 415)
_PROJECT: Final = Answer(200, "The project.", "Project")


# ---------------------------------------------------------------- projects


@ROUTES.post(PROJECTS)
@documented(
    Operation(
        "Create a project",
        Answer(201, "The project.", "Project", location="/v1/projects/{id}"),
        _BODY_ERRORS,
        body=schemas.PROJECT_CREATE,
    )
)
async def create_project(request: web.Request, given: Given) -> Reply:
    return project_view(await projects.create(request.app[STORE], **given.body))


@ROUTES.get(PROJECTS)
@documented(
    Operation("List projects, newest first", Answer(200, "Every project.", "ProjectList"), (401,))
)
async def list_projects(request: web.Request, given: Given) -> Reply:
    return project_list_view(await projects.list_all(request.app[STORE]))


@ROUTES.get(PROJECT)
@documented(Operation("Get a project", _PROJECT, (401, 404)))
async def get_project(request: web.Request, given: Given) -> Reply:
    return project_view(await projects.get(request.app[STORE], request.match_info["project_id"]))


@ROUTES.patch(PROJECT)
@documented(
    Operation(
        "Rename a project or change its rate limit",
        _PROJECT,
        (*_BODY_ERRORS, 404),
        "A new rate limit reaches every gateway at once.",
        body=schemas.PROJECT_UPDATE,
    )
)
async def update_project(request: web.Request, given: Given) -> Reply:
    project_id = request.match_info["project_id"]
    return project_view(await projects.update(request.app[STORE], project_id, **given.body))


@ROUTES.delete(PROJECT)
@documented(
    Operation(
        "Delete a project and its tokens",
        Answer(204, "Deleted."),
        (401, 404),
        "Its tokens stop working at once on every gateway.",
    )
)
async def delete_project(request: web.Request, given: Given) -> Reply:
    await projects.delete(request.app[STORE], request.match_info["project_id"])
    return None


# ---------------------------------------------------------------- tokens


def _prefix(request: web.Request) -> str:
    return request.app[SETTINGS].token_prefix


@ROUTES.post(TOKENS)
@documented(
    Operation(
        "Issue a token",
        Answer(
            201,
            "The new token.",
            "NewToken",
            location="/v1/projects/{project_id}/tokens/{id}",
            secret=True,
        ),
        (*_BODY_ERRORS, 404),
        "The answer is the only place the token itself ever appears.",
        body=schemas.TOKEN_CREATE,
    )
)
async def create_token(request: web.Request, given: Given) -> Reply:
    app, project_id = request.app, request.match_info["project_id"]
    issued = await tokens.issue(app[STORE], app[HASHER], _prefix(request), project_id, **given.body)
    return new_token_view(issued, _prefix(request))


@ROUTES.get(TOKENS)
@documented(
    Operation(
        "List a project's tokens, newest first",
        Answer(200, "A page of tokens.", "TokenPage"),
        (400, 401, 404),
        query=schemas.TOKEN_PAGE,
    )
)
async def list_tokens(request: web.Request, given: Given) -> Reply:
    project_id = request.match_info["project_id"]
    page = await tokens.list_page(request.app[STORE], project_id, **given.query)
    return token_page_view(page, _prefix(request))


@ROUTES.get(TOKEN)
@documented(
    Operation("Get a token (never its secret)", Answer(200, "The token.", "Token"), (401, 404))
)
async def get_token(request: web.Request, given: Given) -> Reply:
    ids = request.match_info["project_id"], request.match_info["token_id"]
    return token_view(await tokens.get(request.app[STORE], *ids), _prefix(request))


@ROUTES.delete(TOKEN)
@documented(
    Operation(
        "Revoke a token",
        Answer(204, "Revoked."),
        (401, 404),
        "Deletes it: it stops working at once on every gateway.",
    )
)
async def revoke_token(request: web.Request, given: Given) -> Reply:
    ids = request.match_info["project_id"], request.match_info["token_id"]
    await tokens.revoke(request.app[STORE], *ids)
    return None


_TOKEN_ALLOW: Final = {"Allow": "GET, DELETE"}


@ROUTES.put(TOKEN)
@ROUTES.patch(TOKEN)
@documented(Operation("Not allowed: tokens are immutable", None, (401, 405)))
async def token_immutable(request: web.Request, given: Given) -> Reply:
    raise MethodNotAllowed(
        "tokens are immutable: create a new one and revoke this one",
        code="token_immutable",
        headers=_TOKEN_ALLOW,
    )


@ROUTES.route("*", TOKEN)  # last: any other method; not an operation of its own
async def token_other_method(request: web.Request) -> web.Response:
    # aiohttp's own 405 would offer PATCH and PUT, the routes that always refuse.
    raise MethodNotAllowed(headers=_TOKEN_ALLOW)


# ---------------------------------------------------------------- service


@ROUTES.get("/v1/openapi.json")
@documented(Operation("This document", Answer(200, "The OpenAPI document."), public=True))
async def openapi(request: web.Request, given: Given) -> Reply:
    return request.app[OPENAPI]


@ROUTES.get("/healthz")
@documented(
    Operation(
        "Whether the admin API and its database answer",
        Answer(200, "Healthy."),
        (503,),
        public=True,
    )
)
async def healthz(request: web.Request, given: Given) -> Reply:
    """200 when the database answers a query, 503 otherwise."""
    try:
        await asyncio.wait_for(request.app[POOL].fetchval("SELECT 1"), HEALTH_TIMEOUT)
    except db.UNREACHABLE:
        raise ServiceUnavailable("the database is not answering") from None
    return {"status": "ok"}


@ROUTES.get("/metrics")
@documented(
    Operation(
        "Prometheus metrics of the admin API",
        Answer(200, "Metrics.", media_type="text/plain"),
        public=True,
    )
)
async def metrics(request: web.Request, given: Given) -> Reply:
    return exposition(request.app[ADMIN_METRICS])


def public_paths() -> frozenset[str]:
    """The paths of the routes declared public: they need no admin token."""
    return frozenset(
        route.path
        for route in ROUTES
        if isinstance(route, web.RouteDef) and is_public(route.handler)
    )


def add_routes(router: web.UrlDispatcher) -> None:
    for route in ROUTES:
        assert isinstance(route, web.RouteDef)
        # add_route, unlike add_get, adds no implicit HEAD: the table is exactly what is served.
        router.add_route(route.method, route.path, route.handler, **route.kwargs)
