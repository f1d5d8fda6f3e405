"""The audit log's use cases: reading it, and the retention job that trims it.

Events are written by the store, each in its change's transaction; this module only
reads them (``GET /v1/audit``) and runs :func:`retention` in the background.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from gateway.core.store_audit import AuditFilter, AuditLog, AuditPage

from .background import repeat

log = logging.getLogger(__name__)


async def page(
    audit: AuditLog,
    *,
    project_id: str | None = None,
    action: str | None = None,
    actor_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int,
    cursor: int | None = None,
) -> AuditPage:
    where = AuditFilter(project_id, action, actor_id, since, until)
    return await audit.page(where, limit=limit, cursor=cursor)


async def retention(audit: AuditLog, days: int, interval: float) -> None:
    """Delete events older than ``days``, once now and then every ``interval`` seconds."""

    async def purge() -> None:
        deleted = await audit.purge(days)
        if deleted:
            log.info("audit retention: deleted %d events older than %d days", deleted, days)

    await repeat("audit retention", purge, lambda: asyncio.sleep(interval))
