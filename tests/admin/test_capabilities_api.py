"""Token capabilities through the admin API (SPEC §10): scopes and allowed_ips at creation,
rotation with its grace, 409 already_rotated, the expiring filter and gauge."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from gateway.core.config import Settings
from gateway.core.tokens import generate
from tests.admin.test_api import error_of, new_project, new_token, when

Client = Any


@pytest.fixture
def settings(environ: dict[str, str]) -> Settings:
    # Cheap argon2: these tests issue many tokens.
    return Settings.from_env({**environ, "ARGON2_MEMORY_COST": "1024", "ARGON2_TIME_COST": "1"})


async def rotate(client: Client, token: dict[str, Any], **body: Any) -> Any:
    path = f"/v1/projects/{token['project_id']}/tokens/{token['id']}/rotate"
    return await client.post(path, json=body)


async def show(client: Client, token: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"/v1/projects/{token['project_id']}/tokens/{token['id']}")
    assert response.status == 200
    shown: dict[str, Any] = await response.json()
    return shown


def close_to(moment: str, expected: datetime, slack: float = 60) -> bool:
    return abs((when(moment) - expected).total_seconds()) < slack


# ---------------------------------------------------------------- at creation


async def test_scopes_and_allowed_ips_are_stored_canonical_and_shown_everywhere(
    admin_client: Client,
) -> None:
    project = await new_project(admin_client)
    token = await new_token(
        admin_client,
        project["id"],
        scopes=["get /v1/validate", "*   /v1/status"],
        allowed_ips=["203.0.113.0/24", "2001:DB8::/48", "198.51.100.7/32"],
    )
    scopes = ["GET /v1/validate", "* /v1/status"]
    ips = ["203.0.113.0/24", "2001:db8::/48", "198.51.100.7"]
    assert (token["scopes"], token["allowed_ips"]) == (scopes, ips)
    shown = await show(admin_client, token)
    listed = await (await admin_client.get(f"/v1/projects/{project['id']}/tokens")).json()
    for seen in (shown, listed["tokens"][0]):
        assert (seen["scopes"], seen["allowed_ips"]) == (scopes, ips)
        assert (seen["expires_in"], seen["rotated_from"], seen["replaced_by"]) == (
            "30d",
            None,
            None,
        )
    plain = await new_token(admin_client, project["id"])
    assert (plain["scopes"], plain["allowed_ips"]) == ([], [])


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"scopes": ["/v1/validate"]}, '"scopes" must be a method (or *) and a path prefix'),
        ({"scopes": ["GET v1"]}, '"scopes" must have a path prefix starting with /'),
        ({"scopes": ["GET /a?b"]}, '"scopes" must have a path prefix of printable ASCII'),
        ({"scopes": [f"GET /{n}" for n in range(21)]}, '"scopes" must have at most 20 items'),
        ({"scopes": "GET /v1"}, '"scopes" must be an array'),
        ({"scopes": [7]}, '"scopes" must be an array of strings'),
        ({"allowed_ips": ["203.0.113.5/24"]}, "host bits set: the block is 203.0.113.0/24"),
        ({"allowed_ips": ["example.com"]}, '"allowed_ips" must be an IPv4 or IPv6 address'),
        ({"allowed_ips": ["10.0.0.0/33"]}, '"allowed_ips" must be an IPv4 or IPv6 address'),
        ({"allowed_ips": [f"10.0.0.{n}" for n in range(51)]}, "at most 50 items"),
    ],
)
async def test_bad_capabilities_are_400_naming_the_field_and_issue_nothing(
    admin_client: Client, body: dict[str, Any], problem: str
) -> None:
    project = await new_project(admin_client)
    response = await admin_client.post(f"/v1/projects/{project['id']}/tokens", json=body)
    error = await error_of(response, 400)
    assert problem in error["message"]
    assert "\n" not in error["message"]
    listed = await (await admin_client.get(f"/v1/projects/{project['id']}/tokens")).json()
    assert listed["tokens"] == []


async def test_twenty_scopes_and_fifty_blocks_are_accepted(admin_client: Client) -> None:
    project = await new_project(admin_client)
    token = await new_token(
        admin_client,
        project["id"],
        scopes=[f"GET /v{n}" for n in range(20)],
        allowed_ips=[f"10.{n}.0.0/16" for n in range(50)],
    )
    assert (len(token["scopes"]), len(token["allowed_ips"])) == (20, 50)


# ---------------------------------------------------------------- rotation


async def test_rotation_issues_a_successor_and_retires_the_old_token_after_its_grace(
    admin_client: Client, pg_pool: asyncpg.Pool
) -> None:
    project = await new_project(admin_client)
    old = await new_token(
        admin_client,
        project["id"],
        description="CI",
        expires_in="90d",
        scopes=["GET /v1"],
        allowed_ips=["203.0.113.0/24"],
    )
    response = await rotate(admin_client, old, grace="1h")
    assert response.status == 201, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    new = await response.json()
    now = datetime.now(UTC)
    assert new["token"].startswith(f"tg_{new['id']}_") and new["id"] != old["id"]
    assert response.headers["Location"] == f"/v1/projects/{project['id']}/tokens/{new['id']}"
    for name in ("description", "scopes", "allowed_ips", "expires_in"):
        assert new[name] == old[name], name
    assert new["rotated_from"] == old["id"] and new["replaced_by"] is None
    assert close_to(new["expires_at"], now + timedelta(days=90))
    retired = await show(admin_client, old)
    assert retired["replaced_by"] == new["id"] and retired["status"] == "active"
    assert close_to(retired["expires_at"], now + timedelta(hours=1))
    assert close_to(retired["rotated_at"], now)
    assert "token" not in retired
    # One audit event and one webhook event, never the token.
    audit = await pg_pool.fetch(
        "SELECT actor_type, target_id, changes FROM audit_events "
        "WHERE action = 'token.rotated' AND project_id = $1",
        project["id"],
    )
    assert [(a["actor_type"], a["target_id"]) for a in audit] == [("bootstrap", old["id"])]
    changes = json.loads(audit[0]["changes"])
    assert changes["replaced_by"] == [None, new["id"]]
    assert [when(t) for t in changes["expires_at"]] == [
        when(old["expires_at"]),
        when(retired["expires_at"]),
    ]
    outbox = await pg_pool.fetch(
        "SELECT data FROM outbox_events WHERE project_id = $1 AND type = 'token.rotated'",
        project["id"],
    )
    data = json.loads(outbox[0]["data"])
    assert (data["token"]["id"], data["replaced_by"]["id"]) == (old["id"], new["id"])
    assert new["token"] not in outbox[0]["data"] and new["token"] not in audit[0]["changes"]


async def test_a_token_can_be_rotated_once_only(admin_client: Client) -> None:
    project = await new_project(admin_client)
    old = await new_token(admin_client, project["id"])
    new = await (await rotate(admin_client, old)).json()
    error = await error_of(await rotate(admin_client, old), 409)
    assert error["code"] == "already_rotated" and new["id"] in error["message"]
    # The successor can be rotated in its turn.
    assert (await rotate(admin_client, new)).status == 201


async def test_concurrent_rotations_make_one_successor(admin_client: Client) -> None:
    project = await new_project(admin_client)
    old = await new_token(admin_client, project["id"])
    answers = await asyncio.gather(*(rotate(admin_client, old) for _ in range(4)))
    assert sorted(a.status for a in answers) == [201, 409, 409, 409]
    listed = await (await admin_client.get(f"/v1/projects/{project['id']}/tokens")).json()
    assert len(listed["tokens"]) == 2


@pytest.mark.parametrize(
    ("expires_in", "grace", "ends"),
    [
        ("30d", None, timedelta(hours=24)),  # default grace
        ("never", "7d", timedelta(days=7)),  # never-expiring tokens end with the grace too
        ("30d", "90m", timedelta(minutes=90)),
        ("30d", "3600s", timedelta(hours=1)),
    ],
)
async def test_the_grace_and_its_default(
    admin_client: Client, expires_in: str, grace: str | None, ends: timedelta
) -> None:
    project = await new_project(admin_client)
    old = await new_token(admin_client, project["id"], expires_in=expires_in)
    body = {} if grace is None else {"grace": grace}
    new = await (await rotate(admin_client, old, **body)).json()
    retired = await show(admin_client, old)
    assert close_to(retired["expires_at"], when(retired["rotated_at"]) + ends, slack=2)
    assert new["expires_in"] == expires_in
    assert (new["expires_at"] is None) == (expires_in == "never")


async def test_a_grace_never_extends_a_token(admin_client: Client, pg_pool: asyncpg.Pool) -> None:
    project = await new_project(admin_client)
    old = await new_token(admin_client, project["id"])
    await pg_pool.execute(
        "UPDATE tokens SET expires_at = now() + interval '2 hours' WHERE id = $1", old["id"]
    )
    before = (await show(admin_client, old))["expires_at"]
    await rotate(admin_client, old, grace="7d")
    assert (await show(admin_client, old))["expires_at"] == before


async def test_a_grace_of_zero_ends_the_old_token_now(admin_client: Client) -> None:
    project = await new_project(admin_client)
    old = await new_token(admin_client, project["id"])
    await rotate(admin_client, old, grace="0s")
    assert (await show(admin_client, old))["status"] == "expired"


@pytest.mark.parametrize(
    ("grace", "problem"),
    [
        ("8d", '"grace" must be at most 7d'),
        ("169h", '"grace" must be at most 7d'),
        ("1w", '"grace" must be a duration from 0s to 7d'),
        ("-1h", '"grace" must be a duration from 0s to 7d'),
        ("24", '"grace" must be a duration from 0s to 7d'),
        (24, '"grace" must be a string'),
    ],
)
async def test_bad_graces_are_400_and_rotate_nothing(
    admin_client: Client, grace: Any, problem: str
) -> None:
    project = await new_project(admin_client)
    old = await new_token(admin_client, project["id"])
    error = await error_of(await rotate(admin_client, old, grace=grace), 400)
    assert problem in error["message"]
    assert (await show(admin_client, old))["replaced_by"] is None


async def test_rotating_a_missing_token_or_project_is_404(admin_client: Client) -> None:
    project = await new_project(admin_client)
    missing = {"project_id": project["id"], "id": generate("tg").id}
    assert (await error_of(await rotate(admin_client, missing), 404))["code"] == "token_not_found"
    elsewhere = {"project_id": generate("tg").id, "id": missing["id"]}
    assert (await error_of(await rotate(admin_client, elsewhere), 404))["code"] != "token_not_found"


async def test_rotation_notifies_gateways_with_the_new_expiry(
    admin_client: Client, events: asyncio.Queue[dict[str, Any]]
) -> None:
    project = await new_project(admin_client)
    old = await new_token(admin_client, project["id"])
    await rotate(admin_client, old, grace="1h")
    event = await asyncio.wait_for(events.get(), 10)
    retired = await show(admin_client, old)
    assert (event["kind"], event["token_id"]) == ("token_updated", old["id"])
    assert event["expires_at"] == pytest.approx(when(retired["expires_at"]).timestamp(), abs=1)
    assert event["rotated_at"] == pytest.approx(when(retired["rotated_at"]).timestamp(), abs=1)


# ---------------------------------------------------------------- expiring soon


async def test_status_filters_and_the_expiring_gauge(
    admin_client: Client, pg_pool: asyncpg.Pool
) -> None:
    project = await new_project(admin_client)
    base = f"/v1/projects/{project['id']}/tokens"
    ids = {}
    for name, ends in [
        ("never", None),
        ("month", "30 days"),
        ("week", "6 days"),
        ("hours", "3 hours"),
        ("gone", "-1 hour"),
    ]:
        token = await new_token(admin_client, project["id"], expires_in="never")
        ids[name] = token["id"]
        if ends is not None:
            await pg_pool.execute(
                "UPDATE tokens SET expires_at = now() + $2::text::interval WHERE id = $1",
                token["id"],
                ends,
            )
    rotating = await new_token(admin_client, project["id"], expires_in="never")
    successor = await (await rotate(admin_client, rotating, grace="2d")).json()
    ids["rotating"], ids["successor"] = rotating["id"], successor["id"]

    async def listed(**query: str) -> set[str]:
        page = await (await admin_client.get(base, params=query)).json()
        found = {next(n for n, i in ids.items() if i == t["id"]) for t in page["tokens"]}
        return found

    everything = set(ids)
    assert await listed() == everything
    assert await listed(status="expired") == {"gone"}
    assert await listed(status="active") == everything - {"gone"}
    assert await listed(status="expiring") == {"week", "hours", "rotating"}
    assert await listed(status="expiring", within="1d") == {"hours"}
    assert await listed(status="expiring", within="60d") == {"month", "week", "hours", "rotating"}
    assert await listed(status="expiring", within="2d", limit="1") <= {"hours", "rotating"}

    metrics = await (await admin_client.get("/metrics")).text()
    assert 'admin_tokens_expiring{within="7d"} 3.0' in metrics


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ({"status": "soon"}, '"status" must be one of active, expired, expiring'),
        ({"status": "expiring", "within": "400d"}, '"within" must be at most 365d'),
        ({"status": "expiring", "within": "week"}, '"within" must be a duration'),
    ],
)
async def test_bad_filters_are_400(
    admin_client: Client, query: dict[str, str], problem: str
) -> None:
    project = await new_project(admin_client)
    response = await admin_client.get(f"/v1/projects/{project['id']}/tokens", params=query)
    assert problem in (await error_of(response, 400))["message"]


async def test_the_gauge_has_no_project_label(admin_client: Client) -> None:
    metrics = await (await admin_client.get("/metrics")).text()
    lines = [line for line in metrics.splitlines() if line.startswith("admin_tokens_expiring{")]
    assert lines == ['admin_tokens_expiring{within="7d"} 0.0']
