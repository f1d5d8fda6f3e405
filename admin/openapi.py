"""The OpenAPI 3.1 description of the admin API, served at ``GET /v1/openapi.json``.

Generated from the route table: each route's declared operation (``routes``), the request
bodies and query strings it declares (``schemas``) and the answers' schemas (``views``).
A route without a declaration cannot be described, and :func:`document` refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from aiohttp import web

from . import routes
from .endpoints import Answer, Operation, operation_of
from .jsonbody import JSON_TYPE, MAX_BODY
from .views import ANSWERS

Schema = dict[str, Any]

_ERROR: Final[Schema] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "examples": ["unknown_field"]},
                "message": {"type": "string"},
            },
        }
    },
}

_ERRORS: Final = {
    400: "Malformed JSON, unknown field, wrong type or invalid value (the message names it).",
    401: "Missing, wrong, revoked or expired admin credential.",
    403: "This credential's role (or portal session) may not do this.",
    404: "No such project, token, webhook or admin key (another project's routes are 404 to a "
    "project-scoped credential).",
    405: "Tokens are immutable: create a new one and revoke this one.",
    409: "A conflict: the token was rotated already, or the project has as many webhooks "
    "as it may.",
    413: f"Body larger than {MAX_BODY // 1024} KiB.",
    415: "Body is not JSON.",
    429: "Too many requests from this address; retry after `Retry-After` seconds.",
    503: "The database is not answering.",
}

_ANSWER_HEADERS: Final = {
    "Location": {"description": "Where the new object is.", "schema": {"type": "string"}},
}
_SECRET_HEADERS: Final = {
    "Cache-Control": {
        "description": "`no-store`: the answer carries a secret; no cache may keep it.",
        "schema": {"const": "no-store"},
    },
    "Pragma": {"description": "`no-cache`, for HTTP/1.0 caches.", "schema": {"const": "no-cache"}},
}


def _ref(section: str, name: str) -> Schema:
    return {"$ref": f"#/components/{section}/{name}"}


def _documented(table: Iterable[web.AbstractRouteDef]) -> list[tuple[web.RouteDef, Operation]]:
    """Every route of the table with its operation ("*" catch-alls only refuse: left out)."""
    return [
        (route, operation_of(route.handler))
        for route in table
        if isinstance(route, web.RouteDef) and route.method != "*"
    ]


def _answer(answer: Answer) -> Schema:
    described: Schema = {"description": answer.description}
    if answer.schema is not None:
        described["content"] = {answer.media_type: {"schema": _ref("schemas", answer.schema)}}
    elif answer.media_type != JSON_TYPE:
        described["content"] = {answer.media_type: {"schema": {}}}
    headers = {
        **(_ANSWER_HEADERS if answer.location is not None else {}),
        **(_SECRET_HEADERS if answer.secret else {}),
    }
    if headers:
        described["headers"] = headers
    return described


def _operation(path: str, operation: Operation) -> Schema:
    described: Schema = {"summary": operation.summary}
    if operation.description:
        described["description"] = operation.description
    if operation.public:
        described["security"] = []  # overrides the document's admin token
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]
    if operation.query is not None:
        parameters += operation.query.parameters()
    if parameters:
        described["parameters"] = parameters
    if operation.body is not None:
        described["requestBody"] = {
            "required": operation.body.required,
            "content": {JSON_TYPE: {"schema": _ref("schemas", operation.body.name)}},
        }
    elif operation.raw_body is not None:
        described["requestBody"] = {
            "required": True,
            "content": {JSON_TYPE: {"schema": _ref("schemas", operation.raw_body.name)}},
        }
    responses = (
        {}
        if operation.answer is None
        else {str(operation.answer.status): _answer(operation.answer)}
    )
    # Any credential-checked route may refuse a role (SPEC §8): 403 is always possible there.
    errors = sorted({*operation.errors, *(() if operation.public else (401, 403))})
    responses.update({str(status): _ref("responses", f"E{status}") for status in errors})
    described["responses"] = responses
    return described


def schemas(table: Iterable[web.AbstractRouteDef] = routes.ROUTES) -> dict[str, Schema]:
    """The schema components: the error shape, the answers, and each declared body."""
    bodies = {
        operation.body.name: operation.body.schema()
        for _, operation in _documented(table)
        if operation.body is not None
    }
    bodies.update(
        (operation.raw_body.name, operation.raw_body.schema)
        for _, operation in _documented(table)
        if operation.raw_body is not None
    )
    return {"Error": _ERROR, **ANSWERS, **bodies}


def document(table: Iterable[web.AbstractRouteDef] = routes.ROUTES) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route, operation in _documented(table):
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route.path, operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tollgate admin API",
            "version": "1",
            "description": "Projects, their API tokens and webhooks, admin keys, portal "
            "sessions and the audit log. Errors are "
            '`{"error": {"code": ..., "message": ...}}`.',
        },
        "servers": [{"url": "/"}],
        "security": [{"adminToken": []}],
        "paths": paths,
        "components": {
            "schemas": schemas(table),
            "responses": {
                f"E{status}": {
                    "description": text,
                    "content": {JSON_TYPE: {"schema": _ref("schemas", "Error")}},
                }
                for status, text in _ERRORS.items()
            },
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The ADMIN_TOKEN setting, an admin key (tgadm_...) or a "
                    "portal session.",
                }
            },
        },
    }


SCHEMAS: Final = schemas()
