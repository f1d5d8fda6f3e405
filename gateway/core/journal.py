"""What a change leaves behind, written in the change's own transaction.

Two records, both append-only, both on the caller's connection inside its transaction
(no change without its records, no record without its change):

* :func:`audit` — one audit event per successful change (SPEC §9): who (:class:`Actor`),
  what (``action``), on which project and target, from which request and address, and
  for updates the ``changes`` as ``{"field": [before, after]}``. Never a secret.
* :func:`emit` — one outbox event for the seller's webhooks (SPEC §12), with one pending
  delivery per webhook of the project that subscribes to its type. Admin instances
  deliver them later; a restart loses nothing.

Both take plain values only: a token, key, secret or hash must never be passed in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import asyncpg

from .tokens import new_id

ActorType = Literal["bootstrap", "admin_key", "portal", "cli", "leak_report"]

ACTIONS: Final = frozenset(
    {
        "project.created",
        "project.updated",
        "project.deleted",
        "token.created",
        "token.rotated",
        "token.revoked",
        "token.leaked",
        "admin_key.created",
        "admin_key.revoked",
        "webhook.created",
        "webhook.deleted",
        "portal_session.created",
    }
)

EVENT_TYPES: Final = frozenset(
    {
        "token.created",
        "token.rotated",
        "token.revoked",
        "token.leaked",
        "token.expiring",
        "token.expired",
        "quota.warning",
        "quota.exhausted",
        "project.updated",
        "webhook.test",
    }
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change, and from where (request id and client address, when over HTTP)."""

    type: ActorType
    id: str | None = None
    name: str | None = None
    request_id: str | None = None
    ip: str | None = None


CLI: Final = Actor("cli")

_AUDIT: Final = (
    "INSERT INTO audit_events (actor_type, actor_id, actor_name, action, project_id, "
    "target_id, request_id, ip, changes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::inet, $9::jsonb)"
)

_EMIT: Final = (
    "INSERT INTO outbox_events (id, project_id, type, data) VALUES ($1, $2, $3, $4::jsonb)"
)
_FAN_OUT: Final = (
    "INSERT INTO webhook_deliveries (event_id, webhook_id) "
    "SELECT $1, id FROM webhooks WHERE project_id = $2 "
    "AND (cardinality(events) = 0 OR $3 = ANY(events))"
)


async def audit(
    conn: asyncpg.Connection,
    actor: Actor,
    action: str,
    *,
    project_id: str | None,
    target_id: str | None,
    changes: dict[str, tuple[Any, Any]] | None = None,
) -> None:
    """Record ``action`` by ``actor`` inside the caller's transaction."""
    assert action in ACTIONS, action
    assert conn.is_in_transaction(), "an audit event is written in its change's transaction"
    await conn.execute(
        _AUDIT,
        actor.type,
        actor.id,
        actor.name,
        action,
        project_id,
        target_id,
        actor.request_id,
        actor.ip,
        None if changes is None else json.dumps({k: list(v) for k, v in changes.items()}),
    )


def changed(
    before: Mapping[str, Any], after: Mapping[str, Any], fields: Iterable[str]
) -> dict[str, tuple[Any, Any]]:
    """The ``changes`` of an update: each of ``fields`` whose value differs, as (before, after)."""
    return {name: (before[name], after[name]) for name in fields if before[name] != after[name]}


async def emit(
    conn: asyncpg.Connection, type: str, project_id: str | None, data: dict[str, Any]
) -> str:
    """Write an outbox event and its pending deliveries; returns the event id."""
    assert type in EVENT_TYPES, type
    assert conn.is_in_transaction(), "an event is written in its change's transaction"
    event_id = f"evt_{new_id()}"
    await conn.execute(_EMIT, event_id, project_id, type, json.dumps(data))
    if project_id is not None:
        await conn.execute(_FAN_OUT, event_id, project_id, type)
    return event_id
