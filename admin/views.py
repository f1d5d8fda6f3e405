"""How projects and tokens look on the wire (the API's JSON and the CLI's ``--json``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.core.store import Project, TokenInfo
from gateway.core.tokens import masked


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
