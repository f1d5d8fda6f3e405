"""The benchmark's database: a fresh database (on ``DATABASE_URL``) or an embedded
Postgres in a temporary directory, migrated, with the projects and tokens the runs
need. Tokens are made exactly as the admin side makes them (``Store.create_token``
with an argon2id hash using the gateway's own argon2 settings)."""

from __future__ import annotations

import asyncio
import inspect
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gateway.core import db, tokens
from gateway.core.config import Settings
from gateway.core.journal import CLI
from gateway.core.migrate import migrate
from gateway.core.store import Store

# What the proxied rows' token carries, where this tree's store knows it (SPEC §10, §11):
# scopes and allowed addresses that the requests (GET / and GET /big, POST /upload of the
# large-bodies workload, from 127.0.0.1) pass after checking more than one, and a quota on
# its project too high to be reached.
SCOPES = ("POST /v1/never", "GET /v1/other", "POST /upload", "GET /")
ALLOWED_IPS = ("10.0.0.0/8", "192.168.0.0/16", "::1", "127.0.0.1")
QUOTA = "1000000000/month"


@dataclass
class BenchTokens:
    cached: str  # used over and over: the hot path
    limited: str  # its project allows 1 request an hour: answers 429
    wrong_secret: str  # a real token id with another secret: answers 401
    fresh: list[str] = field(default_factory=list)  # each used once: the miss path
    features: list[str] = field(default_factory=list)  # what the cached token carries


@dataclass
class BenchDatabase:
    url: str  # what the gateway gets as DATABASE_URL
    server_url: str
    name: str | None  # the database we created on DATABASE_URL, dropped afterwards

    def drop(self) -> None:
        if self.name is not None:
            asyncio.run(
                _execute(self.server_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            )


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def open_database(environ: dict[str, str], data_dir: Path) -> BenchDatabase:
    """A fresh migrated database; embedded (in ``data_dir``) when DATABASE_URL is unset."""
    server_url = environ.get("DATABASE_URL")
    if server_url:
        name = f"tollgate_bench_{secrets.token_hex(4)}"
        asyncio.run(_execute(server_url, f'CREATE DATABASE "{name}"'))
        bench = BenchDatabase(with_database(server_url, name), server_url, name)
    else:
        url = db.database_url(Settings.from_env({"GATEWAY_DATA_DIR": str(data_dir)}))
        bench = BenchDatabase(url, url, None)
    asyncio.run(_migrate(bench.url))
    return bench


async def _migrate(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await migrate(conn)
    finally:
        await conn.close()


def unknown_tokens(count: int, prefix: str = "tg") -> list[str]:
    """Well-formed tokens (right shape and checksum) whose ids no database holds."""
    return [str(tokens.generate(prefix)) for _ in range(count)]


def create_tokens(url: str, settings: Settings, fresh: int) -> BenchTokens:
    hasher = tokens.Hasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_cost,
        parallelism=settings.argon2_parallelism,
    )
    return asyncio.run(_create_tokens(url, settings.token_prefix, hasher, fresh))


async def _create_tokens(url: str, prefix: str, hasher: tokens.Hasher, fresh: int) -> BenchTokens:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    assert pool is not None
    store = Store(pool)
    loop = asyncio.get_running_loop()
    # argon2 releases the GIL: two threads hash the few hundred tokens twice as fast.
    with ThreadPoolExecutor(2) as hashing:
        capabilities = "scopes" in inspect.signature(store.create_token).parameters

        async def issue(project_id: str, *, capable: bool = False) -> str:
            token = tokens.generate(prefix)
            secret_hash = await loop.run_in_executor(hashing, hasher.hash, token.secret)
            extra = (
                {"scopes": list(SCOPES), "allowed_ips": list(ALLOWED_IPS)}
                if capable and capabilities
                else {}
            )
            info = await store.create_token(
                project_id,
                token.id,
                secret_hash=secret_hash,
                description="bench",
                expires_in_days=None,
                actor=CLI,
                **extra,
            )
            assert info is not None
            return str(token)

        try:
            main = await store.create_project("bench", None, actor=CLI)
            limited = await store.create_project("bench-limited", "1/hour", actor=CLI)
            features = ["scopes", "allowed_ips"] if capabilities else []
            if await _set_quota(pool, main.id):
                features.append("quota")
            cached = await issue(main.id, capable=True)
            parsed = tokens.parse(cached, prefix)
            assert parsed is not None
            wrong = tokens.Token(prefix, parsed.id, tokens.generate(prefix).secret)
            result = BenchTokens(cached, await issue(limited.id), str(wrong), features=features)
            result.fresh = list(await asyncio.gather(*(issue(main.id) for _ in range(fresh))))
            return result
        finally:
            await pool.close()


async def _set_quota(pool: asyncpg.Pool, project_id: str) -> bool:
    """Give the project :data:`QUOTA` where the schema has quotas (migration 0005)."""
    has_quota = await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns "
        "WHERE table_name = 'projects' AND column_name = 'quota')"
    )
    if has_quota:
        await pool.execute("UPDATE projects SET quota = $1 WHERE id = $2", QUOTA, project_id)
    return bool(has_quota)
