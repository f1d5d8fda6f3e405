"""The ``admin`` command as a user runs it: real subprocesses on the test database."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from admin import cli
from admin.cli import build_parser
from gateway.core.clikit import flag_name
from gateway.core.config import Settings, settings_fields
from gateway.core.journal import CLI
from gateway.core.store import Store
from gateway.core.tokens import parse
from tests.conftest import ADMIN_AUTH
from tests.helpers import CHEAP_HASHER, MISSING_ID, GatewayClient, free_port, issue

MISSING = MISSING_ID


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
    """``admin ARGS`` in this process, as ``python -m admin`` runs it but for the
    interpreter's start (which, under coverage, costs most of a call's time). The tests of
    what only a process shows (its logging, its working directory, signals) and one of the
    whole round use :func:`admin_process`."""
    return await asyncio.to_thread(_in_process, env, args)


def _in_process(env: dict[str, str], args: tuple[str, ...]) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(args, env)
        except SystemExit as exit:  # argparse's usage errors
            code = exit.code if isinstance(exit.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


async def admin_process(env: dict[str, str], *args: str, cwd: Path | None = None) -> Result:
    """``python -m admin ARGS``: a real process, as a user runs it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "admin",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def ok(env: dict[str, str], *args: str, process: bool = False) -> Result:
    result = await (admin_process if process else admin)(env, *args)
    assert result.code == 0, result
    assert "Traceback" not in result.err
    return result


# ---------------------------------------------------------------- projects


async def test_projects_create_and_list(env: dict[str, str]) -> None:
    made = (await ok(env, "projects", "create", "--name", "Acme", "--json", process=True)).json()
    assert set(made) == {"id", "name", "rate_limit", "quota", "created_at"}
    assert made["name"] == "Acme" and made["rate_limit"] is None
    table = (
        await ok(env, "projects", "create", "--name", "Beta", "--rate-limit", "100/second")
    ).out
    assert table.splitlines()[0].split() == ["ID", "NAME", "RATE", "LIMIT", "QUOTA", "CREATED"]
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


async def test_tokens_with_scopes_rotated_and_filtered(
    env: dict[str, str], pg_pool: asyncpg.Pool
) -> None:
    pid = (await ok(env, "projects", "create", "--name", "p", "--json")).json()["id"]
    args = ["--scope", "get /v1/validate", "--scope", "* /v1/status", "--allowed-ip", "::1/128"]
    made = (await ok(env, "tokens", "create", "--project", pid, *args, "--json")).json()
    assert made["scopes"] == ["GET /v1/validate", "* /v1/status"]
    assert made["allowed_ips"] == ["::1"]
    table = (await ok(env, "tokens", "show", "--project", pid, "--token", made["id"])).out
    assert "GET /v1/validate, * /v1/status" in table and "::1" in table

    rotated = await ok(
        env, "tokens", "rotate", "--project", pid, "--token", made["id"], "--grace", "2h"
    )
    raw = rotated.out.strip().splitlines()[-1].removeprefix("token: ")
    successor = parse(raw, "tg")
    assert successor is not None and "only time" in rotated.err
    assert f"replaced by {successor.id}" in rotated.out and "rotating until" in rotated.out
    again = await admin(env, "tokens", "rotate", "--project", pid, "--token", made["id"])
    assert again.code == 1 and "rotated already" in again.err and "Traceback" not in again.err

    expiring = (
        await ok(env, "tokens", "list", "--project", pid, "--status", "expiring", "--json")
    ).json()
    assert [t["id"] for t in expiring["tokens"]] == [made["id"]]
    within = ("--status", "expiring", "--within", "1h", "--json")
    assert (await ok(env, "tokens", "list", "--project", pid, *within)).json()["tokens"] == []
    audit = await pg_pool.fetchval(
        "SELECT actor_type FROM audit_events WHERE action = 'token.rotated' AND target_id = $1",
        made["id"],
    )
    assert audit == "cli"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("create", "--scope", "GET"), "admin: --scope must be a method (or *) and a path prefix"),
        (("create", "--allowed-ip", "10.0.0.1/8"), "host bits set: the block is 10.0.0.0/8"),
        (("rotate", "--token", "{tid}", "--grace", "8d"), "admin: --grace must be at most 7d"),
        (("list", "--status", "soon"), "admin: --status must be one of active, expired, expiring"),
    ],
)
async def test_bad_capabilities_are_exit_2(
    env: dict[str, str], store: Store, args: tuple[str, ...], says: str
) -> None:
    issued = await issue(store, hasher=CHEAP_HASHER)
    argv = [a.format(tid=issued.token_id) for a in args]
    result = await admin(env, "tokens", argv[0], "--project", issued.project_id, *argv[1:])
    assert result.code == 2, result
    assert says in result.err and "Traceback" not in result.err


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
    # Each change is audited with the actor cli; the refused revoke left nothing.
    audited = await pg_pool.fetch(
        "SELECT actor_type, action, target_id FROM audit_events WHERE project_id = $1 ORDER BY id",
        pid,
    )
    assert [tuple(row) for row in audited] == [
        ("cli", "project.created", pid),
        ("cli", "token.created", token.id),
        ("cli", "token.created", created["id"]),
        ("cli", "token.revoked", token.id),
    ]


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


async def test_projects_update_renames_and_sets_the_limit(
    env: dict[str, str], database_url: str
) -> None:
    pid = (await ok(env, "projects", "create", "--name", "old", "--json")).json()["id"]
    renamed = await ok(env, "projects", "update", "--project", pid, "--name", "new", "--json")
    assert renamed.json()["name"] == "new" and renamed.json()["rate_limit"] is None
    # A new limit reaches running gateways at once, as one set through the API does.
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener(
            "tollgate_events", lambda *args: events.put_nowait(json.loads(args[3]))
        )
        limited = await ok(env, "projects", "update", "--project", pid, "--rate-limit", "10/sec")
        event = await asyncio.wait_for(events.get(), 10)
    finally:
        await listener.close()
    assert event["kind"] == "project_updated" and event["project_id"] == pid
    assert "new" in limited.out and "10/second" in limited.out
    both = (
        await ok(env, "projects", "update", "--project", pid, "--rate-limit", "default", "--json")
    ).json()
    assert both["rate_limit"] is None and both["name"] == "new"
    listed = (await ok(env, "projects", "list", "--json")).json()["projects"]
    assert listed == [both]


async def test_projects_delete_takes_the_tokens_along(
    env: dict[str, str], pg_pool: asyncpg.Pool
) -> None:
    pid = (await ok(env, "projects", "create", "--name", "p", "--json")).json()["id"]
    await ok(env, "tokens", "create", "--project", pid)
    deleted = await ok(env, "projects", "delete", "--project", pid)
    assert pid in deleted.out and "stop working" in deleted.out
    assert await pg_pool.fetchval("SELECT count(*) FROM tokens") == 0
    assert (await ok(env, "projects", "list", "--json")).json() == {"projects": []}
    again = await admin(env, "projects", "delete", "--project", pid, "--json")
    assert (again.code, again.out, again.err.strip()) == (1, "", "admin: project not found")


async def test_tokens_show_gives_one_token_masked(env: dict[str, str]) -> None:
    pid = (await ok(env, "projects", "create", "--name", "p", "--json")).json()["id"]
    made = (await ok(env, "tokens", "create", "--project", pid, "--json")).json()
    shown = (
        await ok(env, "tokens", "show", "--project", pid, "--token", made["id"], "--json")
    ).json()
    assert (
        shown == (await ok(env, "tokens", "list", "--project", pid, "--json")).json()["tokens"][0]
    )
    assert "token" not in shown and shown["masked"].startswith("tg_")
    table = (await ok(env, "tokens", "show", "--project", pid, "--token", made["id"])).out
    assert made["id"] in table and made["token"] not in table
    gone = await admin(env, "tokens", "show", "--project", pid, "--token", MISSING)
    assert (gone.code, gone.err.strip()) == (1, "admin: token not found")


# ---------------------------------------------------------------- admin keys


async def test_keys_create_list_show_and_revoke(env: dict[str, str], pg_pool: asyncpg.Pool) -> None:
    pid = (await ok(env, "projects", "create", "--name", "p", "--json")).json()["id"]
    made = await ok(env, "keys", "create", "--name", "ops", "--role", "viewer", "--project", pid)
    raw = made.out.strip().splitlines()[-1].removeprefix("key: ")
    assert parse(raw, "tgadm") is not None and "only time" in made.err
    key_id = raw.split("_")[1]
    assert "viewer" in made.out and pid in made.out
    admin_key = (
        await ok(env, "keys", "create", "--name", "root", "--role", "admin", "--json")
    ).json()
    assert admin_key["project_id"] is None and admin_key["key"].startswith("tgadm_")
    listed = (await ok(env, "keys", "list", "--json")).json()["admin_keys"]
    assert [k["id"] for k in listed][:2] == [admin_key["id"], key_id]
    assert all("key" not in k for k in listed)
    table = (await ok(env, "keys", "list")).out
    assert key_id in table and raw not in table and "all" in table
    shown = (await ok(env, "keys", "show", "--key", key_id, "--json")).json()
    assert shown["name"] == "ops" and shown["role"] == "viewer"
    revoked = await ok(env, "keys", "revoke", "--key", key_id)
    assert key_id in revoked.out
    again = await admin(env, "keys", "revoke", "--key", key_id)
    assert (again.code, again.err.strip()) == (1, "admin: admin key not found")
    bad = await admin(env, "keys", "create", "--name", "x", "--role", "manager")
    assert bad.code == 2 and bad.err.strip() == "admin: --project is required for the manager role"
    audited = await pg_pool.fetch(
        "SELECT actor_type, action FROM audit_events WHERE target_id = $1 ORDER BY id", key_id
    )
    assert [tuple(r) for r in audited] == [
        ("cli", "admin_key.created"),
        ("cli", "admin_key.revoked"),
    ]


def all_commands() -> dict[str, argparse.ArgumentParser]:
    """Every command of ``admin``, by name (``serve``, ``projects create`` ...)."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}".strip())
        if parser.get_default("command") is not None:
            found[path] = parser

    walk(build_parser(), "")
    return found


def test_data_commands_list_only_their_own_flags() -> None:
    commands = all_commands()
    serve = commands.pop("serve")
    assert {"projects update", "projects delete", "tokens show"} <= commands.keys()
    every_setting = {flag_name(field.metadata["env"]) for field in settings_fields()}
    for name, parser in commands.items():
        # What --help shows under "settings": the flags standing for settings.
        text = parser.format_help().split("\nsettings (", 1)[1].split("\n\n", 1)[0]
        listed = set(re.findall(r"^  (--[a-z0-9-]+)", text, re.MULTILINE))
        assert listed <= every_setting
        assert {"--database-url", "--gateway-data-dir"} <= listed, name
        # Beyond the database, only what the command uses: the token prefix (masked ids)
        # and, to issue one, the argon2 parameters.
        extra = listed - {"--database-url", "--gateway-data-dir"}
        allowed = {"--token-prefix"} if name.startswith(("tokens", "keys")) else set()
        if name in ("tokens create", "tokens rotate", "keys create"):
            allowed |= {"--argon2-time-cost", "--argon2-memory-cost", "--argon2-parallelism"}
        if name == "webhooks create":  # whether a private address may receive events
            allowed |= {"--webhook-allow-private"}
        assert extra <= allowed, f"{name} lists {extra - allowed}"
    # serve still takes every setting.
    assert "--upstream-url" in serve.format_help() and "--admin-port" in serve.format_help()


async def test_a_normal_call_logs_nothing(env: dict[str, str]) -> None:
    made = await ok(env, "projects", "create", "--name", "quiet", process=True)
    assert made.err == ""
    listed = await ok(env, "projects", "list", process=True)
    assert listed.err == ""


async def test_no_database_here_is_refused_and_none_is_created() -> None:
    """No DATABASE_URL and no embedded database in this directory: one line saying so,
    exit 2, and no new empty database to answer "no projects yet" from. Once one exists
    (`gateway migrate` made it) the same call works, logging nothing."""
    workdir = Path(tempfile.mkdtemp(prefix="tollgate-cli-"))  # see test_up's data_dir
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "GATEWAY_"))}
    try:
        refused = await admin_process(clean, "projects", "list", cwd=workdir)
        assert refused.code == 2 and refused.out == ""
        [line] = refused.err.strip().splitlines()
        assert line.startswith(f"admin: DATABASE_URL: is not set and {workdir}/.data holds no")
        assert "gateway up" in line and "gateway migrate" in line
        assert not (workdir / ".data").exists()

        migrate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "migrate", cwd=workdir, env=clean
        )
        assert await asyncio.wait_for(migrate.wait(), 120) == 0
        listed = await admin_process(clean, "projects", "list", cwd=workdir)
        assert (listed.code, listed.out.strip(), listed.err) == (0, "no projects yet", "")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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


# A refused value is named by the flag it came from, in the CLI's words (no JSON null).
RATE_LIMIT_SAID = (
    "admin: --rate-limit must be a number of requests per second, minute or hour, such as"
    " 600/minute or 10/sec (1 <= N < 10^9)\n"
)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "required: {serve,projects,tokens,webhooks,keys,usage}"),
        (("projects",), "admin projects: the following arguments are required: {create,"),
        (("keys",), "required: {create,list,show,revoke}"),
        (("projects", "create"), "--name"),
        (("projects", "create", "--name", ""), "admin: --name must be 1 to 200 characters long"),
        (("projects", "create", "--name", "p", "--rate-limit", "lots"), RATE_LIMIT_SAID),
        (("projects", "create", "--name", "p", "--quota", "5/week"), "admin: --quota must be a"),
        (("tokens", "create"), "--project"),
        (("tokens", "revoke", "--project", MISSING), "--token"),
        (
            ("tokens", "create", "--project", "{pid}", "--expires-in", "7d"),
            "admin: --expires-in must",
        ),
        (
            ("tokens", "create", "--project", "{pid}", "--description", "x" * 201),
            "admin: --description must",
        ),
        (("tokens", "expire"), "invalid choice"),
        (("tokens", "list", "--project", "{pid}", "--token-prefix", "NOT OK"), "TOKEN_PREFIX"),
        (("projects", "list", "--token-prefix", "tg"), "unrecognized arguments"),
        (("projects", "update", "--project", "{pid}"), "nothing to change"),
        (("projects", "update", "--project", "{pid}", "--name", " "), "--name must not be"),
        (("projects", "update", "--project", "{pid}", "--rate-limit", "lots"), RATE_LIMIT_SAID),
        (("tokens", "show", "--project", "{pid}"), "--token"),
        (("projects", "list", "--database-url", "mysql://x"), "DATABASE_URL"),
        (("projects", "list", "--database-url", "postgresql://u@127.0.0.1:1/x"), "DATABASE_URL"),
    ],
)
async def test_usage_and_configuration_mistakes_are_exit_2(
    env: dict[str, str], pg_pool: asyncpg.Pool, store: Store, args: tuple[str, ...], says: str
) -> None:
    pid = (await store.create_project("p", None, actor=CLI)).id
    result = await admin(env, *(a.format(pid=pid) for a in args))
    assert result.code == 2, result
    assert says in result.err and len(result.err.strip().splitlines()) == 1
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


async def test_serve_on_a_taken_port_is_one_line_and_exit_2(env: dict[str, str]) -> None:
    # Checked before the app starts: no pool or background work to stop half-started.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await admin_process(env, "serve", "--admin-port", str(port))
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        f"admin: ADMIN_PORT: cannot listen on 127.0.0.1:{port}: Address already in use"
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
