"""What a webhook event says about its subject, written once for every event of that kind.

The ``data`` of an outbox event (SPEC §12) holds ids, names and times only: never a token,
a secret or a hash. Every token event carries the same ``token`` object, every project
event the same ``project`` object, so a receiver reads them one way whatever the type::

    {"token": {"id", "project_id", "description", "created_at", "expires_at"}, ...}
    {"project": {"id", "name", "rate_limit", "quota", "created_at"}}

Rows are asyncpg records or anything with the same keys (a mapping).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def rfc3339(moment: datetime | None) -> str | None:
    """``2026-11-22T10:00:00Z``: UTC, whole seconds, as most clients parse without fuss."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def token(row: Mapping[str, Any], **more: Any) -> dict[str, Any]:
    """``{"token": {...}}`` plus the event's own fields (``source``, ``within``)."""
    subject = {
        "id": row["id"],
        "project_id": row["project_id"],
        "description": row["description"],
        "created_at": rfc3339(row["created_at"]),
        "expires_at": rfc3339(row["expires_at"]),
    }
    return {"token": subject, **more}


def project(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "project": {
            "id": row["id"],
            "name": row["name"],
            "rate_limit": row["rate_limit"],
            "quota": row.get("quota"),
            "created_at": rfc3339(row["created_at"]),
        }
    }
