"""Portal sessions (SPEC §8): the seller's backend mints a one-time link, the customer's
console exchanges its code once for a session on that one project."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import asyncpg
import pytest

from admin.app import create_app
from gateway.core.config import Settings
from tests.conftest import ADMIN_AUTH

Client = Any


@pytest.fixture
def settings(environ: dict[str, str]) -> Settings:
    return Settings.from_env(
        {
            **environ,
            "ARGON2_MEMORY_COST": "1024",
            "ARGON2_TIME_COST": "1",
            "ADMIN_PUBLIC_URL": "https://console.example.com/",
        }
    )


async def project(client: Client) -> str:
    return str((await (await client.post("/v1/projects", json={"name": "p"})).json())["id"])


async def mint(client: Client, project_id: str, status: int = 201, **body: Any) -> Any:
    response = await client.post(f"/v1/projects/{project_id}/portal-sessions", json=body)
    assert response.status == status, await response.text()
    return await response.json()


async def exchange(client: Client, code: str) -> Any:
    return await client.post(
        "/v1/portal-sessions/exchange", json={"code": code}, headers={"Authorization": ""}
    )


def code_of(link: dict[str, Any]) -> str:
    return str(link["url"].rsplit("/", 1)[1])


async def test_a_link_works_once_for_one_project(
    admin_client: Client, pg_pool: asyncpg.Pool
) -> None:
    pid = await project(admin_client)
    link = await mint(admin_client, pid, ttl="30m")
    assert link["url"].startswith("https://console.example.com/#/portal/")
    assert set(link) == {"url", "expires_at"}
    code = code_of(link)
    # Only its SHA-256 is stored.
    stored = await pg_pool.fetchrow("SELECT * FROM portal_codes WHERE project_id = $1", pid)
    assert stored["code_hash"] == hashlib.sha256(code.encode()).digest()
    assert all(code not in str(v) for v in stored.values())
    response = await exchange(admin_client, code)
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    session = await response.json()
    me = await (
        await admin_client.get("/v1/me", headers={"Authorization": f"Bearer {session['session']}"})
    ).json()
    assert me["type"] == "portal" and me["role"] == "manager" and me["project_id"] == pid
    again = await exchange(admin_client, code)
    assert again.status == 401 and (await again.json())["error"]["code"] == "invalid_code"
    # Sessions are no admin keys: not listed there; minting was audited.
    listed = await (await admin_client.get("/v1/admin-keys")).json()
    assert me["id"] not in [k["id"] for k in listed["admin_keys"]]
    action = await pg_pool.fetchval(
        "SELECT action FROM audit_events WHERE project_id = $1 ORDER BY id DESC LIMIT 1", pid
    )
    assert action == "portal_session.created"


async def test_expired_codes_and_sessions_are_refused(
    admin_client: Client, pg_pool: asyncpg.Pool
) -> None:
    pid = await project(admin_client)
    stale = code_of(await mint(admin_client, pid))
    await pg_pool.execute(
        "UPDATE portal_codes SET expires_at = now() - interval '1 second' WHERE project_id = $1",
        pid,
    )
    assert (await exchange(admin_client, stale)).status == 401
    session = await (await exchange(admin_client, code_of(await mint(admin_client, pid)))).json()
    headers = {"Authorization": f"Bearer {session['session']}"}
    assert (await admin_client.get(f"/v1/projects/{pid}/tokens", headers=headers)).status == 200
    await pg_pool.execute(
        "UPDATE admin_keys SET expires_at = now() - interval '1 second' WHERE kind = 'portal'"
    )
    response = await admin_client.get(f"/v1/projects/{pid}/tokens", headers=headers)
    assert response.status == 401 and "expired" in (await response.json())["error"]["message"]


async def test_a_viewer_session_reads_but_changes_nothing(admin_client: Client) -> None:
    pid = await project(admin_client)
    link = await mint(admin_client, pid, role="viewer", ttl="12h")
    session = await (await exchange(admin_client, code_of(link))).json()
    headers = {"Authorization": f"Bearer {session['session']}"}
    assert (await admin_client.get(f"/v1/projects/{pid}/tokens", headers=headers)).status == 200
    response = await admin_client.post(f"/v1/projects/{pid}/tokens", json={}, headers=headers)
    assert response.status == 403
    # What it lacks is the role (the route is open to portal sessions), and the answer says so.
    assert (await response.json())["error"] == {
        "code": "forbidden",
        "message": "this needs the manager role; this credential has the viewer role",
    }


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"ttl": "4m"}, "ttl"),
        ({"ttl": "13h"}, "ttl"),
        ({"ttl": "1d"}, "ttl"),
        ({"role": "admin"}, "role"),
        ({"expires": "1h"}, "expires"),
    ],
)
async def test_bad_requests_for_a_link(admin_client: Client, body: Any, named: str) -> None:
    error = (await mint(admin_client, await project(admin_client), 400, **body))["error"]
    assert f'"{named}"' in error["message"]


async def test_bad_codes_are_refused(admin_client: Client) -> None:
    assert (await exchange(admin_client, "x" * 43)).status == 401
    for body in ({"code": "short"}, {}, {"code": 5}):
        response = await admin_client.post("/v1/portal-sessions/exchange", json=body)
        assert response.status == 400
    missing = await admin_client.post("/v1/projects/3hXwq0PuFLZd9KIbm/portal-sessions", json={})
    assert missing.status == 404


async def test_the_public_url_defaults_to_the_admin_listener(
    settings: Settings, pg_pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    plain = dataclasses.replace(settings, admin_public_url=None, admin_port=8181)
    client = await aiohttp_client(create_app(plain), headers=ADMIN_AUTH)
    link = await mint(client, await project(client))
    assert link["url"].startswith("http://127.0.0.1:8181/#/portal/")
