"""The SQL of webhooks, their outbox deliveries, expiry notices and leak revocations.

Everything a change leaves behind (its audit event, its outbox event, its NOTIFY) is
written in the change's own transaction, through :mod:`.journal` and :mod:`.events`.

Deliveries are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease: an instance takes a
due delivery, counts the attempt and leases it for longer than an attempt can take, so
no other instance sends it meanwhile; a crashed instance's lease simply runs out. An
outcome is recorded only by the instance holding that attempt (``attempts`` fences it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

import asyncpg

from . import events, journal, outbox
from .tokens import new_id

# Webhooks per project: each change fans out to every one of them.
WEBHOOKS_MAX: Final = 20
# Expired tokens older than this get no token.expired notice (they expired before it existed).
EXPIRED_NOTICE_HORIZON: Final = "7 days"
# A notice key is needed while its condition can still hold: at most 7 days (the windows).
NOTICE_RETENTION: Final = "15 days"


class WebhookLimit(Exception):
    """The project already has :data:`WEBHOOKS_MAX` webhooks."""


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    project_id: str
    url: str
    events: list[str]  # empty: every event type
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event's delivery to one webhook, as its latest attempt left it."""

    id: int
    event_id: str
    type: str
    state: str  # pending, delivered, failed
    attempts: int
    last_status: int | None
    last_error: str | None
    last_duration_ms: float | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None  # None unless pending
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    """A claimed delivery: everything needed to send this attempt."""

    delivery_id: int
    attempt: int  # 1 for the first
    first_at: datetime  # when the delivery was created (the 24 h run from here)
    event_id: str
    type: str
    data: str  # the event's data, JSON text
    event_at: datetime
    url: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Notice:
    """A token.expiring / token.expired notice emitted by :meth:`WebhookStore.expiry_notices`."""

    type: str
    token_id: str
    within: str | None


_WEBHOOK_COLUMNS: Final = "id, project_id, url, events, created_at"

_CLAIM: Final = """
WITH due AS (
    SELECT id FROM webhook_deliveries
    WHERE state = 'pending' AND next_attempt_at <= clock_timestamp()
      AND (leased_until IS NULL OR leased_until <= clock_timestamp())
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE webhook_deliveries AS d
    SET attempts = d.attempts + 1,
        leased_until = clock_timestamp() + make_interval(secs => $2),
        last_attempt_at = clock_timestamp()
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.attempts, d.created_at, d.event_id, d.webhook_id
)
SELECT c.id AS delivery_id, c.attempts AS attempt, c.created_at AS first_at,
       e.id AS event_id, e.type, e.data::text AS data, e.created_at AS event_at,
       w.url, w.secret
FROM claimed AS c
JOIN outbox_events AS e ON e.id = c.event_id
JOIN webhooks AS w ON w.id = c.webhook_id
"""

# A failed attempt: retry after $6 seconds, unless that is past the delivery's $7 seconds.
_FAILED: Final = """
UPDATE webhook_deliveries SET
    state = CASE WHEN clock_timestamp() + make_interval(secs => $6)
                      > created_at + make_interval(secs => $7)
                 THEN 'failed' ELSE 'pending' END,
    next_attempt_at = clock_timestamp() + make_interval(secs => $6),
    leased_until = NULL, last_status = $3, last_error = $4, last_duration_ms = $5
WHERE id = $1 AND attempts = $2 AND state = 'pending'
RETURNING state
"""

_NOTICES: Final = f"""
WITH due AS (
    SELECT id, project_id, description, created_at, expires_at,
           CASE WHEN expires_at <= now() THEN 'token.expired' ELSE 'token.expiring' END AS type,
           CASE WHEN expires_at <= now() THEN NULL
                WHEN expires_at <= now() + interval '1 day' THEN '1d'
                ELSE '7d' END AS within
    FROM tokens
    WHERE expires_at > now() - interval '{EXPIRED_NOTICE_HORIZON}'
      AND expires_at <= now() + interval '7 days'
), keyed AS (
    -- The expiry is part of the key: a rotation that moves it earns a notice of its own.
    SELECT *, concat_ws(':', type, within, id, floor(extract(epoch FROM expires_at))) AS key
    FROM due
), fresh AS (
    INSERT INTO event_notices (key) SELECT key FROM keyed ON CONFLICT DO NOTHING RETURNING key
)
SELECT keyed.* FROM keyed JOIN fresh USING (key) ORDER BY expires_at, id
"""


class WebhookStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------------ webhooks

    async def create(
        self,
        project_id: str,
        *,
        url: str,
        events: list[str],
        secret: str,
        actor: journal.Actor,
    ) -> Webhook | None:
        """A new webhook; None when the project does not exist."""
        async with self._pool.acquire() as conn, conn.transaction():
            # The project row's lock makes the count and the insert one step per project.
            count = await conn.fetchval(
                "SELECT (SELECT count(*) FROM webhooks WHERE project_id = p.id) "
                "FROM projects AS p WHERE p.id = $1 FOR UPDATE",
                project_id,
            )
            if count is None:
                return None
            if count >= WEBHOOKS_MAX:
                raise WebhookLimit
            row = await conn.fetchrow(
                "INSERT INTO webhooks (id, project_id, url, events, secret) "
                f"VALUES ($1, $2, $3, $4, $5) RETURNING {_WEBHOOK_COLUMNS}",
                new_id(),
                project_id,
                url,
                events,
                secret,
            )
            await journal.audit(
                conn, actor, "webhook.created", project_id=project_id, target_id=row["id"]
            )
        return Webhook(**row)

    async def list_webhooks(self, project_id: str) -> list[Webhook]:
        rows = await self._pool.fetch(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE project_id = $1 "
            "ORDER BY created_at DESC, id DESC",
            project_id,
        )
        return [Webhook(**row) for row in rows]

    async def get(self, project_id: str, webhook_id: str) -> Webhook | None:
        row = await self._pool.fetchrow(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE project_id = $1 AND id = $2",
            project_id,
            webhook_id,
        )
        return None if row is None else Webhook(**row)

    async def delete(self, project_id: str, webhook_id: str, *, actor: journal.Actor) -> bool:
        """Delete a webhook and its pending deliveries."""
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = await conn.fetchval(
                "DELETE FROM webhooks WHERE project_id = $1 AND id = $2 RETURNING id",
                project_id,
                webhook_id,
            )
            if deleted is None:
                return False
            await journal.audit(
                conn, actor, "webhook.deleted", project_id=project_id, target_id=webhook_id
            )
        return True

    async def send_test(self, project_id: str, webhook_id: str) -> str | None:
        """Queue a ``webhook.test`` event for this webhook alone; its event id, or None."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id, project_id, url FROM webhooks WHERE project_id = $1 AND id = $2",
                project_id,
                webhook_id,
            )
            if row is None:
                return None
            # No project: emit would fan it out to every webhook of the project.
            event_id = await journal.emit(conn, "webhook.test", None, {"webhook": dict(row)})
            await conn.execute(
                "INSERT INTO webhook_deliveries (event_id, webhook_id) VALUES ($1, $2)",
                event_id,
                webhook_id,
            )
        return event_id

    async def deliveries(self, project_id: str, webhook_id: str, *, limit: int) -> list[Delivery]:
        """A webhook's deliveries, newest first."""
        rows = await self._pool.fetch(
            "SELECT d.id, d.event_id, e.type, d.state, d.attempts, d.last_status, d.last_error, "
            "d.last_duration_ms, d.last_attempt_at, "
            "CASE WHEN d.state = 'pending' THEN d.next_attempt_at END AS next_attempt_at, "
            "d.created_at "
            "FROM webhook_deliveries AS d JOIN webhooks AS w ON w.id = d.webhook_id "
            "JOIN outbox_events AS e ON e.id = d.event_id "
            "WHERE w.project_id = $1 AND d.webhook_id = $2 ORDER BY d.id DESC LIMIT $3",
            project_id,
            webhook_id,
            limit,
        )
        return [Delivery(**row) for row in rows]

    # ------------------------------------------------------------ the deliverer's side

    async def claim(self, limit: int, *, lease: float) -> list[Attempt]:
        """Up to ``limit`` due deliveries, each leased for ``lease`` seconds and counted."""
        rows = await self._pool.fetch(_CLAIM, limit, lease)
        return [Attempt(**row) for row in rows]

    async def delivered(self, attempt: Attempt, *, status: int, duration_ms: float) -> bool:
        """Record a successful attempt; False when this attempt was no longer ours."""
        done = await self._pool.fetchval(
            "UPDATE webhook_deliveries SET state = 'delivered', leased_until = NULL, "
            "last_status = $3, last_error = NULL, last_duration_ms = $4 "
            "WHERE id = $1 AND attempts = $2 AND state = 'pending' RETURNING id",
            attempt.delivery_id,
            attempt.attempt,
            status,
            duration_ms,
        )
        return done is not None

    async def failed(
        self,
        attempt: Attempt,
        *,
        status: int | None,
        error: str | None,
        duration_ms: float | None,
        retry_in: float,
        give_up_after: float,
    ) -> str | None:
        """Record a failed attempt: ``pending`` (retried in ``retry_in`` s) or ``failed``
        (that would be past ``give_up_after`` s from the first); None if no longer ours."""
        state: str | None = await self._pool.fetchval(
            _FAILED,
            attempt.delivery_id,
            attempt.attempt,
            status,
            error,
            duration_ms,
            retry_in,
            give_up_after,
        )
        return state

    async def release(self, attempts: list[Attempt], *, error: str) -> None:
        """Hand back attempts cut short (a stop): due again at once, for any instance."""
        await self._pool.execute(
            "UPDATE webhook_deliveries AS d SET leased_until = NULL, last_error = $3, "
            "next_attempt_at = clock_timestamp() "
            "FROM unnest($1::bigint[], $2::int[]) AS c(id, attempt) "
            "WHERE d.id = c.id AND d.attempts = c.attempt AND d.state = 'pending'",
            [a.delivery_id for a in attempts],
            [a.attempt for a in attempts],
            error,
        )

    async def pending_count(self) -> int:
        count: int = await self._pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'"
        )
        return count

    # ------------------------------------------------------------ the scheduler's side

    async def expiry_notices(self) -> list[Notice]:
        """Emit each token.expiring (7 days and 1 day before) and token.expired notice that
        is due and was never sent, by any instance: the notice key's uniqueness decides."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_NOTICES)
            for row in rows:
                more = {} if row["within"] is None else {"within": row["within"]}
                await journal.emit(conn, row["type"], row["project_id"], outbox.token(row, **more))
        return [Notice(row["type"], row["id"], row["within"]) for row in rows]

    async def prune(self, *, keep_days: int) -> None:
        """Forget notice keys no longer needed, and events older than ``keep_days`` days
        that nothing still waits to deliver."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM event_notices WHERE key LIKE 'token.%' "
                f"AND created_at < now() - interval '{NOTICE_RETENTION}'"
            )
            await conn.execute(
                "DELETE FROM outbox_events AS e "
                "WHERE created_at < now() - make_interval(days => $1) AND NOT EXISTS ("
                "SELECT 1 FROM webhook_deliveries AS d "
                "WHERE d.event_id = e.id AND d.state = 'pending')",
                keep_days,
            )

    # ------------------------------------------------------------ leak reports

    async def secret_hashes(self, token_ids: list[str]) -> dict[str, str]:
        """The stored hash of each of these tokens that exists."""
        rows = await self._pool.fetch(
            "SELECT id, secret_hash FROM tokens WHERE id = ANY($1::text[])", token_ids
        )
        return {row["id"]: row["secret_hash"] for row in rows}

    async def revoke_leaked(
        self, leaked: list[tuple[str, str | None]], *, actor: journal.Actor
    ) -> list[str]:
        """Revoke these (token id, where it was found) as leaked, in one transaction however
        many exist: each is deleted (every gateway hears it), audited as a leak report named
        after its source, and announced (token.leaked). The ids revoked."""
        sources: dict[str, str | None] = dict(leaked)
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "DELETE FROM tokens WHERE id = ANY($1::text[]) "
                "RETURNING id, project_id, description, created_at, expires_at",
                list(sources),
            )
            for row in rows:
                project_id, token_id, source = row["project_id"], row["id"], sources[row["id"]]
                await journal.audit(
                    conn,
                    replace(actor, name=source),
                    "token.leaked",
                    project_id=project_id,
                    target_id=token_id,
                )
                await journal.emit(
                    conn, "token.leaked", project_id, outbox.token(row, source=source)
                )
                await events.notify(conn, events.TOKEN_REVOKED, project_id, token_id=token_id)
        return [row["id"] for row in rows]
