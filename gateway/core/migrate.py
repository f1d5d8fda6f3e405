"""Schema migrations: ``NNNN_name.sql`` files applied in order, once each.

Several instances starting at once is normal, so the whole run holds a Postgres
advisory lock. It is a *transaction-level* lock and the run is one transaction: a
session-level lock does not survive a pooler in transaction mode (PgBouncer), where
the unlock, or the next file, may run on another server connection than the lock, so
two runs could apply the same file and a lock could stay behind on a pooled server
connection. Each file runs in its own savepoint together with its row in
``schema_migrations``: when one fails, the files before it stay applied and the error
is raised once they are committed. A file edited after it was applied is refused
(checksum).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from . import db
from .config import Settings

# An arbitrary constant: "tollgate" in ASCII, as a 64-bit advisory lock key.
LOCK_KEY = 0x746F6C6C67617465

_NAME = re.compile(r"[0-9]{4}_[a-z0-9_]+\.sql")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name        text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The database does not match the migration files; the message says how."""


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def bundled_migrations() -> list[Migration]:
    """The migration files shipped with the package, in name order."""
    folder = resources.files("tollgate_migrations")
    files = sorted(
        (entry for entry in folder.iterdir() if _NAME.fullmatch(entry.name)),
        key=lambda entry: entry.name,
    )
    return [Migration(entry.name, entry.read_text(encoding="utf-8")) for entry in files]


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply pending migrations; return the names applied by this call."""
    todo = bundled_migrations() if migrations is None else migrations
    done: list[str] = []
    failed: asyncpg.PostgresError | None = None
    async with conn.transaction():
        # Held until this transaction ends; a concurrent run waits here, then finds
        # everything applied.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await conn.execute(_CREATE_TABLE)
        rows = await conn.fetch("SELECT name, checksum FROM schema_migrations")
        applied = {row["name"]: row["checksum"] for row in rows}
        _check_applied(todo, applied)
        for migration in todo:
            if migration.name in applied:
                continue
            try:
                async with conn.transaction():  # a savepoint: a failing file undoes only itself
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                        migration.name,
                        migration.checksum,
                    )
            except asyncpg.PostgresError as err:
                failed = err
                break
            done.append(migration.name)
    if failed is not None:
        raise failed
    return done


def _check_applied(migrations: list[Migration], applied: dict[str, str]) -> None:
    for migration in migrations:
        recorded = applied.get(migration.name)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.name} was edited after it was applied "
                "(checksum differs); restore the original file and add a new migration instead"
            )


async def apply(settings: Settings) -> list[str]:
    """Connect (starting the embedded server if needed) and apply pending migrations."""
    conn = await db.connect(db.database_url(settings))
    try:
        return await migrate(conn)
    finally:
        await conn.close()
