"""``admin usage`` and ``--quota`` from a shell: the real console script on a real Postgres."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import asyncpg

from gateway.core.store_usage import Batch, UsageStore
from gateway.core.tokens import generate
from tests.admin.test_cli import admin, env, ok

__all__ = ["env"]  # the fixture, shared

TODAY = datetime.now(UTC).date()


async def test_usage_prints_a_table_with_every_day_and_a_total(
    env: dict[str, str], pg_pool: asyncpg.Pool
) -> None:
    pid = (await ok(env, "projects", "create", "--name", "p", "--json")).json()["id"]
    token_id = generate("tg").id  # usage stays even for a token long revoked
    day = (TODAY - date(1970, 1, 1)).days
    await UsageStore(pg_pool).flush(
        [],
        [],
        [Batch({(token_id, pid, day): [12, 3, 4, 5], (token_id, pid, day - 1): [1, 0, 0, 0]}, {})],
    )
    start = (TODAY - timedelta(days=2)).isoformat()

    table = await ok(env, "usage", "--project", pid, "--from", start)
    lines = table.out.splitlines()
    assert lines[0].split() == ["DATE", "PROXIED", "UPSTREAM_ERRORS", "RATE_LIMITED", "FORBIDDEN"]
    assert lines[1].split() == [start, "0", "0", "0", "0"]
    assert lines[3].split() == [TODAY.isoformat(), "12", "3", "4", "5"]
    assert lines[4].split() == ["total", "13", "3", "4", "5"]

    by_token = await ok(env, "usage", "--project", pid, "--group-by", "token", "--csv")
    assert list(csv.reader(io.StringIO(by_token.out)))[1] == [token_id, "13", "3", "4", "5"]
    as_json = (await ok(env, "usage", "--project", pid, "--json")).json()
    assert as_json["totals"]["proxied"] == 13 and len(as_json["rows"]) == 30


async def test_usage_refuses_bad_input_in_one_line(env: dict[str, str]) -> None:
    pid = (await ok(env, "projects", "create", "--name", "p", "--json")).json()["id"]
    for args, says in [
        (("--from", "2026-13-01"), "admin: --from is not a calendar date"),
        (("--from", "2020-01-01", "--to", "2026-01-01"), "at most 400 days"),
        (("--from", "0001-01-01", "--to", "0001-01-02"), "admin: --to must be between"),
    ]:
        result = await admin(env, "usage", "--project", pid, *args)
        assert result.code == 2, result
        assert says in result.err and len(result.err.strip().splitlines()) == 1
    missing = await admin(env, "usage", "--project", generate("tg").id)
    assert missing.code == 1 and "project not found" in missing.err


async def test_projects_take_a_quota(env: dict[str, str]) -> None:
    made = (
        await ok(env, "projects", "create", "--name", "p", "--quota", "500/day", "--json")
    ).json()
    assert made["quota"] == "500/day"
    pid = made["id"]
    shown = await ok(env, "projects", "update", "--project", pid, "--quota", "9000/month")
    assert "9000/month" in shown.out
    cleared = await ok(env, "projects", "update", "--project", pid, "--quota", "none", "--json")
    assert cleared.json()["quota"] is None
    bad = await admin(env, "projects", "update", "--project", pid, "--quota", "5/week")
    assert bad.code == 2 and bad.err.startswith("admin: --quota must be")
