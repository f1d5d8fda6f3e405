"""The audit log (SPEC §9) on a real Postgres through the real admin API: one event per
successful change, in the change's transaction, none for a refused one; reading it with
filters and pages; the database refusing every change to it but the retention job's."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from admin.app import create_app
from admin.delivery import DeliveryOptions
from gateway.core.config import Settings
from gateway.core.journal import Actor
from gateway.core.store import Store
from gateway.core.store_audit import AuditLog
from tests.conftest import ADMIN_AUTH
from tests.helpers import until

Client = Any


@pytest.fixture
def settings(environ: dict[str, str]) -> Settings:
    return Settings.from_env({**environ, "ARGON2_MEMORY_COST": "1024", "ARGON2_TIME_COST": "1"})


async def events_of(pool: asyncpg.Pool, project_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT actor_type, actor_id, action, project_id, target_id, request_id, host(ip) AS ip,"
        " changes FROM audit_events WHERE project_id = $1 ORDER BY id",
        project_id,
    )


async def created(client: Client, path: str, body: dict[str, Any], **headers: str) -> Any:
    response = await client.post(path, json=body, headers=headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def test_each_change_writes_one_event_with_its_request(
    admin_client: Client, pg_pool: asyncpg.Pool
) -> None:
    rid = {"X-Request-Id": "req-1"}
    project = await created(admin_client, "/v1/projects", {"name": "a"}, **rid)
    pid = project["id"]
    token = await created(admin_client, f"/v1/projects/{pid}/tokens", {}, **rid)
    response = await admin_client.patch(
        f"/v1/projects/{pid}", json={"name": "b", "rate_limit": "5/second"}, headers=rid
    )
    assert response.status == 200
    assert response.headers["X-Request-Id"] == "req-1"
    response = await admin_client.delete(f"/v1/projects/{pid}/tokens/{token['id']}", headers=rid)
    assert response.status == 204
    response = await admin_client.delete(f"/v1/projects/{pid}", headers=rid)
    assert response.status == 204
    rows = [dict(row) for row in await events_of(pg_pool, pid)]
    assert [(r["action"], r["target_id"]) for r in rows] == [
        ("project.created", pid),
        ("token.created", token["id"]),
        ("project.updated", pid),
        ("token.revoked", token["id"]),
        ("project.deleted", pid),
    ]
    assert {(r["actor_type"], r["actor_id"], r["request_id"], r["ip"]) for r in rows} == {
        ("bootstrap", None, "req-1", "127.0.0.1")
    }
    assert rows[2]["changes"] is not None
    assert json.loads(rows[2]["changes"]) == {
        "name": ["a", "b"],
        "rate_limit": [None, "5/second"],
    }
    # Never a secret: the raw token appears in no event.
    dump = await pg_pool.fetchval("SELECT json_agg(e)::text FROM audit_events e")
    assert token["token"] not in dump and token["token"].rsplit("_", 1)[-1] not in dump


async def test_a_refused_or_empty_change_writes_nothing(
    admin_client: Client, pg_pool: asyncpg.Pool
) -> None:
    pid = (await created(admin_client, "/v1/projects", {"name": "a"}))["id"]
    before = len(await events_of(pg_pool, pid))
    missing = "0" * 17
    refused = [
        admin_client.patch(f"/v1/projects/{pid}", json={"name": ""}),  # 400
        admin_client.patch(f"/v1/projects/{pid}", json={"name": "a"}),  # no change
        admin_client.post(f"/v1/projects/{pid}/tokens", json={"expires_in": "2d"}),  # 400
        admin_client.delete(f"/v1/projects/{pid}/tokens/{missing}"),  # 404
        admin_client.delete(f"/v1/projects/{missing}"),  # 404
        admin_client.post("/v1/projects", json={"name": "x"}, headers={"Authorization": "x"}),
    ]
    statuses = [(await request).status for request in refused]
    assert statuses == [400, 200, 400, 404, 404, 401]
    assert len(await events_of(pg_pool, pid)) == before


async def test_no_change_without_its_event(store: Store, pg_pool: asyncpg.Pool) -> None:
    """An event the database refuses rolls its change back: they are one transaction."""
    bad = Actor("nobody")  # type: ignore[arg-type]  # the CHECK constraint refuses it
    with pytest.raises(asyncpg.CheckViolationError):
        await store.create_project("never", None, actor=bad)
    assert await pg_pool.fetchval("SELECT count(*) FROM projects WHERE name = 'never'") == 0


async def test_the_log_is_append_only_even_for_a_superuser(
    store: Store, pg_pool: asyncpg.Pool
) -> None:
    assert await pg_pool.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    project = await store.create_project("p", None, actor=Actor("cli"))
    for sql in (
        "UPDATE audit_events SET action = 'project.deleted' WHERE project_id = $1",
        "DELETE FROM audit_events WHERE project_id = $1",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await pg_pool.execute(sql, project.id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pg_pool.execute("TRUNCATE audit_events")
    assert len(await events_of(pg_pool, project.id)) == 1


async def old_event(pool: asyncpg.Pool, project_id: str, days: int) -> None:
    await pool.execute(
        "INSERT INTO audit_events (at, actor_type, action, project_id) "
        "VALUES (now() - make_interval(days => $1), 'cli', 'project.updated', $2)",
        days,
        project_id,
    )


async def test_retention_deletes_only_events_past_the_horizon(
    store: Store, pg_pool: asyncpg.Pool
) -> None:
    project = await store.create_project("p", None, actor=Actor("cli"))
    await old_event(pg_pool, project.id, 401)
    await old_event(pg_pool, project.id, 399)
    assert await AuditLog(pg_pool).purge(400) >= 1
    assert len(await events_of(pg_pool, project.id)) == 2  # the created one and the 399-day one
    # Even inside such a transaction, a recent event cannot be deleted.
    async with pg_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL tollgate.audit_retention_days = 400")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM audit_events WHERE project_id = $1", project.id)


async def test_the_admin_app_runs_the_retention_job(
    settings: Settings, store: Store, pg_pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    project = await store.create_project("p", None, actor=Actor("cli"))
    await old_event(pg_pool, project.id, 11)
    short = dataclasses.replace(settings, audit_retention_days=10)
    await aiohttp_client(create_app(short, delivery=DeliveryOptions(retention_interval=0.05)))

    async def purged() -> bool:
        return len(await events_of(pg_pool, project.id)) == 1

    await until(purged, what="the retention job deleting the 11-day-old event")


async def audit_page(client: Client, **query: str) -> Any:
    response = await client.get("/v1/audit", params=query)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_reading_the_log_with_filters_and_pages(admin_client: Client) -> None:
    pid = (await created(admin_client, "/v1/projects", {"name": "a"}))["id"]
    other = (await created(admin_client, "/v1/projects", {"name": "b"}))["id"]
    tokens = [
        (await created(admin_client, f"/v1/projects/{pid}/tokens", {}))["id"] for _ in range(5)
    ]
    seen, cursor = [], None
    while True:
        query = {"project_id": pid, "action": "token.created", "limit": "2"}
        page = await audit_page(admin_client, **query, **({"cursor": cursor} if cursor else {}))
        seen += [event["target_id"] for event in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(tokens))  # newest first, each once
    event = (await audit_page(admin_client, project_id=other))["events"][0]
    assert event["action"] == "project.created" and event["target_id"] == other
    assert event["actor"] == {"type": "bootstrap", "id": None, "name": "ADMIN_TOKEN"}
    assert set(event) == {
        "id", "at", "actor", "action", "project_id", "target_id", "request_id", "ip", "changes"
    }  # fmt: skip
    assert event["request_id"] and event["ip"] == "127.0.0.1" and event["changes"] is None
    # Time bounds: since is inclusive, until exclusive.
    at = datetime.fromisoformat(event["at"])
    later = (at + timedelta(seconds=1)).astimezone(UTC).isoformat()
    assert (await audit_page(admin_client, project_id=other, since=later))["events"] == []
    assert (await audit_page(admin_client, project_id=other, until=later))["events"]
    assert (await audit_page(admin_client, project_id=other, until=event["at"]))["events"] == []


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "0"}, "cursor"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"action": "token.stolen"}, "action"),
        ({"project_id": "x\x00"}, "project_id"),
        ({"limit": "0"}, "limit"),
    ],
)
async def test_bad_queries_are_400_naming_the_parameter(
    admin_client: Client, query: dict[str, str], named: str
) -> None:
    response = await admin_client.get("/v1/audit", params=query)
    assert response.status == 400
    assert f'"{named}"' in (await response.json())["error"]["message"]


async def test_every_answer_carries_a_request_id(admin_client: Client, aiohttp_client: Any) -> None:
    response = await admin_client.get("/v1/projects", headers={"X-Request-Id": "mine.1"})
    assert response.headers["X-Request-Id"] == "mine.1"
    response = await admin_client.get("/v1/projects", headers={"X-Request-Id": "bad id!"})
    assert response.headers["X-Request-Id"] not in ("bad id!", "")
    first = response.headers["X-Request-Id"]
    refused = await admin_client.get("/v1/projects", headers={"Authorization": "Bearer no"})
    assert refused.status == 401 and refused.headers["X-Request-Id"] not in ("", first)
    missing = await admin_client.get("/nowhere", headers=ADMIN_AUTH)
    assert missing.status == 404 and missing.headers["X-Request-Id"]
