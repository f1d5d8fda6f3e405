"""Admin keys (SPEC §8) through the real API on a real Postgres: issued once, never stored
raw, proven by argon2 once per process, refused at once on every admin instance when
revoked (two real ``admin serve`` processes), audited."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from admin.app import create_app
from admin.keys import CREDENTIALS
from gateway.core.config import Settings
from gateway.core.tokens import parse
from tests.conftest import ADMIN_AUTH
from tests.helpers import free_port, until

Client = Any


@pytest.fixture
def settings(environ: dict[str, str]) -> Settings:
    return Settings.from_env({**environ, "ARGON2_MEMORY_COST": "1024", "ARGON2_TIME_COST": "1"})


async def new_key(client: Client, status: int = 201, **body: Any) -> Any:
    response = await client.post("/v1/admin-keys", json={"name": "ci", "role": "admin", **body})
    assert response.status == status, await response.text()
    return await response.json()


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


async def test_create_show_list_and_revoke(admin_client: Client, pg_pool: asyncpg.Pool) -> None:
    project = await (await admin_client.post("/v1/projects", json={"name": "p"})).json()
    made = await new_key(admin_client, name="billing", role="manager", project_id=project["id"])
    assert made["key"].startswith("tgadm_") and parse(made["key"], "tgadm") is not None
    assert set(made) == {
        "id", "name", "role", "project_id", "masked", "created_at", "expires_at",
        "last_used_at", "status", "key",
    }  # fmt: skip
    assert made["masked"].startswith(f"tgadm_{made['id']}_") and made["status"] == "active"
    assert made["expires_at"] is not None and made["last_used_at"] is None
    response = await admin_client.get(f"/v1/admin-keys/{made['id']}")
    shown = await response.json()
    assert shown == {k: v for k, v in made.items() if k != "key"}
    listed = await (await admin_client.get("/v1/admin-keys")).json()
    assert made["id"] in [k["id"] for k in listed["admin_keys"]] and "next_cursor" in listed
    assert all("key" not in k for k in listed["admin_keys"])
    # Never stored raw: only an argon2id hash of the secret.
    row = await pg_pool.fetchrow("SELECT * FROM admin_keys WHERE id = $1", made["id"])
    secret = made["key"].split("_")[2]
    assert row["secret_hash"].startswith("$argon2id$")
    assert all(secret[:20] not in str(value) for value in row.values())
    # It works, and its use is recorded.
    me = await (await admin_client.get("/v1/me", headers=bearer(made["key"]))).json()
    assert me == {
        "type": "admin_key",
        "id": made["id"],
        "name": "billing",
        "role": "manager",
        "project_id": project["id"],
    }
    shown = await (await admin_client.get(f"/v1/admin-keys/{made['id']}")).json()
    assert shown["last_used_at"] is not None
    assert (await admin_client.delete(f"/v1/admin-keys/{made['id']}")).status == 204
    assert (await admin_client.delete(f"/v1/admin-keys/{made['id']}")).status == 404
    assert (await admin_client.get(f"/v1/admin-keys/{made['id']}")).status == 404
    refused = await admin_client.get("/v1/me", headers=bearer(made["key"]))
    assert refused.status == 401 and "WWW-Authenticate" in refused.headers


async def test_pages_walk_every_key_newest_first(admin_client: Client) -> None:
    made = [(await new_key(admin_client, name=f"k{i}"))["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await (await admin_client.get("/v1/admin-keys", params=query)).json()
        seen += [k["id"] for k in page["admin_keys"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [k for k in seen if k in made] == list(reversed(made))
    response = await admin_client.get("/v1/admin-keys", params={"cursor": "garbage"})
    assert response.status == 400


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"role": "admin", "project_id": "3hXwq0PuFLZd9KIbm"}, 400, "project_id"),
        ({"role": "manager"}, 400, "project_id"),
        ({"role": "viewer", "project_id": "3hXwq0PuFLZd9KIbm"}, 404, None),
        ({"role": "owner"}, 400, "role"),
        ({"role": "admin", "name": ""}, 400, "name"),
        ({"role": "admin", "expires_in": "2d"}, 400, "expires_in"),
    ],
)
async def test_bad_keys_are_refused_and_leave_nothing(
    admin_client: Client, pg_pool: asyncpg.Pool, body: dict[str, Any], status: int, named: str
) -> None:
    before = await pg_pool.fetchval("SELECT count(*) FROM admin_keys")
    error = (await new_key(admin_client, status, **body))["error"]
    if named:
        assert f'"{named}"' in error["message"]
    assert await pg_pool.fetchval("SELECT count(*) FROM admin_keys") == before


async def test_a_proven_key_costs_no_more_argon2(
    settings: Settings, pg_pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    app = create_app(settings)
    client = await aiohttp_client(app, headers=ADMIN_AUTH)
    raw = (await new_key(client))["key"]
    credentials = app[CREDENTIALS]
    runs = credentials.argon2_runs  # the create hashed, but proved nothing
    # Concurrent first uses share one verification; later ones need none.
    answers = await asyncio.gather(
        *(client.get("/v1/projects", headers=bearer(raw)) for _ in range(10))
    )
    assert {a.status for a in answers} == {200}
    for _ in range(10):
        assert (await client.get("/v1/projects", headers=bearer(raw))).status == 200
    assert credentials.argon2_runs == runs + 1
    # A wrong secret for a real id is verified once, then refused from memory.
    forged = raw[:-12] + ("A" if raw[-12] != "A" else "B") + raw[-11:]
    token = parse(forged, "tgadm")
    if token is not None:  # a checksum clash is possible in theory; then no argon2 at all
        for _ in range(3):
            assert (await client.get("/v1/me", headers=bearer(forged))).status == 401
        assert credentials.argon2_runs == runs + 2
    for junk in ("tgadm_x", "tg_" + raw[6:], "x" * 40):
        assert (await client.get("/v1/me", headers=bearer(junk))).status == 401


async def test_expired_keys_and_deleted_projects_are_refused(
    admin_client: Client, pg_pool: asyncpg.Pool
) -> None:
    project = await (await admin_client.post("/v1/projects", json={"name": "p"})).json()
    scoped = await new_key(admin_client, role="viewer", project_id=project["id"])
    never = await new_key(admin_client, expires_in="never")
    assert never["expires_at"] is None
    await pg_pool.execute(
        "UPDATE admin_keys SET expires_at = now() - interval '1 second' WHERE id = $1",
        never["id"],
    )
    response = await admin_client.get("/v1/me", headers=bearer(never["key"]))
    assert response.status == 401 and "expired" in (await response.json())["error"]["message"]
    listed = await (await admin_client.get(f"/v1/admin-keys/{never['id']}")).json()
    assert listed["status"] == "expired"
    assert (await admin_client.get("/v1/me", headers=bearer(scoped["key"]))).status == 200
    assert (await admin_client.delete(f"/v1/projects/{project['id']}")).status == 204
    assert (await admin_client.get("/v1/me", headers=bearer(scoped["key"]))).status == 401
    assert (await admin_client.get(f"/v1/admin-keys/{scoped['id']}")).status == 404


async def test_changes_by_a_key_are_audited_with_the_key(
    admin_client: Client, pg_pool: asyncpg.Pool
) -> None:
    made = await new_key(admin_client, name="deployer")
    response = await admin_client.post(
        "/v1/projects", json={"name": "by key"}, headers=bearer(made["key"])
    )
    project = await response.json()
    rows = await pg_pool.fetch(
        "SELECT actor_type, actor_id, actor_name, action, target_id FROM audit_events "
        "WHERE target_id = ANY($1::text[]) ORDER BY id",
        [made["id"], project["id"]],
    )
    assert [tuple(r) for r in rows] == [
        ("bootstrap", None, "ADMIN_TOKEN", "admin_key.created", made["id"]),
        ("admin_key", made["id"], "deployer", "project.created", project["id"]),
    ]
    assert (await admin_client.delete(f"/v1/admin-keys/{made['id']}")).status == 204
    action = await pg_pool.fetchval(
        "SELECT action FROM audit_events WHERE target_id = $1 ORDER BY id DESC LIMIT 1",
        made["id"],
    )
    assert action == "admin_key.revoked"


# ---------------------------------------------------------------- two admin instances


@contextlib.asynccontextmanager
async def admin_serve(env: dict[str, str]) -> AsyncIterator[str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "admin",
        "serve",
        "--no-migrate",
        "--admin-port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def up() -> bool:
                assert process.returncode is None, await process.stderr.read()  # type: ignore[union-attr]
                try:
                    async with session.get(f"{url}/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await until(up, timeout=60, what="admin serve answering")
        yield url
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def test_a_revoked_key_is_refused_at_once_by_another_instance(
    environ: dict[str, str], pg_pool: asyncpg.Pool
) -> None:
    env = {**os.environ, **environ, "ARGON2_MEMORY_COST": "1024", "ARGON2_TIME_COST": "1"}
    async with (
        admin_serve(env) as first,
        admin_serve(env) as second,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(
            f"{first}/v1/admin-keys", json={"name": "k", "role": "admin"}, headers=ADMIN_AUTH
        ) as response:
            raw = (await response.json())["key"]
            key_id = parse(raw, "tgadm").id  # type: ignore[union-attr]

        async def status(url: str) -> int:
            async with session.get(f"{url}/v1/me", headers=bearer(raw)) as response:
                return response.status

        assert await status(first) == 200 and await status(second) == 200  # both proved it
        async with session.delete(f"{first}/v1/admin-keys/{key_id}", headers=ADMIN_AUTH) as r:
            assert r.status == 204
            revoked_at = time.monotonic()
        assert await status(second) == 401
        refused_after = time.monotonic() - revoked_at
        print(f"revoked key refused by the second instance after {refused_after * 1000:.1f} ms")
        assert refused_after < 1.0
        assert await status(first) == 401
