"""The ``admin`` command as a user runs it: real subprocesses on the test database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest

from gateway.core.config import Settings
from gateway.core.store import Store
from gateway.core.tokens import generate, parse
from tests.conftest import ADMIN_AUTH
from tests.helpers import GatewayClient, free_port

MISSING = generate("tg").id


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def env(environ: dict[str, str], pg_pool: asyncpg.Pool) -> dict[str, str]:
    """The environment of a user's shell: the test database, cheap argon2 parameters."""
    base = {k: v for k, v in os.environ.items() if k not in environ and k != "ADMIN_TOKEN"}
    return {**base, **environ, "ARGON2_MEMORY_COST": "1024", "ARGON2_TIME_COST": "1"}


async def admin(env: dict[str, str], *args: str) -> Result:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "admin",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def ok(env: dict[str, str], *args: str) -> Result:
    result = await admin(env, *args)
    assert result.code == 0, result
    assert "Traceback" not in result.err
    return result


# ---------------------------------------------------------------- projects


async def test_projects_create_and_list(env: dict[str, str]) -> None:
    made = (await ok(env, "projects", "create", "--name", "Acme", "--json")).json()
    assert set(made) == {"id", "name", "rate_limit", "created_at"}
    assert made["name"] == "Acme" and made["rate_limit"] is None
    table = (
        await ok(env, "projects", "create", "--name", "Beta", "--rate-limit", "100/second")
    ).out
    assert table.splitlines()[0].split() == ["ID", "NAME", "RATE", "LIMIT", "CREATED"]
    assert "Beta" in table and "100/second" in table

    listed = (await ok(env, "projects", "list", "--json")).json()
    assert [p["name"] for p in listed["projects"]] == ["Beta", "Acme"]
    assert listed["projects"][1] == made
    table = (await ok(env, "projects", "list")).out
    lines = table.splitlines()
    assert len(lines) == 3 and made["id"] in lines[2] and "default" in lines[2]


async def test_an_empty_listing_says_so(env: dict[str, str]) -> None:
    assert (await ok(env, "projects", "list")).out.strip() == "no projects yet"
    assert (await ok(env, "projects", "list", "--json")).json() == {"projects": []}


async def test_control_characters_cannot_break_the_table(env: dict[str, str]) -> None:
    await ok(env, "projects", "create", "--name", "two\nlines")
    assert len((await ok(env, "projects", "list")).out.splitlines()) == 2


# ---------------------------------------------------------------- tokens


async def test_tokens_create_list_and_revoke(env: dict[str, str], pg_pool: asyncpg.Pool) -> None:
    project = (await ok(env, "projects", "create", "--name", "p", "--json")).json()
    pid = project["id"]
    made = await ok(
        env, "tokens", "create", "--project", pid, "--description", "CI", "--expires-in", "never"
    )
    raw = made.out.strip().splitlines()[-1].removeprefix("token: ")
    token = parse(raw, "tg")
    assert token is not None
    assert "only time" in made.err
    assert "CI" in made.out and "never" in made.out

    created = (await ok(env, "tokens", "create", "--project", pid, "--json")).json()
    assert parse(created["token"], "tg") is not None
    assert created["status"] == "active" and created["expires_at"] is not None
    hashes = await pg_pool.fetch("SELECT secret_hash FROM tokens")
    assert all(h["secret_hash"].startswith("$argon2id$") for h in hashes)

    listed = (await ok(env, "tokens", "list", "--project", pid, "--json")).json()
    assert [t["id"] for t in listed["tokens"]] == [created["id"], token.id]
    assert all("token" not in t for t in listed["tokens"])
    table = (await ok(env, "tokens", "list", "--project", pid)).out
    assert token.id in table and created["id"] in table
    assert token.secret not in table and created["token"] not in table

    revoked = await ok(env, "tokens", "revoke", "--project", pid, "--token", token.id)
    assert token.id in revoked.out
    listed = (await ok(env, "tokens", "list", "--project", pid, "--json")).json()
    assert [t["id"] for t in listed["tokens"]] == [created["id"]]
    again = await admin(env, "tokens", "revoke", "--project", pid, "--token", token.id, "--json")
    assert (again.code, again.out) == (1, "")
    assert again.err.strip() == "admin: token not found"


async def test_revoke_json_and_empty_token_list(env: dict[str, str]) -> None:
    pid = (await ok(env, "projects", "create", "--name", "p", "--json")).json()["id"]
    created = (await ok(env, "tokens", "create", "--project", pid, "--json")).json()
    revoked = await ok(
        env, "tokens", "revoke", "--project", pid, "--token", created["id"], "--json"
    )
    assert revoked.json() == {"id": created["id"], "project_id": pid, "revoked": True}
    assert (await ok(env, "tokens", "list", "--project", pid)).out.strip() == "no tokens yet"


async def test_revoking_from_the_cli_notifies_gateways(
    env: dict[str, str], database_url: str
) -> None:
    pid = (await ok(env, "projects", "create", "--name", "p", "--json")).json()["id"]
    token_id = (await ok(env, "tokens", "create", "--project", pid, "--json")).json()["id"]
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener(
            "tollgate_events", lambda *args: events.put_nowait(json.loads(args[3]))
        )
        await ok(env, "tokens", "revoke", "--project", pid, "--token", token_id)
        event = await asyncio.wait_for(events.get(), 10)
    finally:
        await listener.close()
    assert event["kind"] == "token_revoked" and event["token_id"] == token_id


# ---------------------------------------------------------------- webhooks


async def test_webhooks_create_list_test_deliveries_and_delete(
    env: dict[str, str], pg_pool: asyncpg.Pool
) -> None:
    pid = (await ok(env, "projects", "create", "--name", "p", "--json")).json()["id"]
    url = "http://127.0.0.1:9/hook"
    made = await ok(
        env, "webhooks", "create", "--project", pid, "--url", url, "--event", "token.revoked"
    )
    secret = made.out.strip().splitlines()[-1].removeprefix("secret: ")
    assert secret.startswith("whsec_") and "only time" in made.err
    stored = await pg_pool.fetchrow("SELECT id, events FROM webhooks")
    assert stored["events"] == ["token.revoked"]
    table = (await ok(env, "webhooks", "list", "--project", pid)).out
    assert stored["id"] in table and url in table and secret not in table
    one = ("--project", pid, "--webhook", stored["id"])
    event_id = (await ok(env, "webhooks", "test", *one, "--json")).json()["event_id"]
    (delivery,) = (await ok(env, "webhooks", "deliveries", *one, "--json")).json()["deliveries"]
    assert (delivery["event_id"], delivery["state"]) == (event_id, "pending")
    assert (await ok(env, "webhooks", "delete", *one)).out.startswith("deleted webhook")
    again = await admin(env, "webhooks", "delete", *one)
    assert (again.code, again.err.strip()) == (1, "admin: webhook not found")


async def test_the_cli_applies_the_webhook_url_rule(env: dict[str, str]) -> None:
    pid = (await ok(env, "projects", "create", "--name", "p", "--json")).json()["id"]
    strict = {**env, "WEBHOOK_ALLOW_PRIVATE": "false"}
    refused = await admin(
        strict, "webhooks", "create", "--project", pid, "--url", "http://10.0.0.1/"
    )
    assert refused.code == 2 and "not allowed" in refused.err and "Traceback" not in refused.err


async def test_settings_flags_are_accepted(env: dict[str, str], database_url: str) -> None:
    env = {**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing"}
    pid = (
        await ok(env, "projects", "create", "--name", "p", "--json", "--database-url", database_url)
    ).json()["id"]
    made = await ok(
        env,
        "tokens",
        "create",
        "--project",
        pid,
        "--json",
        f"--database-url={database_url}",
        "--token-prefix",
        "acme",
    )
    assert made.json()["token"].startswith("acme_")
    assert made.json()["masked"].startswith("acme_")


# ---------------------------------------------------------------- exit statuses


@pytest.mark.parametrize(
    "args",
    [
        ("tokens", "list", "--project", MISSING),
        ("tokens", "create", "--project", MISSING),
        ("tokens", "revoke", "--project", MISSING, "--token", MISSING),
        ("tokens", "list", "--project", "not an id"),
    ],
)
async def test_not_found_is_exit_1(env: dict[str, str], args: tuple[str, ...]) -> None:
    result = await admin(env, *args, "--json")
    assert (result.code, result.out) == (1, "")
    assert result.err.strip() == "admin: project not found"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "usage"),
        (("projects",), "usage"),
        (("projects", "create"), "--name"),
        (("projects", "create", "--name", ""), '"name"'),
        (("projects", "create", "--name", "p", "--rate-limit", "lots"), '"rate_limit"'),
        (("tokens", "create"), "--project"),
        (("tokens", "revoke", "--project", MISSING), "--token"),
        (("tokens", "create", "--project", "{pid}", "--expires-in", "7d"), '"expires_in"'),
        (("tokens", "create", "--project", "{pid}", "--description", "x" * 201), '"description"'),
        (("tokens", "rotate"), "invalid choice"),
        (("projects", "list", "--token-prefix", "NOT OK"), "TOKEN_PREFIX"),
        (("projects", "list", "--database-url", "mysql://x"), "DATABASE_URL"),
        (("projects", "list", "--database-url", "postgresql://u@127.0.0.1:1/x"), "DATABASE_URL"),
    ],
)
async def test_usage_and_configuration_mistakes_are_exit_2(
    env: dict[str, str], pg_pool: asyncpg.Pool, store: Store, args: tuple[str, ...], says: str
) -> None:
    pid = (await store.create_project("p", None)).id
    result = await admin(env, *(a.format(pid=pid) for a in args))
    assert result.code == 2, result
    assert says in result.err and "Traceback" not in result.err
    assert result.out == ""
    assert await pg_pool.fetchval("SELECT count(*) FROM tokens") == 0
    assert await pg_pool.fetchval("SELECT count(*) FROM projects") == 1


# ---------------------------------------------------------------- admin serve


async def test_serve_needs_an_admin_token(env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "ADMIN_TOKEN"}
    result = await admin(env, "serve", "--no-migrate")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "admin: ADMIN_TOKEN: is required (at least 32 characters)"
    ]


async def test_serve_answers_and_stops_cleanly_on_sigterm(
    env: dict[str, str], settings: Settings
) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "admin",
        "serve",
        "--admin-port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(headers=ADMIN_AUTH) as session:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with session.get(f"{url}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "admin serve did not come up"
                assert process.returncode is None, await process.stderr.read()  # type: ignore[union-attr]
                await asyncio.sleep(0.05)
            async with session.post(f"{url}/v1/projects", json={"name": "served"}) as response:
                assert response.status == 201
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err
    assert b"Traceback" not in err
    assert f"listening on http://127.0.0.1:{port}".encode() in err


async def test_a_cli_revoke_is_seen_by_a_running_gateway(
    env: dict[str, str], gateway_client: GatewayClient
) -> None:
    pid = (await ok(env, "projects", "create", "--name", "p", "--json")).json()["id"]
    made = (await ok(env, "tokens", "create", "--project", pid, "--json")).json()
    headers = {"Authorization": f"Bearer {made['token']}"}

    async def status() -> int:
        async with gateway_client.get("/anything", headers=headers) as response:
            return int(response.status)

    deadline = time.monotonic() + 10
    while not gateway_client.gateway.is_ready():  # LISTEN is up: no notification is missed
        assert time.monotonic() < deadline, "the gateway never became ready"
        await asyncio.sleep(0.02)
    assert await status() == 200  # proven and cached for TOKEN_CACHE_TTL (30 s)

    await ok(env, "tokens", "revoke", "--project", pid, "--token", made["id"])
    # Well inside the cache lifetime: only the notification can make this pass.
    deadline = time.monotonic() + 10
    while (code := await status()) != 401:
        assert code == 200
        assert time.monotonic() < deadline, "the gateway still accepts a revoked token"
        await asyncio.sleep(0.02)
