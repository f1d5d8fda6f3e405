"""All project and token SQL, over an asyncpg pool. Returns frozen dataclasses.

Changes the gateway must see at once (a revoked token, a deleted project, a new
rate limit) send their :mod:`~gateway.core.events` event in the same transaction.
Every method that changes something takes the ``actor`` who asked and writes its audit
event (:func:`~gateway.core.journal.audit`) in that same transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

import asyncpg

from . import events, journal, outbox
from .store_usage import TOUCH_LAST_USED
from .tokens import new_id


class Unset:
    """The type of :data:`UNSET`: a field left as it is, unlike ``None`` (set to null)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    rate_limit: str | None
    created_at: datetime
    quota: str | None = None  # "N/day" or "N/month" (SPEC §11); None: no quota


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listings show it: never the secret, nor its hash."""

    id: str
    project_id: str
    description: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    scopes: list[str]
    allowed_ips: list[str]
    expires_in: str | None  # the preset it was created with
    rotated_from: str | None
    replaced_by: str | None
    rotated_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuthRecord:
    """What the gateway needs to prove a token and admit its requests."""

    token_id: str
    project_id: str
    secret_hash: str
    expires_at: datetime | None
    rate_limit: str | None
    scopes: list[str]
    allowed_ips: list[str]
    rotated_at: datetime | None  # set once a successor was issued (SPEC §10)
    quota: str | None = None  # the project's (SPEC §11)


@dataclass(frozen=True, slots=True)
class TokenPage:
    tokens: list[TokenInfo]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Rotated:
    old: TokenInfo  # with its shortened expiry and replaced_by
    new: TokenInfo


class InvalidCursor(ValueError):
    """A pagination cursor that this store did not issue."""


class AlreadyRotated(Exception):
    """The token has a successor already (``replaced_by``); it cannot be rotated again."""

    def __init__(self, replaced_by: str) -> None:
        super().__init__(replaced_by)
        self.replaced_by = replaced_by


# Status filters of token listings; {within} is the parameter holding expiring's seconds.
_STATUS: Final[dict[str | None, str]] = {
    None: "TRUE",
    "active": "(expires_at IS NULL OR expires_at > now())",
    "expired": "expires_at <= now()",
    "expiring": "(expires_at > now() AND expires_at <= now() + make_interval(secs => {within}))",
}


_PROJECT_COLUMNS = "id, name, rate_limit, created_at, quota"
DEADLOCK_RETRIES: Final = 3
_TOKEN_COLUMNS = (
    "id, project_id, description, created_at, expires_at, last_used_at, scopes, allowed_ips, "
    "expires_in, rotated_from, replaced_by, rotated_at"
)


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        """For the other stores of the same database (usage, webhooks)."""
        return self._pool

    # ------------------------------------------------------------ projects

    async def create_project(
        self,
        name: str,
        rate_limit: str | None,
        *,
        actor: journal.Actor,
        quota: str | None = None,
    ) -> Project:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"INSERT INTO projects (id, name, rate_limit, quota) VALUES ($1, $2, $3, $4) "
                f"RETURNING {_PROJECT_COLUMNS}",
                new_id(),
                name,
                rate_limit,
                quota,
            )
            await journal.audit(
                conn, actor, "project.created", project_id=row["id"], target_id=row["id"]
            )
        return Project(**row)

    async def list_projects(self) -> list[Project]:
        rows = await self._pool.fetch(
            f"SELECT {_PROJECT_COLUMNS} FROM projects ORDER BY created_at, id"
        )
        return [Project(**row) for row in rows]

    async def get_project(self, project_id: str) -> Project | None:
        row = await self._pool.fetchrow(
            f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = $1", project_id
        )
        return None if row is None else Project(**row)

    async def update_project(
        self,
        project_id: str,
        *,
        name: str | Unset = UNSET,
        rate_limit: str | Unset | None = UNSET,
        quota: str | Unset | None = UNSET,
        actor: journal.Actor,
    ) -> Project | None:
        """Change a project; gateways hear of a new rate limit or quota at once. Audited
        with the fields that changed, each as [before, after] (nothing changed: no event)."""
        set_limit = not isinstance(rate_limit, Unset)
        set_quota = not isinstance(quota, Unset)
        async with self._pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(
                f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = $1 FOR UPDATE", project_id
            )
            if before is None:
                return None
            row = await conn.fetchrow(
                f"UPDATE projects SET name = COALESCE($2, name), "
                f"rate_limit = CASE WHEN $3 THEN $4 ELSE rate_limit END, "
                f"quota = CASE WHEN $5 THEN $6 ELSE quota END "
                f"WHERE id = $1 RETURNING {_PROJECT_COLUMNS}",
                project_id,
                None if isinstance(name, Unset) else name,
                set_limit,
                None if isinstance(rate_limit, Unset) else rate_limit,
                set_quota,
                None if isinstance(quota, Unset) else quota,
            )
            changes = journal.changed(before, row, ("name", "rate_limit", "quota"))
            if changes:
                await journal.audit(
                    conn,
                    actor,
                    "project.updated",
                    project_id=project_id,
                    target_id=project_id,
                    changes=changes,
                )
            if set_limit or set_quota or not isinstance(name, Unset):  # not an empty PATCH
                await journal.emit(conn, "project.updated", project_id, outbox.project(row))
            if set_limit or set_quota:
                await events.notify(
                    conn,
                    events.PROJECT_UPDATED,
                    project_id,
                    rate_limit=row["rate_limit"],
                    quota=row["quota"],
                )
        return Project(**row)

    async def delete_project(self, project_id: str, *, actor: journal.Actor) -> bool:
        """Delete a project and its tokens; they stop working on every gateway.

        The cascade locks the project, then its tokens; a gateway's flush of last-used
        times and usage locks tokens, then (through the usage rows' keys) the project. The
        two can deadlock; Postgres then aborts one, and this one is simply tried again."""
        for attempt in range(DEADLOCK_RETRIES):
            try:
                return await self._delete_project(project_id, actor)
            except asyncpg.DeadlockDetectedError:
                if attempt == DEADLOCK_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _delete_project(self, project_id: str, actor: journal.Actor) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = await conn.fetchval(
                "DELETE FROM projects WHERE id = $1 RETURNING id", project_id
            )
            if deleted is None:
                return False
            await journal.audit(
                conn, actor, "project.deleted", project_id=project_id, target_id=project_id
            )
            await events.notify(conn, events.PROJECT_DELETED, project_id)
        return True

    # ------------------------------------------------------------ tokens

    async def create_token(
        self,
        project_id: str,
        token_id: str,
        *,
        secret_hash: str,
        description: str,
        expires_in_days: int | None,
        actor: journal.Actor,
        expires_in: str | None = None,
        scopes: Sequence[str] = (),
        allowed_ips: Sequence[str] = (),
    ) -> TokenInfo | None:
        """Store a new token; None when the project does not exist."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    "INSERT INTO tokens (id, project_id, description, secret_hash, expires_at, "
                    "expires_in, scopes, allowed_ips) "
                    "VALUES ($1, $2, $3, $4, CASE WHEN $5::int IS NULL THEN NULL "
                    "ELSE now() + make_interval(days => $5) END, $6, $7, $8) "
                    f"RETURNING {_TOKEN_COLUMNS}",
                    token_id,
                    project_id,
                    description,
                    secret_hash,
                    expires_in_days,
                    expires_in,
                    list(scopes),
                    list(allowed_ips),
                )
                await journal.audit(
                    conn, actor, "token.created", project_id=project_id, target_id=token_id
                )
                await journal.emit(conn, "token.created", project_id, outbox.token(row))
        except asyncpg.ForeignKeyViolationError:
            return None
        return TokenInfo(**row)

    async def list_tokens(
        self,
        project_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        status: str | None = None,
        within_seconds: int = 7 * 86400,
    ) -> TokenPage:
        """A page of a project's tokens, newest first (keyset pagination); ``status``
        ``active``, ``expired`` or ``expiring`` (active and ending within ``within_seconds``)."""
        after = decode_cursor(cursor) if cursor is not None else (None, None)
        within = [within_seconds] if status == "expiring" else []
        rows = await self._pool.fetch(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE project_id = $1 "
            "AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) "
            f"AND {_STATUS[status].format(within='$5')} "
            "ORDER BY created_at DESC, id DESC LIMIT $4",
            project_id,
            after[0],
            after[1],
            limit + 1,
            *within,
        )
        tokens = [TokenInfo(**row) for row in rows[:limit]]
        more = len(rows) > limit
        return TokenPage(tokens, encode_cursor(tokens[-1]) if more else None)

    async def get_token(self, project_id: str, token_id: str) -> TokenInfo | None:
        row = await self._pool.fetchrow(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE project_id = $1 AND id = $2",
            project_id,
            token_id,
        )
        return None if row is None else TokenInfo(**row)

    async def revoke_token(self, project_id: str, token_id: str, *, actor: journal.Actor) -> bool:
        """Delete a token; it stops working on every gateway at once."""
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = await conn.fetchrow(
                f"DELETE FROM tokens WHERE project_id = $1 AND id = $2 RETURNING {_TOKEN_COLUMNS}",
                project_id,
                token_id,
            )
            if deleted is None:
                return False
            await journal.audit(
                conn, actor, "token.revoked", project_id=project_id, target_id=token_id
            )
            await journal.emit(conn, "token.revoked", project_id, outbox.token(deleted))
            await events.notify(conn, events.TOKEN_REVOKED, project_id, token_id=token_id)
        return True

    async def rotate_token(
        self,
        project_id: str,
        token_id: str,
        new_token_id: str,
        *,
        secret_hash: str,
        expires_in_days: int | None,
        grace_seconds: int,
        actor: journal.Actor,
    ) -> Rotated | None:
        """Issue the successor of a token and end the old one after ``grace_seconds`` (never
        later than it would have ended); every gateway hears of its new expiry at once.

        None when the token does not exist; :class:`AlreadyRotated` when it has a successor.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            old = await conn.fetchrow(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE project_id = $1 AND id = $2 FOR UPDATE",
                project_id,
                token_id,
            )
            if old is None:
                return None
            if old["replaced_by"] is not None:
                raise AlreadyRotated(old["replaced_by"])
            new = await conn.fetchrow(
                "INSERT INTO tokens (id, project_id, description, secret_hash, expires_at, "
                "expires_in, scopes, allowed_ips, rotated_from) "
                "SELECT $1, project_id, description, $2, CASE WHEN $3::int IS NULL THEN NULL "
                "ELSE now() + make_interval(days => $3) END, expires_in, scopes, allowed_ips, id "
                f"FROM tokens WHERE id = $4 RETURNING {_TOKEN_COLUMNS}",
                new_token_id,
                secret_hash,
                expires_in_days,
                token_id,
            )
            # LEAST ignores NULL: a token that never expires ends with its grace.
            retired = await conn.fetchrow(
                "UPDATE tokens SET replaced_by = $2, rotated_at = now(), "
                "expires_at = LEAST(expires_at, now() + make_interval(secs => $3)) "
                f"WHERE id = $1 RETURNING {_TOKEN_COLUMNS}",
                token_id,
                new_token_id,
                grace_seconds,
            )
            await journal.audit(
                conn,
                actor,
                "token.rotated",
                project_id=project_id,
                target_id=token_id,
                changes={
                    "expires_at": (
                        outbox.rfc3339(old["expires_at"]),
                        outbox.rfc3339(retired["expires_at"]),
                    ),
                    "replaced_by": (None, new_token_id),
                },
            )
            await journal.emit(
                conn,
                "token.rotated",
                project_id,
                outbox.token(retired, replaced_by=outbox.token(new)["token"]),
            )
            await events.notify(
                conn,
                events.TOKEN_UPDATED,
                project_id,
                token_id=token_id,
                **events.expiry(retired["expires_at"], retired["rotated_at"]),
            )
        return Rotated(TokenInfo(**retired), TokenInfo(**new))

    async def count_expiring(self, within_seconds: int) -> int:
        """Tokens still working that end within ``within_seconds`` (all projects)."""
        count: int = await self._pool.fetchval(
            f"SELECT count(*) FROM tokens WHERE {_STATUS['expiring'].format(within='$1')}",
            within_seconds,
        )
        return count

    # ------------------------------------------------------------ gateway side

    async def auth_record(self, token_id: str) -> AuthRecord | None:
        return (await self.auth_records([token_id])).get(token_id)

    async def auth_records(self, token_ids: list[str]) -> dict[str, AuthRecord]:
        """The records of those of ``token_ids`` that exist, by id, in one query."""
        rows = await self._pool.fetch(
            "SELECT t.id AS token_id, t.project_id, t.secret_hash, t.expires_at, p.rate_limit, "
            "t.scopes, t.allowed_ips, t.rotated_at, p.quota "
            "FROM tokens t JOIN projects p ON p.id = t.project_id WHERE t.id = ANY($1::text[])",
            token_ids,
        )
        return {row["token_id"]: AuthRecord(**row) for row in rows}

    async def touch_last_used(self, token_ids: list[str], times: list[datetime]) -> None:
        """Record last use for many tokens in one statement; never moves time backwards.

        Tokens deleted meanwhile are simply skipped.
        """
        await self._pool.execute(TOUCH_LAST_USED, token_ids, times)


class Keyed(Protocol):
    """A row listed newest first by (created_at, id): a token, an admin key."""

    @property
    def id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


# A cursor: the last row's creation time in microseconds since 1970 (UTC), a dot, its id.
# Every string of this shape is a cursor (it names a place in the order, whether or not a row
# is there), so what the API documents as a cursor is exactly what it accepts.
CURSOR_PATTERN: Final = re.compile(r"([0-9]{1,16})\.([0-9A-Za-z]{17})")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def encode_cursor(last: Keyed) -> str:
    """The cursor of the page after ``last`` (keyset pagination, newest first)."""
    return f"{(last.created_at - _EPOCH) // _MICROSECOND}.{last.id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    found = CURSOR_PATTERN.fullmatch(cursor)
    if found is None:
        raise InvalidCursor("cursor is not one this API returned")
    return _EPOCH + int(found[1]) * _MICROSECOND, found[2]
