"""Admin keys and portal sessions (SPEC §8): all their SQL, over an asyncpg pool.

Both live in ``admin_keys`` (migration 0002): ``kind`` ``admin_key`` for the keys an admin
issues, ``portal`` for the short-lived sessions a one-time portal code is exchanged for.
Only an argon2id hash of a key's secret is stored; a portal code only as its SHA-256.
Every change takes the ``actor`` who asked and writes its audit event in its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg

from . import journal
from .store import decode_cursor, encode_cursor

ADMIN_KEY: Final = "admin_key"
PORTAL: Final = "portal"


@dataclass(frozen=True, slots=True)
class AdminKey:
    """A key as listings show it: never its secret, nor its hash."""

    id: str
    name: str
    role: str
    project_id: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What proving a presented key needs, read on every request that presents one."""

    id: str
    kind: str
    name: str
    role: str
    project_id: str | None
    secret_hash: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class KeyPage:
    keys: list[AdminKey]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class PortalGrant:
    """What a one-time portal code grants: a role on one project, for ``ttl``."""

    project_id: str
    role: str
    ttl: timedelta


_COLUMNS: Final = "id, name, role, project_id, created_at, expires_at, last_used_at"
_INSERT: Final = (
    "INSERT INTO admin_keys (id, kind, name, role, project_id, secret_hash, expires_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7::interval IS NULL THEN NULL "
    f"ELSE now() + $7::interval END) RETURNING {_COLUMNS}"
)
# One round trip per request: the row, and its last use stamped (at most every few seconds,
# so a busy key does not turn every read into a write).
_RECORD: Final = """
WITH found AS (
    SELECT id, kind, name, role, project_id, secret_hash, expires_at FROM admin_keys
    WHERE id = $1
), touched AS (
    UPDATE admin_keys SET last_used_at = now() WHERE id = $1
    AND (last_used_at IS NULL OR last_used_at < now() - interval '5 seconds')
)
SELECT * FROM found
"""
LAST_USED_PRECISION: Final = 5.0  # seconds; see _RECORD


class KeyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------------ admin keys

    async def create(
        self,
        key_id: str,
        *,
        name: str,
        role: str,
        project_id: str | None,
        secret_hash: str,
        lifetime: timedelta | None,
        actor: journal.Actor,
    ) -> AdminKey | None:
        """Store a new admin key; None when its project does not exist."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    _INSERT, key_id, ADMIN_KEY, name, role, project_id, secret_hash, lifetime
                )
                await journal.audit(
                    conn, actor, "admin_key.created", project_id=project_id, target_id=key_id
                )
        except asyncpg.ForeignKeyViolationError:
            return None
        return AdminKey(**row)

    async def page(self, *, limit: int, cursor: str | None = None) -> KeyPage:
        """Admin keys, newest first (portal sessions are not listed)."""
        after = decode_cursor(cursor) if cursor is not None else (None, None)
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM admin_keys WHERE kind = $1 "
            "AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) "
            "ORDER BY created_at DESC, id DESC LIMIT $4",
            ADMIN_KEY,
            after[0],
            after[1],
            limit + 1,
        )
        keys = [AdminKey(**row) for row in rows[:limit]]
        return KeyPage(keys, encode_cursor(keys[-1]) if len(rows) > limit else None)

    async def get(self, key_id: str) -> AdminKey | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM admin_keys WHERE kind = $1 AND id = $2", ADMIN_KEY, key_id
        )
        return None if row is None else AdminKey(**row)

    async def revoke(self, key_id: str, *, actor: journal.Actor) -> bool:
        """Delete an admin key: the next request presenting it, on any instance, is refused."""
        async with self._pool.acquire() as conn, conn.transaction():
            project_id = await conn.fetchrow(
                "DELETE FROM admin_keys WHERE kind = $1 AND id = $2 RETURNING project_id",
                ADMIN_KEY,
                key_id,
            )
            if project_id is None:
                return False
            await journal.audit(
                conn,
                actor,
                "admin_key.revoked",
                project_id=project_id["project_id"],
                target_id=key_id,
            )
        return True

    async def record(self, key_id: str) -> KeyRecord | None:
        """The key (or portal session) ``key_id`` to prove a request with; stamps its use."""
        row = await self._pool.fetchrow(_RECORD, key_id)
        return None if row is None else KeyRecord(**row)

    # ------------------------------------------------------------ portal sessions

    async def create_code(
        self,
        code_hash: bytes,
        grant: PortalGrant,
        *,
        valid_for: timedelta,
        actor: journal.Actor,
    ) -> datetime | None:
        """Store a one-time code; when it stops working, or None for an unknown project."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                expires_at: datetime = await conn.fetchval(
                    "INSERT INTO portal_codes (code_hash, project_id, role, session_ttl, "
                    "expires_at) VALUES ($1, $2, $3, $4, now() + $5::interval) "
                    "RETURNING expires_at",
                    code_hash,
                    grant.project_id,
                    grant.role,
                    grant.ttl,
                    valid_for,
                )
                await journal.audit(
                    conn,
                    actor,
                    "portal_session.created",
                    project_id=grant.project_id,
                    target_id=None,
                    changes={"role": (None, grant.role)},
                )
        except asyncpg.ForeignKeyViolationError:
            return None
        return expires_at

    async def exchange(
        self, code_hash: bytes, session_id: str, *, secret_hash: str
    ) -> tuple[PortalGrant, datetime] | None:
        """Use a code, once: a portal session for what it grants, and when that ends.
        None for an unknown, used or expired code (used ones stay used)."""
        async with self._pool.acquire() as conn, conn.transaction():
            code = await conn.fetchrow(
                "UPDATE portal_codes SET used_at = now() WHERE code_hash = $1 "
                "AND used_at IS NULL AND expires_at > now() "
                "RETURNING project_id, role, session_ttl",
                code_hash,
            )
            if code is None:
                return None
            grant = PortalGrant(code["project_id"], code["role"], code["session_ttl"])
            row = await conn.fetchrow(
                _INSERT,
                session_id,
                PORTAL,
                "portal session",
                grant.role,
                grant.project_id,
                secret_hash,
                grant.ttl,
            )
        return grant, row["expires_at"]

    async def purge_portal(self) -> None:
        """Forget expired portal sessions and codes (they can never work again)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM admin_keys WHERE kind = $1 AND expires_at < now()", PORTAL
            )
            await conn.execute(
                "DELETE FROM portal_codes WHERE expires_at < now() - interval '1 day'"
            )
