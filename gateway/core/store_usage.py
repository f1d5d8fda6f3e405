"""The SQL of the usage ledger and quotas (SPEC §11): the gateway's flush, the admin's reads.

A flush is ONE transaction, whatever the load: the last-used times, then every batch of
counts not applied yet. Each batch carries an id, inserted into ``usage_batches`` in the
same transaction; a batch whose id is already there was applied by an earlier attempt
whose COMMIT succeeded but whose answer was lost, and is skipped, so a retry never
counts twice. Quota units go to ``quota_usage``; a batch that carries a project's use
across 80 % or 100 % of its quota writes ``quota.warning`` / ``quota.exhausted`` to the
outbox in that same transaction (row locks order concurrent flushes, so exactly one of
them crosses each threshold, and a skipped batch crosses nothing).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Final

import asyncpg

from . import journal, outbox

DAY: Final = 86_400
COLUMNS: Final = ("proxied", "upstream_errors", "rate_limited", "forbidden")
# Batch ids are needed only while a retry can come: a gateway retries for minutes, not days.
BATCH_RETENTION: Final = "7 days"
WARNING_SHARE: Final = 0.8

Counts = dict[tuple[str, str, int], list[int]]  # (token id, project id, epoch day) -> COLUMNS
Units = dict[tuple[str, str], list[int]]  # (project id, period key) -> [units, quota limit]
Totals = dict[tuple[str, str], int]  # (project id, period key) -> units used, all gateways


@dataclass(slots=True)
class Batch:
    """One flush's counts. ``sent``: a COMMIT carrying it went out, so it may be applied
    already and must keep its id; a batch never sent may be merged into another."""

    counts: Counts
    units: Units
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    sent: bool = False

    def merge(self, other: Batch) -> None:
        """Add ``other``'s counts to this batch's (neither may have been sent)."""
        assert not self.sent and not other.sent
        for key, row in other.counts.items():
            mine = self.counts.setdefault(key, [0, 0, 0, 0])
            for i, n in enumerate(row):
                mine[i] += n
        for period, (units, limit) in other.units.items():
            entry = self.units.setdefault(period, [0, limit])
            entry[0] += units
            entry[1] = limit


@dataclass(frozen=True, slots=True)
class UsageRow:
    """The four counts of one day (``key`` a date) or one token (``key`` its id)."""

    key: date | str
    proxied: int = 0
    upstream_errors: int = 0
    rate_limited: int = 0
    forbidden: int = 0

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COLUMNS}


TOUCH_LAST_USED: Final = (
    "UPDATE tokens AS t SET last_used_at = u.at "
    "FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at) "
    "WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at < u.at)"
)
# Deleting a project locks its row, then its tokens' rows (the cascade); a flush updates
# tokens' rows, then checks its new usage rows' project keys. Taking the projects' key
# locks first gives both one order, so the two wait for each other instead of deadlocking.
_LOCK_PROJECTS: Final = (
    "SELECT 1 FROM projects WHERE id IN "
    "(SELECT project_id FROM tokens WHERE id = ANY($1::text[]) UNION SELECT unnest($2::text[])) "
    "ORDER BY id FOR KEY SHARE"
)
_NEW_BATCHES: Final = (
    "INSERT INTO usage_batches (id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING RETURNING id"
)
_PRUNE_BATCHES: Final = (
    f"DELETE FROM usage_batches WHERE applied_at < now() - interval '{BATCH_RETENTION}'"
)
# Rows of several batches may share a key: summed first (ON CONFLICT touches a row once
# per statement). Projects deleted meanwhile are skipped (their ledger went with them).
_ADD_COUNTS: Final = (
    "INSERT INTO usage_daily AS d (project_id, token_id, day, proxied, upstream_errors, "
    "rate_limited, forbidden) "
    "SELECT r.project_id, r.token_id, DATE '1970-01-01' + r.day, sum(r.p), sum(r.e), "
    "sum(r.l), sum(r.f) "
    "FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::bigint[], $6::bigint[], "
    "$7::bigint[]) AS r(project_id, token_id, day, p, e, l, f) "
    "JOIN projects p ON p.id = r.project_id "
    "GROUP BY r.project_id, r.token_id, r.day "
    "ORDER BY r.project_id, r.day, r.token_id "  # one lock order for every gateway
    "ON CONFLICT (project_id, day, token_id) DO UPDATE SET "
    "proxied = d.proxied + excluded.proxied, "
    "upstream_errors = d.upstream_errors + excluded.upstream_errors, "
    "rate_limited = d.rate_limited + excluded.rate_limited, "
    "forbidden = d.forbidden + excluded.forbidden"
)
_ADD_UNITS: Final = (
    "INSERT INTO quota_usage AS q (project_id, period, used) "
    "SELECT r.project_id, r.period, sum(r.n) "
    "FROM unnest($1::text[], $2::text[], $3::bigint[]) AS r(project_id, period, n) "
    "JOIN projects p ON p.id = r.project_id "
    "GROUP BY r.project_id, r.period "
    "ORDER BY r.project_id, r.period "
    "ON CONFLICT (project_id, period) DO UPDATE SET used = q.used + excluded.used "
    "RETURNING q.project_id, q.period, q.used"
)
_TOTALS: Final = (
    "SELECT q.project_id, q.period, q.used FROM quota_usage q "
    "JOIN unnest($1::text[], $2::text[]) AS r(project_id, period) "
    "ON q.project_id = r.project_id AND q.period = r.period"
)
_BY_TOKEN: Final = (
    "SELECT token_id AS key, sum(proxied)::bigint AS proxied, "
    "sum(upstream_errors)::bigint AS upstream_errors, "
    "sum(rate_limited)::bigint AS rate_limited, "
    "sum(forbidden)::bigint AS forbidden FROM usage_daily "
)
_PROJECT: Final = "SELECT id, name, rate_limit, created_at, quota FROM projects WHERE id = $1"


class UsageStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------------ the gateway's flush

    async def flush(
        self, token_ids: list[str], times: list[datetime], batches: list[Batch]
    ) -> Totals:
        """Write last-used times and ``batches`` in one transaction; the quota totals
        (all gateways) of every project and period the batches name.

        Each batch is marked ``sent`` just before the COMMIT goes out."""
        async with self._pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                projects = {p for b in batches for p in _projects(b)}
                await conn.execute(_LOCK_PROJECTS, token_ids, list(projects))
                if token_ids:
                    await conn.execute(TOUCH_LAST_USED, token_ids, times)
                totals = await self._apply(conn, batches) if batches else {}
            except BaseException:
                await transaction.rollback()
                raise
            for batch in batches:
                batch.sent = True
            await transaction.commit()
        return totals

    async def _apply(self, conn: asyncpg.Connection, batches: list[Batch]) -> Totals:
        fresh = {row["id"] for row in await conn.fetch(_NEW_BATCHES, [b.id for b in batches])}
        new = [batch for batch in batches if batch.id in fresh]
        if new:
            await conn.execute(_PRUNE_BATCHES)
            await _add_counts(conn, new)
            await _add_units(conn, new)
        keys = {key for batch in batches for key in batch.units}
        if not keys:
            return {}
        rows = await conn.fetch(_TOTALS, [k[0] for k in keys], [k[1] for k in keys])
        return {(row["project_id"], row["period"]): row["used"] for row in rows}

    # ------------------------------------------------------------ the admin's reads

    async def by_day(
        self, project_id: str, start: date, end: date, token_id: str | None = None
    ) -> list[UsageRow]:
        """One row per day from ``start`` to ``end`` (inclusive), zeros where none."""
        rows = await self._pool.fetch(
            "SELECT g.day AS key, COALESCE(sum(u.proxied), 0)::bigint AS proxied, "
            "COALESCE(sum(u.upstream_errors), 0)::bigint AS upstream_errors, "
            "COALESCE(sum(u.rate_limited), 0)::bigint AS rate_limited, "
            "COALESCE(sum(u.forbidden), 0)::bigint AS forbidden "
            # Days as date + n, not a series of timestamps: no time zone, no overflow.
            "FROM generate_series(0, $3::date - $2::date) AS n "
            "CROSS JOIN LATERAL (SELECT $2::date + n AS day) AS g "
            "LEFT JOIN usage_daily u ON u.project_id = $1 AND u.day = g.day "
            "AND ($4::text IS NULL OR u.token_id = $4) "
            "GROUP BY g.day ORDER BY g.day",
            project_id,
            start,
            end,
            token_id,
        )
        return [UsageRow(**row) for row in rows]

    async def by_token(
        self, project_id: str, start: date, end: date, token_id: str | None = None
    ) -> list[UsageRow]:
        """One row per token with any usage between ``start`` and ``end``, most used first."""
        rows = await self._pool.fetch(
            _BY_TOKEN + "WHERE project_id = $1 AND day BETWEEN $2 AND $3 "
            "AND ($4::text IS NULL OR token_id = $4) "
            "GROUP BY token_id ORDER BY sum(proxied) DESC, token_id",
            project_id,
            start,
            end,
            token_id,
        )
        return [UsageRow(**row) for row in rows]

    async def last_30_days(self, token_ids: list[str], today: date) -> dict[str, UsageRow]:
        """Each token's counts over the 30 UTC days up to ``today`` (absent: no usage)."""
        rows = await self._pool.fetch(
            _BY_TOKEN + "WHERE token_id = ANY($1::text[]) AND day > $2::date - 30 AND day <= $2 "
            "GROUP BY token_id",
            token_ids,
            today,
        )
        return {row["key"]: UsageRow(**row) for row in rows}

    async def quota_used(self, project_id: str, period: str) -> int:
        """Units flushed for ``project_id`` in ``period`` (0 when none)."""
        used: int | None = await self._pool.fetchval(
            "SELECT used FROM quota_usage WHERE project_id = $1 AND period = $2",
            project_id,
            period,
        )
        return used or 0


def _projects(batch: Batch) -> set[str]:
    return {key[1] for key in batch.counts} | {key[0] for key in batch.units}


async def _add_counts(conn: asyncpg.Connection, batches: list[Batch]) -> None:
    columns: list[list[object]] = [[] for _ in range(7)]
    for batch in batches:
        for (token_id, project_id, day), row in batch.counts.items():
            for i, value in enumerate((project_id, token_id, day, *row)):
                columns[i].append(value)
    if columns[0]:
        await conn.execute(_ADD_COUNTS, *columns)


async def _add_units(conn: asyncpg.Connection, batches: list[Batch]) -> None:
    """Add quota units; write an event for each threshold a batch carried a project over."""
    added: dict[tuple[str, str], list[int]] = {}  # -> [units, latest limit]
    for batch in batches:
        for key, (units, limit) in batch.units.items():
            entry = added.setdefault(key, [0, limit])
            entry[0] += units
            entry[1] = limit
    if not added:
        return
    keys = list(added)
    rows = await conn.fetch(
        _ADD_UNITS, [k[0] for k in keys], [k[1] for k in keys], [added[k][0] for k in keys]
    )
    for row in rows:
        units, limit = added[(row["project_id"], row["period"])]
        used = row["used"]
        for kind, threshold in crossed(used - units, used, limit):
            project = await conn.fetchrow(_PROJECT, row["project_id"])
            if project is not None:
                data = {**outbox.project(project), **quota_data(row["period"], limit, used)}
                data["threshold"] = threshold
                await journal.emit(conn, kind, row["project_id"], data)


def crossed(before: int, after: int, limit: int) -> list[tuple[str, int]]:
    """The quota events for use going from ``before`` to ``after`` units of ``limit``."""
    events = []
    warning = math.ceil(limit * WARNING_SHARE)
    if before < warning <= after:
        events.append(("quota.warning", warning))
    if before < limit <= after:
        events.append(("quota.exhausted", limit))
    return events


def quota_data(period: str, limit: int, used: int) -> dict[str, object]:
    unit, _, start = period.partition(":")
    return {"quota": {"limit": limit, "period": unit, "period_start": start, "used": used}}


def utc_day(day: int) -> date:
    """An epoch day number as a date."""
    return date(1970, 1, 1) + timedelta(days=day)
