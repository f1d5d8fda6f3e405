"""The usage API, usage_30d on tokens and project quotas, through real HTTP on a real Postgres."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from gateway.core.config import Settings
from gateway.core.store_usage import DAY, Batch, UsageStore
from tests.admin.test_api import error_of, new_project, new_token

Client = Any
TODAY = datetime.now(UTC).date()
EPOCH = date(1970, 1, 1)


@pytest.fixture
def settings(environ: dict[str, str]) -> Settings:
    return Settings.from_env({**environ, "ARGON2_MEMORY_COST": "1024", "ARGON2_TIME_COST": "1"})


def day_number(day: date) -> int:
    return (day - EPOCH).days


async def record(
    pool: asyncpg.Pool, project_id: str, token_id: str, day: date, counts: list[int]
) -> None:
    """Usage as a gateway's flush writes it."""
    batch = Batch({(token_id, project_id, day_number(day)): counts}, {})
    await UsageStore(pool).flush([], [], [batch])


@pytest.fixture
async def used(admin_client: Client, pg_pool: asyncpg.Pool) -> dict[str, str]:
    """A project with two tokens used on three days (one of them revoked since)."""
    project = await new_project(admin_client)
    kept = await new_token(admin_client, project["id"])
    revoked = await new_token(admin_client, project["id"])
    pid = project["id"]
    await record(pg_pool, pid, kept["id"], TODAY, [10, 1, 2, 3])
    await record(pg_pool, pid, kept["id"], TODAY - timedelta(days=2), [5, 0, 0, 0])
    await record(pg_pool, pid, revoked["id"], TODAY, [1, 1, 0, 0])
    await record(pg_pool, pid, kept["id"], TODAY - timedelta(days=40), [100, 0, 0, 0])
    response = await admin_client.delete(f"/v1/projects/{pid}/tokens/{revoked['id']}")
    assert response.status == 204
    return {"project": pid, "kept": kept["id"], "revoked": revoked["id"]}


async def test_usage_by_day_has_every_day_with_zeros(
    admin_client: Client, used: dict[str, str]
) -> None:
    start = TODAY - timedelta(days=3)
    response = await admin_client.get(
        f"/v1/projects/{used['project']}/usage",
        params={"from": start.isoformat(), "to": TODAY.isoformat()},
    )
    assert response.status == 200
    body = await response.json()
    assert body["from"] == start.isoformat() and body["to"] == TODAY.isoformat()
    zero = {"proxied": 0, "upstream_errors": 0, "rate_limited": 0, "forbidden": 0}
    assert body["rows"] == [
        {"date": start.isoformat(), **zero},
        {"date": (start + timedelta(days=1)).isoformat(), **zero, "proxied": 5},
        {"date": (start + timedelta(days=2)).isoformat(), **zero},
        {
            "date": TODAY.isoformat(),
            "proxied": 11,
            "upstream_errors": 2,
            "rate_limited": 2,
            "forbidden": 3,
        },
    ]
    # A revoked token's usage stays in the project's totals.
    assert body["totals"] == {
        "proxied": 16,
        "upstream_errors": 2,
        "rate_limited": 2,
        "forbidden": 3,
    }


async def test_usage_defaults_to_30_days_and_groups_by_token(
    admin_client: Client, used: dict[str, str]
) -> None:
    response = await admin_client.get(f"/v1/projects/{used['project']}/usage")
    body = await response.json()
    assert len(body["rows"]) == 30 and body["to"] == TODAY.isoformat()
    assert body["totals"]["proxied"] == 16  # the day 40 days ago is outside

    response = await admin_client.get(
        f"/v1/projects/{used['project']}/usage", params={"group_by": "token"}
    )
    body = await response.json()
    assert body["rows"] == [
        {
            "token_id": used["kept"],
            "proxied": 15,
            "upstream_errors": 1,
            "rate_limited": 2,
            "forbidden": 3,
        },
        {
            "token_id": used["revoked"],
            "proxied": 1,
            "upstream_errors": 1,
            "rate_limited": 0,
            "forbidden": 0,
        },
    ]

    response = await admin_client.get(
        f"/v1/projects/{used['project']}/usage",
        params={"token_id": used["revoked"], "from": TODAY.isoformat()},
    )
    assert (await response.json())["rows"] == [
        {
            "date": TODAY.isoformat(),
            "proxied": 1,
            "upstream_errors": 1,
            "rate_limited": 0,
            "forbidden": 0,
        }
    ]


async def test_usage_as_csv(admin_client: Client, used: dict[str, str]) -> None:
    start = TODAY - timedelta(days=2)
    response = await admin_client.get(
        f"/v1/projects/{used['project']}/usage",
        params={"from": start.isoformat()},
        headers={"Accept": "text/csv"},
    )
    assert response.status == 200
    assert response.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows == [
        ["date", "proxied", "upstream_errors", "rate_limited", "forbidden"],
        [start.isoformat(), "5", "0", "0", "0"],
        [(start + timedelta(days=1)).isoformat(), "0", "0", "0", "0"],
        [TODAY.isoformat(), "11", "2", "2", "3"],
    ]
    response = await admin_client.get(
        f"/v1/projects/{used['project']}/usage",
        params={"group_by": "token"},
        headers={"Accept": "application/json;q=0.5, text/csv"},
    )
    assert (await response.text()).splitlines()[
        0
    ] == "token_id,proxied,upstream_errors,rate_limited,forbidden"


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"from": "2026-02-30"}, '"from" is not a calendar date'),
        ({"to": "yesterday"}, '"to" must be a date, YYYY-MM-DD'),
        ({"from": "2026-01-02", "to": "2026-01-01"}, '"from" must not be after "to"'),
        ({"from": "2025-01-01", "to": "2026-02-05"}, "at most 400 days"),
        ({"from": "0001-01-01", "to": "1970-01-05"}, '"from" must be between 1970-01-01'),
        ({"to": "1969-12-31"}, '"to" must be between 1970-01-01 and 9999-12-30'),
        ({"to": "9999-12-31"}, '"to" must be between 1970-01-01 and 9999-12-30'),
        ({"group_by": "week"}, '"group_by" must be one of day, token'),
        ({"token_id": "../x"}, '"token_id" is not a token id'),
    ],
)
async def test_bad_usage_queries_are_400_naming_the_problem(
    admin_client: Client, used: dict[str, str], params: dict[str, str], says: str
) -> None:
    response = await admin_client.get(f"/v1/projects/{used['project']}/usage", params=params)
    error = await error_of(response, 400)
    assert says in error["message"]


async def test_400_days_is_the_most_a_report_covers(
    admin_client: Client, used: dict[str, str]
) -> None:
    response = await admin_client.get(
        f"/v1/projects/{used['project']}/usage",
        params={"from": "2025-01-01", "to": "2026-02-04"},
    )
    assert response.status == 200
    assert len((await response.json())["rows"]) == 400


@pytest.mark.parametrize("group_by", ["day", "token"])
@pytest.mark.parametrize(
    ("start", "end", "days"),
    [("9999-12-29", "9999-12-30", 2), (None, "9999-12-30", 30), (None, "1970-01-05", 5)],
)
async def test_the_first_and_last_days_of_the_calendar_are_answered(
    admin_client: Client,
    used: dict[str, str],
    group_by: str,
    start: str | None,
    end: str,
    days: int,
) -> None:
    params = {"to": end, "group_by": group_by} | ({"from": start} if start else {})
    response = await admin_client.get(f"/v1/projects/{used['project']}/usage", params=params)
    assert response.status == 200
    rows = (await response.json())["rows"]
    if group_by == "day":
        assert [row["date"] for row in rows][-1] == end and len(rows) == days
    else:
        assert rows == []


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        ("text/csv", "text/csv"),
        ("text/csv;q=0.5, application/json", "application/json"),
        ("application/json;q=0.5, text/csv", "text/csv"),
        ("text/*", "text/csv"),
        ("*/*", "application/json"),
        ("text/csv;q=0", "application/json"),
        ("text/csv;q=abc", "application/json"),
        ("image/png", "application/json"),
        ("", "application/json"),
    ],
)
async def test_the_answer_is_the_type_the_client_prefers(
    admin_client: Client, used: dict[str, str], accept: str, kind: str
) -> None:
    response = await admin_client.get(
        f"/v1/projects/{used['project']}/usage", headers={"Accept": accept}
    )
    assert response.status == 200
    assert response.content_type == kind


async def test_usage_of_an_unknown_project_is_404(admin_client: Client) -> None:
    response = await admin_client.get("/v1/projects/0000000000000000A/usage")
    assert (await error_of(response, 404))["code"] == "project_not_found"


async def test_tokens_carry_their_usage_of_the_last_30_days(
    admin_client: Client, used: dict[str, str], pg_pool: asyncpg.Pool
) -> None:
    project = used["project"]
    fresh = await new_token(admin_client, project)
    assert fresh["usage_30d"] == {
        "proxied": 0,
        "upstream_errors": 0,
        "rate_limited": 0,
        "forbidden": 0,
    }
    response = await admin_client.get(f"/v1/projects/{project}/tokens/{used['kept']}")
    assert (await response.json())["usage_30d"] == {
        "proxied": 15,
        "upstream_errors": 1,
        "rate_limited": 2,
        "forbidden": 3,
    }
    # 29 days ago counts, 30 days ago does not.
    await record(pg_pool, project, fresh["id"], TODAY - timedelta(days=29), [7, 0, 0, 0])
    await record(pg_pool, project, fresh["id"], TODAY - timedelta(days=30), [1000, 0, 0, 0])
    response = await admin_client.get(f"/v1/projects/{project}/tokens")
    listed = {t["id"]: t["usage_30d"]["proxied"] for t in (await response.json())["tokens"]}
    assert listed == {used["kept"]: 15, fresh["id"]: 7}


# ---------------------------------------------------------------- quotas


async def test_a_quota_is_set_changed_and_cleared_like_a_rate_limit(
    admin_client: Client, events: asyncio.Queue[dict[str, Any]], pg_pool: asyncpg.Pool
) -> None:
    project = await new_project(admin_client, quota=" 1000/day ")
    assert project["quota"] == "1000/day"
    assert (await new_project(admin_client))["quota"] is None
    path = f"/v1/projects/{project['id']}"

    response = await admin_client.patch(path, json={"quota": "50000/month"})
    assert (await response.json())["quota"] == "50000/month"
    event = await asyncio.wait_for(events.get(), 5)
    assert (event["kind"], event["quota"]) == ("project_updated", "50000/month")

    response = await admin_client.patch(path, json={"name": "renamed"})
    assert (await response.json())["quota"] == "50000/month"  # untouched

    response = await admin_client.patch(path, json={"quota": None})
    assert (await response.json())["quota"] is None
    event = await asyncio.wait_for(events.get(), 5)
    assert event["quota"] is None
    data = await pg_pool.fetchval(
        "SELECT data FROM outbox_events WHERE project_id = $1 AND type = 'project.updated' "
        "ORDER BY created_at DESC LIMIT 1",
        project["id"],
    )
    assert json.loads(data)["project"]["quota"] is None
    audited = await pg_pool.fetch(
        "SELECT changes FROM audit_events WHERE project_id = $1 AND action = 'project.updated' "
        "AND changes ? 'quota' ORDER BY id",
        project["id"],
    )
    assert [json.loads(row["changes"])["quota"] for row in audited] == [
        ["1000/day", "50000/month"],
        ["50000/month", None],
    ]


@pytest.mark.parametrize("quota", ["1000/week", "0/day", "-5/day", "lots", "10/minute", 5])
async def test_a_bad_quota_is_400_and_changes_nothing(admin_client: Client, quota: Any) -> None:
    project = await new_project(admin_client, quota="10/day")
    response = await admin_client.patch(f"/v1/projects/{project['id']}", json={"quota": quota})
    error = await error_of(response, 400)
    assert '"quota"' in error["message"]
    response = await admin_client.get(f"/v1/projects/{project['id']}")
    assert (await response.json())["quota"] == "10/day"


def test_days_are_counted_in_utc() -> None:
    assert day_number(date(1970, 1, 2)) * DAY == 86_400
