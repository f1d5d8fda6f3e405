"""schemathesis, every check, against the running admin API's own OpenAPI document: what the
document allows, the API accepts, what it rules out, the API refuses, and every answer is
as described (status, headers, schema, Allow). A real ``admin serve`` on a fresh database;
bounded (a fixed seed and a few examples per operation, about a minute here).

tests/admin/schemathesis.toml holds the one exception the document cannot express."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.admin.test_admin_keys import admin_serve
from tests.conftest import ADMIN_TOKEN

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = Path(__file__).parent / "schemathesis.toml"

pytestmark = pytest.mark.skipif(
    not SCHEMATHESIS.exists() and shutil.which("schemathesis") is None,
    reason="schemathesis not installed (pip install -e '.[test]')",
)


@pytest.mark.slow  # about a minute of generated requests: `make test-slow` (and CI) runs it
@pytest.mark.timeout(300)
async def test_schemathesis_finds_nothing(environ: dict[str, str], own_database: str) -> None:
    env = {
        **os.environ,
        **environ,
        "DATABASE_URL": own_database,
        "ARGON2_MEMORY_COST": "1024",
        "ARGON2_TIME_COST": "1",
    }
    async with admin_serve(env) as url:
        process = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS) if SCHEMATHESIS.exists() else "schemathesis",
            "--no-color",
            "--config-file",
            str(CONFIG),
            "run",
            f"{url}/v1/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {ADMIN_TOKEN}",
            "--max-examples",
            "10",
            "--seed",
            "1",
            "--request-timeout",
            "30",
            env={k: v for k, v in env.items() if k != "ADMIN_TOKEN"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 280)
    report = out.decode(errors="replace")
    assert process.returncode == 0, report
    assert " passed" in report and "failures" not in report, report
