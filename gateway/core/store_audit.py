"""Reading the audit log (SPEC §9) and the one job allowed to delete from it.

Events are written by :func:`gateway.core.journal.audit`, each in its change's own
transaction; nothing here changes one. The retention job deletes the events older than
its horizon in a transaction that names the horizon, the only DELETE the table's
trigger lets through (migration 0002).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    at: datetime
    actor_type: str
    actor_id: str | None
    actor_name: str | None
    action: str
    project_id: str | None
    target_id: str | None
    request_id: str | None
    ip: str | None
    changes: dict[str, list[Any]] | None


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[AuditEvent]
    next_cursor: int | None  # the id the next page starts below


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What a page is limited to; None: any."""

    project_id: str | None = None
    action: str | None = None
    actor_id: str | None = None
    since: datetime | None = None  # at or after
    until: datetime | None = None  # before


_PAGE: Final = (
    "SELECT id, at, actor_type, actor_id, actor_name, action, project_id, target_id, "
    "request_id, host(ip) AS ip, changes FROM audit_events "
    "WHERE ($1::text IS NULL OR project_id = $1) AND ($2::text IS NULL OR action = $2) "
    "AND ($3::text IS NULL OR actor_id = $3) AND ($4::timestamptz IS NULL OR at >= $4) "
    "AND ($5::timestamptz IS NULL OR at < $5) AND ($6::bigint IS NULL OR id < $6) "
    "ORDER BY id DESC LIMIT $7"
)


class AuditLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def page(self, where: AuditFilter, *, limit: int, cursor: int | None) -> AuditPage:
        """Events newest first; ``cursor``: a ``next_cursor`` of the page before."""
        rows = await self._pool.fetch(
            _PAGE,
            where.project_id,
            where.action,
            where.actor_id,
            where.since,
            where.until,
            cursor,
            limit + 1,
        )
        found = [_event(row) for row in rows[:limit]]
        return AuditPage(found, found[-1].id if len(rows) > limit else None)

    async def purge(self, retention_days: int) -> int:
        """Delete the events older than ``retention_days``; how many were deleted."""
        async with self._pool.acquire() as conn, conn.transaction():
            # SET LOCAL takes no parameters; the value is an int, never client text.
            await conn.execute(f"SET LOCAL tollgate.audit_retention_days = {int(retention_days)}")
            status: str = await conn.execute(
                "DELETE FROM audit_events WHERE at < now() - make_interval(days => $1)",
                retention_days,
            )
        return int(status.split()[-1])


def _event(row: asyncpg.Record) -> AuditEvent:
    values = dict(row)
    if values["changes"] is not None:
        values["changes"] = json.loads(values["changes"])
    return AuditEvent(**values)
