"""All project and token SQL, over an asyncpg pool. Returns frozen dataclasses.

Changes the gateway must see at once (a revoked token, a deleted project, a new
rate limit) send their :mod:`~gateway.core.events` event in the same transaction.
Every method that changes something takes the ``actor`` who asked and writes its audit
event (:func:`~gateway.core.journal.audit`) in that same transaction.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import asyncpg

from . import events, journal, outbox
from .store_usage import TOUCH_LAST_USED
from .tokens import is_token_id, new_id


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


@dataclass(frozen=True, slots=True)
class TokenPage:
    tokens: list[TokenInfo]
    next_cursor: str | None


class InvalidCursor(ValueError):
    """A pagination cursor that this store did not issue."""


_PROJECT_COLUMNS = "id, name, rate_limit, created_at"
_TOKEN_COLUMNS = (
    "id, project_id, description, created_at, expires_at, last_used_at, scopes, allowed_ips, "
    "expires_in, rotated_from, replaced_by, rotated_at"
)


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------------ projects

    async def create_project(
        self, name: str, rate_limit: str | None, *, actor: journal.Actor
    ) -> Project:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"INSERT INTO projects (id, name, rate_limit) VALUES ($1, $2, $3) "
                f"RETURNING {_PROJECT_COLUMNS}",
                new_id(),
                name,
                rate_limit,
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
        actor: journal.Actor,
    ) -> Project | None:
        """Change a project; gateways hear of a new rate limit at once. Audited with the
        fields that changed, each as [before, after] (nothing changed: no event)."""
        set_limit = not isinstance(rate_limit, Unset)
        async with self._pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(
                f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = $1 FOR UPDATE", project_id
            )
            if before is None:
                return None
            row = await conn.fetchrow(
                f"UPDATE projects SET name = COALESCE($2, name), "
                f"rate_limit = CASE WHEN $3 THEN $4 ELSE rate_limit END "
                f"WHERE id = $1 RETURNING {_PROJECT_COLUMNS}",
                project_id,
                None if isinstance(name, Unset) else name,
                set_limit,
                None if isinstance(rate_limit, Unset) else rate_limit,
            )
            changes = journal.changed(before, row, ("name", "rate_limit"))
            if changes:
                await journal.audit(
                    conn,
                    actor,
                    "project.updated",
                    project_id=project_id,
                    target_id=project_id,
                    changes=changes,
                )
            if set_limit or not isinstance(name, Unset):  # a change, not an empty PATCH
                await journal.emit(conn, "project.updated", project_id, outbox.project(row))
            if set_limit:
                await events.notify(
                    conn, events.PROJECT_UPDATED, project_id, rate_limit=row["rate_limit"]
                )
        return Project(**row)

    async def delete_project(self, project_id: str, *, actor: journal.Actor) -> bool:
        """Delete a project and its tokens; they stop working on every gateway."""
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
        self, project_id: str, *, limit: int, cursor: str | None = None
    ) -> TokenPage:
        """A page of a project's tokens, newest first (keyset pagination)."""
        after = _decode_cursor(cursor) if cursor else (None, None)
        rows = await self._pool.fetch(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE project_id = $1 "
            "AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) "
            "ORDER BY created_at DESC, id DESC LIMIT $4",
            project_id,
            after[0],
            after[1],
            limit + 1,
        )
        tokens = [TokenInfo(**row) for row in rows[:limit]]
        more = len(rows) > limit
        return TokenPage(tokens, _encode_cursor(tokens[-1]) if more else None)

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

    # ------------------------------------------------------------ gateway side

    async def auth_record(self, token_id: str) -> AuthRecord | None:
        row = await self._pool.fetchrow(
            "SELECT t.id AS token_id, t.project_id, t.secret_hash, t.expires_at, p.rate_limit, "
            "t.scopes, t.allowed_ips, t.rotated_at "
            "FROM tokens t JOIN projects p ON p.id = t.project_id WHERE t.id = $1",
            token_id,
        )
        return None if row is None else AuthRecord(**row)

    async def touch_last_used(self, token_ids: list[str], times: list[datetime]) -> None:
        """Record last use for many tokens in one statement; never moves time backwards.

        Tokens deleted meanwhile are simply skipped.
        """
        await self._pool.execute(TOUCH_LAST_USED, token_ids, times)


def _encode_cursor(token: TokenInfo) -> str:
    raw = f"{token.created_at.isoformat()}|{token.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, token_id = raw.split("|", 1)
        created = datetime.fromisoformat(when)
        # Both go into a query: a NUL, a stray character or a naive time would fail there,
        # and so would a time that leaves Python's range once in UTC (OverflowError).
        if created.tzinfo is None or not is_token_id(token_id):
            raise ValueError("not a cursor")
        created = created.astimezone(UTC)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise InvalidCursor("cursor is not one this API returned") from None
    return created, token_id
