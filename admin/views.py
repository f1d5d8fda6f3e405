"""How projects and tokens look on the wire (the API's JSON and the CLI's ``--json``).

Each view is written here once, and its OpenAPI schema beside it (``ANSWERS``); a test
checks that the two name the same fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from gateway.core.store import Project, TokenInfo, TokenPage
from gateway.core.tokens import masked

from . import schemas, tokens

Schema = dict[str, Any]


def rfc3339(moment: datetime | None) -> str | None:
    """``2026-11-22T10:00:00Z``: UTC, whole seconds, as most clients parse without fuss."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def project_view(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "rate_limit": project.rate_limit,
        "created_at": rfc3339(project.created_at),
    }


def project_list_view(projects: Sequence[Project]) -> dict[str, Any]:
    return {"projects": [project_view(p) for p in projects]}


def token_status(info: TokenInfo, now: datetime) -> str:
    return "expired" if info.expires_at is not None and info.expires_at <= now else "active"


def token_view(info: TokenInfo, prefix: str, *, now: datetime | None = None) -> dict[str, Any]:
    """A token as listings show it: the masked form, never the secret or its hash."""
    return {
        "id": info.id,
        "project_id": info.project_id,
        "description": info.description,
        "masked": masked(prefix, info.id),
        "created_at": rfc3339(info.created_at),
        "expires_at": rfc3339(info.expires_at),
        "last_used_at": rfc3339(info.last_used_at),
        "status": token_status(info, now or datetime.now(UTC)),
    }


def new_token_view(issued: tokens.Issued, prefix: str) -> dict[str, Any]:
    """The only answer that ever carries the plaintext token."""
    return {**token_view(issued.info, prefix), "token": issued.token}


def token_page_view(page: TokenPage, prefix: str) -> dict[str, Any]:
    return {
        "tokens": [token_view(info, prefix) for info in page.tokens],
        "next_cursor": page.next_cursor,
    }


# ---------------------------------------------------------------- their schemas


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _always(properties: dict[str, Schema]) -> Schema:
    """An object the API returns: every field is always present (null when it has no value)."""
    return {"type": "object", "required": list(properties), "properties": properties}


_TIME: Final[Schema] = {
    "type": "string",
    "format": "date-time",
    "examples": ["2026-11-22T10:00:00Z"],
}
_TIME_OR_NULL: Final[Schema] = {**_TIME, "type": ["string", "null"]}

ANSWERS: Final[dict[str, Schema]] = {
    "Project": _always(
        {
            "id": {"type": "string"},
            "name": {k: v for k, v in schemas.NAME.schema().items() if k != "description"},
            "rate_limit": {
                "type": ["string", "null"],
                "description": "Canonical (`600/minute`); null means the gateway default.",
                "examples": ["600/minute"],
            },
            "created_at": _TIME,
        }
    ),
    "ProjectList": _always({"projects": {"type": "array", "items": _ref("Project")}}),
    "Token": _always(
        {
            "id": {"type": "string", "description": "The public id inside the token."},
            "project_id": {"type": "string"},
            "description": {"type": "string", "maxLength": tokens.DESCRIPTION_MAX},
            "masked": {"type": "string", "description": "Prefix and id; never the secret."},
            "created_at": _TIME,
            "expires_at": _TIME_OR_NULL,
            "last_used_at": _TIME_OR_NULL,
            "status": {"enum": ["active", "expired"]},
        }
    ),
    "NewToken": {
        "allOf": [
            _ref("Token"),
            _always(
                {
                    "token": {
                        "type": "string",
                        "description": "The token itself. Shown in this answer only, never again.",
                    }
                }
            ),
        ]
    },
    "TokenPage": _always(
        {
            "tokens": {"type": "array", "items": _ref("Token")},
            "next_cursor": {"type": ["string", "null"]},
        }
    ),
}
