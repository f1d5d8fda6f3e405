"""The OpenAPI 3.1 description of the admin API, served at ``GET /v1/openapi.json``.

Operations are declared here by (method, path) next to their schemas; a test checks
that they and the app's real route table are the same set, so neither can drift.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.core.rates import PATTERN

from . import tokens
from .projects import NAME_MAX
from .schemas import MAX_BODY, PAGE_DEFAULT, PAGE_MAX

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(properties: dict[str, Schema]) -> Schema:
    """An object the API returns: every field is always present (null when it has no value)."""
    return {"type": "object", "required": list(properties), "properties": properties}


_TIME: Final[Schema] = {
    "type": "string",
    "format": "date-time",
    "examples": ["2026-11-22T10:00:00Z"],
}
_RATE: Final[Schema] = {
    "type": ["string", "null"],
    "pattern": f"^{PATTERN.pattern}$",
    "description": "Requests per period, e.g. `600/minute`; null means the gateway default.",
}
_NAME: Final[Schema] = {"type": "string", "minLength": 1, "maxLength": NAME_MAX}

SCHEMAS: Final[dict[str, Schema]] = {
    "Error": _answer(
        {
            "error": _answer(
                {
                    "code": {"type": "string", "examples": ["unknown_field"]},
                    "message": {"type": "string"},
                }
            )
        }
    ),
    "Project": _answer(
        {
            "id": {"type": "string"},
            "name": _NAME,
            "rate_limit": _RATE,
            "created_at": _TIME,
        }
    ),
    "ProjectCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {"name": _NAME, "rate_limit": _RATE},
    },
    "ProjectUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"name": _NAME, "rate_limit": _RATE},
    },
    "ProjectList": _answer({"projects": {"type": "array", "items": _ref("Project")}}),
    "Token": _answer(
        {
            "id": {"type": "string", "description": "The public id inside the token."},
            "project_id": {"type": "string"},
            "description": {"type": "string", "maxLength": tokens.DESCRIPTION_MAX},
            "masked": {"type": "string", "description": "Prefix and id; never the secret."},
            "created_at": _TIME,
            "expires_at": {**_TIME, "type": ["string", "null"]},
            "last_used_at": {**_TIME, "type": ["string", "null"]},
            "status": {"enum": ["active", "expired"]},
        }
    ),
    "NewToken": {
        "allOf": [
            _ref("Token"),
            _answer(
                {
                    "token": {
                        "type": "string",
                        "description": "The token itself. Shown in this answer only, never again.",
                    }
                }
            ),
        ]
    },
    "TokenCreate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "description": {"type": "string", "maxLength": tokens.DESCRIPTION_MAX},
            "expires_in": {"enum": list(tokens.PRESETS), "default": tokens.DEFAULT_PRESET},
        },
    },
    "TokenPage": _answer(
        {
            "tokens": {"type": "array", "items": _ref("Token")},
            "next_cursor": {"type": ["string", "null"]},
        }
    ),
}

_ERRORS: Final = {
    "400": "Malformed JSON, unknown field, wrong type or invalid value (the message names it).",
    "401": "Missing or wrong admin token.",
    "404": "No such project or token.",
    "405": "Tokens are immutable: create a new one and revoke this one.",
    "413": f"Body larger than {MAX_BODY // 1024} KiB.",
    "415": "Body is not JSON.",
    "503": "The database is not answering.",
}


def _ok(status: str, description: str, schema: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = {"application/json": {"schema": _ref(schema)}}
    return {status: answer}


def _fail(*statuses: str) -> dict[str, Any]:
    return {s: {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def _body(schema: str, required: bool = True) -> dict[str, Any]:
    return {
        "required": required,
        "content": {"application/json": {"schema": _ref(schema)}},
    }


def _param(name: str, where: str, schema: Schema, description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


_PROJECT_ID = _param("project_id", "path", {"type": "string"})
_TOKEN_ID = _param("token_id", "path", {"type": "string"})
_BODY_ERRORS = ("400", "401", "413", "415")

_PUBLIC: Final[list[dict[str, list[str]]]] = []  # overrides the global admin security

Operation = tuple[str, str]

OPERATIONS: Final[dict[Operation, dict[str, Any]]] = {
    ("POST", "/v1/projects"): {
        "summary": "Create a project",
        "requestBody": _body("ProjectCreate"),
        "responses": {**_ok("201", "The project.", "Project"), **_fail(*_BODY_ERRORS)},
    },
    ("GET", "/v1/projects"): {
        "summary": "List projects, newest first",
        "responses": {**_ok("200", "Every project.", "ProjectList"), **_fail("401")},
    },
    ("GET", "/v1/projects/{project_id}"): {
        "summary": "Get a project",
        "parameters": [_PROJECT_ID],
        "responses": {**_ok("200", "The project.", "Project"), **_fail("401", "404")},
    },
    ("PATCH", "/v1/projects/{project_id}"): {
        "summary": "Rename a project or change its rate limit",
        "description": "A new rate limit reaches every gateway at once.",
        "parameters": [_PROJECT_ID],
        "requestBody": _body("ProjectUpdate"),
        "responses": {**_ok("200", "The project.", "Project"), **_fail(*_BODY_ERRORS, "404")},
    },
    ("DELETE", "/v1/projects/{project_id}"): {
        "summary": "Delete a project and its tokens",
        "description": "Its tokens stop working at once on every gateway.",
        "parameters": [_PROJECT_ID],
        "responses": {**_ok("204", "Deleted."), **_fail("401", "404")},
    },
    ("POST", "/v1/projects/{project_id}/tokens"): {
        "summary": "Issue a token",
        "description": "The answer is the only place the token itself ever appears.",
        "parameters": [_PROJECT_ID],
        "requestBody": _body("TokenCreate", required=False),
        "responses": {**_ok("201", "The new token.", "NewToken"), **_fail(*_BODY_ERRORS, "404")},
    },
    ("GET", "/v1/projects/{project_id}/tokens"): {
        "summary": "List a project's tokens, newest first",
        "parameters": [
            _PROJECT_ID,
            _param(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_DEFAULT},
            ),
            _param("cursor", "query", {"type": "string"}, "`next_cursor` of the previous page."),
        ],
        "responses": {**_ok("200", "A page of tokens.", "TokenPage"), **_fail("400", "401", "404")},
    },
    ("GET", "/v1/projects/{project_id}/tokens/{token_id}"): {
        "summary": "Get a token (never its secret)",
        "parameters": [_PROJECT_ID, _TOKEN_ID],
        "responses": {**_ok("200", "The token.", "Token"), **_fail("401", "404")},
    },
    ("DELETE", "/v1/projects/{project_id}/tokens/{token_id}"): {
        "summary": "Revoke a token",
        "description": "Deletes it: it stops working at once on every gateway.",
        "parameters": [_PROJECT_ID, _TOKEN_ID],
        "responses": {**_ok("204", "Revoked."), **_fail("401", "404")},
    },
    ("PATCH", "/v1/projects/{project_id}/tokens/{token_id}"): {
        "summary": "Not allowed: tokens are immutable",
        "parameters": [_PROJECT_ID, _TOKEN_ID],
        "responses": _fail("401", "405"),
    },
    ("PUT", "/v1/projects/{project_id}/tokens/{token_id}"): {
        "summary": "Not allowed: tokens are immutable",
        "parameters": [_PROJECT_ID, _TOKEN_ID],
        "responses": _fail("401", "405"),
    },
    ("GET", "/v1/openapi.json"): {
        "summary": "This document",
        "security": _PUBLIC,
        "responses": {"200": {"description": "The OpenAPI document."}},
    },
    ("GET", "/healthz"): {
        "summary": "Whether the admin API and its database answer",
        "security": _PUBLIC,
        "responses": {"200": {"description": "Healthy."}, **_fail("503")},
    },
    ("GET", "/metrics"): {
        "summary": "Prometheus metrics of the admin API",
        "security": _PUBLIC,
        "responses": {
            "200": {"description": "Metrics.", "content": {"text/plain": {"schema": {}}}}
        },
    },
}


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in OPERATIONS.items():
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tollgate admin API",
            "version": "1",
            "description": "Projects and their API tokens. Errors are "
            '`{"error": {"code": ..., "message": ...}}`.',
        },
        "servers": [{"url": "/"}],
        "security": [{"adminToken": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                f"E{status}": {
                    "description": text,
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
                for status, text in _ERRORS.items()
            },
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The ADMIN_TOKEN setting.",
                }
            },
        },
    }
