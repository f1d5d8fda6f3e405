"""What the admin side tells every gateway through Postgres ``NOTIFY``, declared once.

The store sends an event in the same transaction as the change it announces, so it
is delivered exactly when, and only if, the change commits; the proxy's listener
parses it with :func:`parse`. The payload is JSON::

    {"kind": "token_revoked", "project_id": ..., "token_id": ..., "at": <epoch seconds>}

``token_updated`` (a rotation) also carries the token's new ``expires_at`` and its
``rotated_at`` (epoch seconds, see :func:`expiry`), so a gateway applies them at once.

``at`` is read just before the commit, so a listener can measure propagation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import asyncpg

CHANNEL: Final = "tollgate_events"

TOKEN_REVOKED: Final = "token_revoked"  # the token is gone (revoked or leaked)
TOKEN_UPDATED: Final = "token_updated"  # its state changed (rotation shortened its expiry)
PROJECT_DELETED: Final = "project_deleted"  # the project and all its tokens are gone
PROJECT_UPDATED: Final = "project_updated"  # a setting the gateway caches changed
ADMIN_KEY_REVOKED: Final = "admin_key_revoked"  # admin instances forget the key's proof

KINDS: Final = frozenset(
    {TOKEN_REVOKED, TOKEN_UPDATED, PROJECT_DELETED, PROJECT_UPDATED, ADMIN_KEY_REVOKED}
)
# Kinds that name one token (or admin key) in "token_id".
_NAMES_TOKEN: Final = frozenset({TOKEN_REVOKED, TOKEN_UPDATED, ADMIN_KEY_REVOKED})

_NOTIFY: Final = (
    "SELECT pg_notify($1, ($2::jsonb || "
    "jsonb_build_object('at', extract(epoch FROM clock_timestamp())))::text)"
)


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    project_id: str
    token_id: str | None = None
    at: float | None = None  # epoch seconds just before the commit
    extra: dict[str, Any] = field(default_factory=dict)  # informational (e.g. the new limit)


async def notify(conn: asyncpg.Connection, kind: str, project_id: str, **extra: Any) -> None:
    """Send ``kind`` for ``project_id`` inside the caller's transaction."""
    assert kind in KINDS, kind
    payload = {"kind": kind, "project_id": project_id, **extra}
    await conn.execute(_NOTIFY, CHANNEL, json.dumps(payload))


def expiry(expires_at: datetime | None, rotated_at: datetime | None) -> dict[str, float | None]:
    """The extra fields of a ``token_updated`` event: the token's new expiry and when it
    was rotated, as epoch seconds (None: never / not rotated)."""
    return {
        "expires_at": None if expires_at is None else expires_at.timestamp(),
        "rotated_at": None if rotated_at is None else rotated_at.timestamp(),
    }


def parse(payload: str) -> Event | None:
    """The event in a notification, or None when it is not one of ours or unreadable."""
    try:
        data = json.loads(payload)
        kind, project_id = data.pop("kind"), data.pop("project_id")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if kind not in KINDS or not isinstance(project_id, str):
        return None
    token_id = data.pop("token_id", None)
    at = data.pop("at", None)
    if kind in _NAMES_TOKEN and not isinstance(token_id, str):
        return None
    return Event(
        kind,
        project_id,
        token_id if isinstance(token_id, str) else None,
        float(at) if isinstance(at, int | float) else None,
        data,
    )
