"""The ``admin`` command: ``serve`` the admin API, or manage projects, tokens and webhooks
from a shell.

The project, token, webhook and admin key commands ("data commands", all built by
:func:`_data_command`) work straight on the database through the same use cases as the
HTTP API, so a revoke here reaches every gateway exactly as one made over HTTP. Output is
a readable table, or the API's JSON with ``--json``. Errors go to stderr: exit status 1
when something is not found, 2 for usage and configuration.

A data command takes the database settings as flags (the others it reads from the
environment, like every command), logs nothing but warnings, and never creates a
database: run where no ``DATABASE_URL`` is set and no embedded one exists, it stops
with a hint instead of answering from a new, empty one.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import asyncpg

from gateway.core import capabilities, db, embedded, migrate
from gateway.core.clikit import (
    Command,
    Parser,
    add_settings_flags,
    commands_of,
    quiet,
    run,
    subcommand,
)
from gateway.core.config import ConfigError, Settings
from gateway.core.errors import BadRequest, TollgateError
from gateway.core.journal import CLI
from gateway.core.store import Project, Store, TokenInfo
from gateway.core.store_keys import AdminKey, KeyStore
from gateway.core.store_usage import COLUMNS, UsageStore
from gateway.core.store_webhooks import Webhook, WebhookStore
from gateway.core.tokens import Hasher

from . import admin_keys, projects, schemas, serve, tokens, usage, webhooks
from .credentials import key_prefix
from .fields import FieldError
from .ssrf import Guard
from .views import (
    admin_key_view,
    delivery_list_view,
    delivery_view,
    new_admin_key_view,
    new_token_view,
    new_webhook_view,
    project_list_view,
    project_view,
    token_view,
    usage_csv,
    usage_view,
    webhook_list_view,
    webhook_view,
)
from .webhooks import EVENT_CHOICES

T = TypeVar("T")

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2

# The flag each checked API field comes from, so a refusal names what the user typed.
FLAGS: Final = {
    "allowed_ips": "--allowed-ip",
    "description": "--description",
    "events": "--event",
    "expires_in": "--expires-in",
    "from": "--from",
    "grace": "--grace",
    "group_by": "--group-by",
    "limit": "--limit",
    "name": "--name",
    "project_id": "--project",
    "quota": "--quota",
    "rate_limit": "--rate-limit",
    "role": "--role",
    "scopes": "--scope",
    "status": "--status",
    "to": "--to",
    "token_id": "--token",
    "url": "--url",
    "within": "--within",
}

# The settings every data command takes as flags: where the database is. A command
# adds those it uses besides (``uses``); it reads the others from the environment.
DATABASE_SETTINGS: Final = ("DATABASE_URL", "GATEWAY_DATA_DIR")
SHOWS_TOKENS: Final = ("TOKEN_PREFIX",)  # the masked form starts with the prefix
ISSUES_TOKENS: Final = (
    *SHOWS_TOKENS,
    "ARGON2_TIME_COST",
    "ARGON2_MEMORY_COST",
    "ARGON2_PARALLELISM",
)
_EPILOG: Final = (
    "Every other setting is read from its environment variable. Without DATABASE_URL the"
    " command uses the embedded Postgres in GATEWAY_DATA_DIR (./.data), the one `gateway"
    " up` started in the same directory; it never creates one."
)


# ---------------------------------------------------------------- running a use case


def _existing_database(settings: Settings) -> str:
    """The database's URL; a ConfigError, not a new empty database, when there is none."""
    if settings.database_url is None and not embedded.exists(settings.data_dir):
        where = settings.data_dir.expanduser().resolve()
        raise ConfigError(
            "DATABASE_URL",
            f"is not set and {where} holds no embedded database: run this where `gateway"
            " up` runs, or set DATABASE_URL (or GATEWAY_DATA_DIR); `gateway migrate`"
            " creates an empty one",
        )
    return db.database_url(settings)


async def _on_database(settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    url = _existing_database(settings)
    # Idempotent and cheap when up to date; it lets the CLI bootstrap a fresh database.
    await migrate.apply(dataclasses.replace(settings, database_url=url))
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        return await work(pool)
    finally:
        await pool.close()


def _run_on_database(settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[int]]) -> int:
    """Run ``work`` on the database; use-case errors become exit statuses."""
    try:
        return asyncio.run(_on_database(settings, work))
    except TollgateError as err:
        print(f"admin: {said(err)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(err, BadRequest) else EXIT_NOT_FOUND


def said(err: TollgateError) -> str:
    """The one line for ``err``: a refused field named by its flag, not its API name."""
    if isinstance(err, FieldError) and err.field in FLAGS:
        return f"{FLAGS[err.field]} {err.problem}"
    return err.message


def _use_case(work: Callable[[Settings, argparse.Namespace, Store], Awaitable[int]]) -> Command:
    """A command running ``work`` on the database's projects and tokens."""

    def command(settings: Settings, args: argparse.Namespace) -> int:
        return _run_on_database(settings, lambda pool: work(settings, args, Store(pool)))

    return command


WebhookWork = Callable[[Settings, argparse.Namespace, Store, WebhookStore], Awaitable[int]]


def _webhook_case(work: WebhookWork) -> Command:
    """A command running ``work`` on the database's projects and webhooks."""

    def command(settings: Settings, args: argparse.Namespace) -> int:
        return _run_on_database(
            settings, lambda pool: work(settings, args, Store(pool), WebhookStore(pool))
        )

    return command


# ---------------------------------------------------------------- output


def _clean(value: object) -> str:
    """A table cell: control characters (a newline in a name) must not break the layout."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else " " for c in text)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(headers)] + [[_clean(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _project_rows(found: Sequence[Project]) -> str:
    rows = [
        (v["id"], v["name"], v["rate_limit"] or "default", v["quota"] or "none", v["created_at"])
        for v in map(project_view, found)
    ]
    return _table(("ID", "NAME", "RATE LIMIT", "QUOTA", "CREATED"), rows)


def _token_status(view: dict[str, Any]) -> str:
    if view["replaced_by"] and view["status"] == "active":
        return f"rotating until {view['expires_at']}, replaced by {view['replaced_by']}"
    return str(view["status"])


def _token_rows(found: Sequence[TokenInfo], prefix: str) -> str:
    rows = [
        (
            v["id"],
            _token_status(v),
            v["description"],
            v["created_at"],
            v["expires_at"] or "never",
            v["last_used_at"] or "never",
            ", ".join(v["scopes"]) or "all",
            ", ".join(v["allowed_ips"]) or "any",
        )
        for v in (token_view(info, prefix) for info in found)
    ]
    headers = ("ID", "STATUS", "DESCRIPTION", "CREATED", "EXPIRES", "LAST USED", "SCOPES", "FROM")
    return _table(headers, rows)


# ---------------------------------------------------------------- commands


async def _projects_create(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    given = schemas.PROJECT_CREATE.check(
        {"name": args.name, "rate_limit": args.project_rate_limit, "quota": args.quota}
    )
    project = await projects.create(store, **given, actor=CLI)
    if args.json:
        _print_json(project_view(project))
    else:
        print(_project_rows([project]))
    return 0


async def _projects_list(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    found = await projects.list_all(store)
    if args.json:
        _print_json(project_list_view(found))
    else:
        print(_project_rows(found) if found else "no projects yet")
    return 0


async def _projects_update(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    body: dict[str, Any] = {}
    if args.name is not None:
        body["name"] = args.name
    if args.project_rate_limit is not None:
        default = args.project_rate_limit == "default"
        body["rate_limit"] = None if default else args.project_rate_limit
    if args.quota is not None:
        body["quota"] = None if args.quota == "none" else args.quota
    if not body:
        raise BadRequest("nothing to change: give --name, --rate-limit or --quota")
    project = await projects.update(
        store, args.project, **schemas.PROJECT_UPDATE.check(body), actor=CLI
    )
    if args.json:
        _print_json(project_view(project))
    else:
        print(_project_rows([project]))
    return 0


async def _projects_delete(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    await projects.delete(store, args.project, actor=CLI)
    if args.json:
        _print_json({"id": args.project, "deleted": True})
    else:
        print(f"deleted project {args.project}; its tokens stop working on every gateway now")
    return 0


async def _tokens_create(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    given = schemas.TOKEN_CREATE.check(
        {
            "description": args.description,
            "expires_in": args.expires_in,
            "scopes": args.scope or [],
            "allowed_ips": args.allowed_ip or [],
        }
    )
    prefix = settings.token_prefix
    issued = await tokens.issue(
        store, Hasher.from_settings(settings), prefix, args.project, **given, actor=CLI
    )
    if args.json:
        _print_json(new_token_view(issued, prefix))
    else:
        print(_token_rows([issued.info], prefix))
        print(f"\ntoken: {issued.token}")
        print("This is the only time the token is shown: store it now.", file=sys.stderr)
    return 0


async def _tokens_rotate(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    given = schemas.TOKEN_ROTATE.check({"grace": args.grace})
    prefix = settings.token_prefix
    issued = await tokens.rotate(
        store, Hasher.from_settings(settings), prefix, args.project, args.token, actor=CLI, **given
    )
    if args.json:
        _print_json(new_token_view(issued, prefix))
    else:
        old = await tokens.get(store, args.project, args.token)
        print(_token_rows([issued.info, old], prefix))
        print(f"\ntoken: {issued.token}")
        print("This is the only time the token is shown: store it now.", file=sys.stderr)
    return 0


async def _tokens_list(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    query = {"status": args.status, "within": args.within}
    given = schemas.TOKEN_PAGE.check({k: v for k, v in query.items() if v is not None})
    found = await tokens.list_all(
        store, args.project, status=given["status"], within=given["within"]
    )
    if args.json:
        _print_json({"tokens": [token_view(t, settings.token_prefix) for t in found]})
    else:
        print(_token_rows(found, settings.token_prefix) if found else "no tokens yet")
    return 0


async def _tokens_show(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    info = await tokens.get(store, args.project, args.token)
    if args.json:
        _print_json(token_view(info, settings.token_prefix))
    else:
        print(_token_rows([info], settings.token_prefix))
    return 0


async def _tokens_revoke(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    await tokens.revoke(store, args.project, args.token, actor=CLI)
    if args.json:
        _print_json({"id": args.token, "project_id": args.project, "revoked": True})
    else:
        print(f"revoked token {args.token}; it stops working on every gateway now")
    return 0


async def _usage(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    flags = {
        "from": getattr(args, "from"),
        "to": args.to,
        "token_id": args.token,
        "group_by": args.group_by,
    }
    # Only the flags given: an empty value is checked (and refused) like any other.
    given = schemas.USAGE_QUERY.check({k: v for k, v in flags.items() if v is not None})
    start, end = usage.span(given["from"], given["to"])
    report = await usage.report(
        store,
        UsageStore(store.pool),
        args.project,
        start=start,
        end=end,
        token_id=given["token_id"],
        group_by=given["group_by"],
    )
    if args.json:
        _print_json(usage_view(report))
    elif args.csv:
        print(usage_csv(report), end="")
    else:
        headers = ("DATE" if report.group_by == "day" else "TOKEN", *map(str.upper, COLUMNS))
        rows = [(str(row.key), *row.counts().values()) for row in report.rows]
        rows.append(("total", *report.totals().values()))
        print(_table(headers, rows))
    return 0


def _webhook_rows(found: Sequence[Webhook]) -> str:
    rows = [
        (v["id"], v["url"], ",".join(v["events"]) or "all", v["created_at"])
        for v in map(webhook_view, found)
    ]
    return _table(("ID", "URL", "EVENTS", "CREATED"), rows)


async def _webhooks_create(
    settings: Settings, args: argparse.Namespace, store: Store, hooks: WebhookStore
) -> int:
    given = schemas.WEBHOOK_CREATE.check({"url": args.url, "events": args.event or []})
    guard = Guard(allow_private=settings.webhook_allow_private)
    created = await webhooks.create(store, hooks, guard, args.project, actor=CLI, **given)
    if args.json:
        _print_json(new_webhook_view(created))
    else:
        print(_webhook_rows([created.webhook]))
        print(f"\nsecret: {created.secret}")
        print("This is the only time the secret is shown: store it now.", file=sys.stderr)
    return 0


async def _webhooks_list(
    settings: Settings, args: argparse.Namespace, store: Store, hooks: WebhookStore
) -> int:
    found = await webhooks.list_all(store, hooks, args.project)
    if args.json:
        _print_json(webhook_list_view(found))
    else:
        print(_webhook_rows(found) if found else "no webhooks yet")
    return 0


async def _webhooks_delete(
    settings: Settings, args: argparse.Namespace, store: Store, hooks: WebhookStore
) -> int:
    await webhooks.delete(store, hooks, args.project, args.webhook, actor=CLI)
    if args.json:
        _print_json({"id": args.webhook, "project_id": args.project, "deleted": True})
    else:
        print(f"deleted webhook {args.webhook}")
    return 0


async def _webhooks_test(
    settings: Settings, args: argparse.Namespace, store: Store, hooks: WebhookStore
) -> int:
    event_id = await webhooks.send_test(store, hooks, args.project, args.webhook)
    if args.json:
        _print_json({"event_id": event_id})
    else:
        print(f"queued webhook.test event {event_id}; a running admin API delivers it")
    return 0


async def _webhooks_deliveries(
    settings: Settings, args: argparse.Namespace, store: Store, hooks: WebhookStore
) -> int:
    given = schemas.DELIVERY_PAGE.check({"limit": args.limit})
    found = await webhooks.deliveries(store, hooks, args.project, args.webhook, **given)
    if args.json:
        _print_json(delivery_list_view(found))
        return 0
    rows = [
        (
            v["event_id"],
            v["type"],
            v["state"],
            v["attempt"],
            v["status_code"] or v["error"] or "",
            "" if v["duration_ms"] is None else f"{v['duration_ms']:.0f} ms",
            v["next_attempt_at"] or "",
        )
        for v in map(delivery_view, found)
    ]
    headers = ("EVENT", "TYPE", "STATE", "ATTEMPT", "RESULT", "DURATION", "NEXT ATTEMPT")
    print(_table(headers, rows) if rows else "no deliveries yet")
    return 0


def _key_rows(found: Sequence[AdminKey], prefix: str) -> str:
    rows = [
        (
            v["id"],
            v["name"],
            v["role"],
            v["project_id"] or "all",
            v["status"],
            v["expires_at"] or "never",
            v["last_used_at"] or "never",
        )
        for v in (admin_key_view(key, prefix) for key in found)
    ]
    headers = ("ID", "NAME", "ROLE", "PROJECT", "STATUS", "EXPIRES", "LAST USED")
    return _table(headers, rows)


def _keys(store: Store) -> KeyStore:
    return KeyStore(store.pool)


async def _keys_create(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    body = {"name": args.name, "role": args.role, "expires_in": args.expires_in}
    if args.project is not None:
        body["project_id"] = args.project
    given = schemas.ADMIN_KEY_CREATE.check(body)
    prefix = key_prefix(settings.token_prefix)
    hasher = Hasher.from_settings(settings)
    issued = await admin_keys.issue(_keys(store), store, hasher, prefix, **given, actor=CLI)
    if args.json:
        _print_json(new_admin_key_view(issued, prefix))
    else:
        print(_key_rows([issued.key], prefix))
        print(f"\nkey: {issued.raw}")
        print("This is the only time the key is shown: store it now.", file=sys.stderr)
    return 0


async def _keys_list(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    found = await admin_keys.list_all(_keys(store))
    prefix = key_prefix(settings.token_prefix)
    if args.json:
        _print_json({"admin_keys": [admin_key_view(key, prefix) for key in found]})
    else:
        print(_key_rows(found, prefix) if found else "no admin keys yet")
    return 0


async def _keys_show(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    key = await admin_keys.get(_keys(store), args.key)
    prefix = key_prefix(settings.token_prefix)
    if args.json:
        _print_json(admin_key_view(key, prefix))
    else:
        print(_key_rows([key], prefix))
    return 0


async def _keys_revoke(settings: Settings, args: argparse.Namespace, store: Store) -> int:
    await admin_keys.revoke(_keys(store), args.key, actor=CLI)
    if args.json:
        _print_json({"id": args.key, "revoked": True})
    else:
        print(f"revoked admin key {args.key}; every admin instance refuses it now")
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    return serve.serve(settings, migrate=not args.no_migrate)


# ---------------------------------------------------------------- the parser


def _data_command(
    subparsers: Any,
    name: str,
    work: Callable[..., Awaitable[int]],
    help: str,
    *,
    uses: tuple[str, ...] = (),
) -> argparse.ArgumentParser:
    """The one place a data command is made: the database settings and those it ``uses``
    as flags, ``--json``, quiet logs; the caller adds the command's own flags."""
    sub: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=help, epilog=_EPILOG
    )
    add_settings_flags(sub, only=DATABASE_SETTINGS + uses)
    sub.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    quiet(sub)
    sub.set_defaults(command=_use_case(work))
    return sub


def _webhook_command(
    subparsers: Any,
    name: str,
    work: WebhookWork,
    help: str,
    *,
    one: bool = True,
    uses: tuple[str, ...] = (),
) -> argparse.ArgumentParser:
    """A webhooks command: ``--project``, and ``--webhook`` when it is about ``one``."""
    sub = _data_command(subparsers, name, work, help, uses=uses)
    sub.set_defaults(command=_webhook_case(work))
    _project_flag(sub)
    if one:
        sub.add_argument("--webhook", required=True, metavar="WEBHOOK_ID")
    return sub


def _group(subparsers: Any, name: str, help: str) -> Any:
    return commands_of(subparsers.add_parser(name, help=help, description=help))


def _project_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument("--project", required=True, metavar="PROJECT_ID")


def _token_flags(command: argparse.ArgumentParser) -> None:
    _project_flag(command)
    command.add_argument("--token", required=True, metavar="TOKEN_ID")


def _project_commands(commands: Any) -> None:
    group = _group(commands, "projects", "create, list, change and delete projects")
    create = _data_command(group, "create", _projects_create, "create a project")
    create.add_argument("--name", required=True, help=f"1-{projects.NAME_MAX} characters")
    create.add_argument(
        "--rate-limit",
        dest="project_rate_limit",
        metavar="N/UNIT",
        help="the project's limit per token, e.g. 100/second (default: the gateway's RATE_LIMIT)",
    )
    create.add_argument(
        "--quota", metavar="N/day|N/month", help="requests per UTC day or month (default: none)"
    )
    _data_command(group, "list", _projects_list, "list projects, newest first")
    update = _data_command(
        group, "update", _projects_update, "rename a project or change its rate limit"
    )
    _project_flag(update)
    update.add_argument("--name", help=f"the new name, 1-{projects.NAME_MAX} characters")
    update.add_argument(
        "--rate-limit",
        dest="project_rate_limit",
        metavar="N/UNIT|default",
        help="the new limit per token, e.g. 100/second; `default`: the gateway's RATE_LIMIT"
        " (every gateway applies it at once)",
    )
    update.add_argument(
        "--quota",
        metavar="N/day|N/month|none",
        help="the project's requests per UTC day or month; `none`: no quota (units already"
        " used in the period still count)",
    )
    delete = _data_command(
        group, "delete", _projects_delete, "delete a project and its tokens (at once, everywhere)"
    )
    _project_flag(delete)


def _token_commands(commands: Any) -> None:
    group = _group(commands, "tokens", "issue, show, list, rotate and revoke a project's tokens")
    create = _data_command(
        group, "create", _tokens_create, "issue a token (shown once)", uses=ISSUES_TOKENS
    )
    _project_flag(create)
    create.add_argument(
        "--expires-in",
        default=tokens.DEFAULT_PRESET,
        metavar="PRESET",
        help=f"one of {', '.join(tokens.PRESETS)} (default {tokens.DEFAULT_PRESET})",
    )
    create.add_argument(
        "--description", default="", help=f"up to {tokens.DESCRIPTION_MAX} characters"
    )
    create.add_argument(
        "--scope",
        action="append",
        metavar="'METHOD /PREFIX'",
        help="what the token may call, e.g. 'GET /v1/validate' or '* /v1/status' (repeat it,"
        f" at most {capabilities.SCOPES_MAX}; default: everything)",
    )
    create.add_argument(
        "--allowed-ip",
        action="append",
        metavar="ADDRESS|CIDR",
        help="an address or block the token may be used from (repeat it, at most"
        f" {capabilities.ALLOWED_IPS_MAX}; default: any)",
    )
    rotate = _data_command(
        group,
        "rotate",
        _tokens_rotate,
        "issue a token's successor (shown once); the old one works until the grace ends",
        uses=ISSUES_TOKENS,
    )
    _token_flags(rotate)
    rotate.add_argument(
        "--grace",
        default=tokens.DEFAULT_GRACE,
        metavar="DURATION",
        help=f"how long the old token keeps working, 0s to 7d (default {tokens.DEFAULT_GRACE})",
    )
    listing = _data_command(
        group, "list", _tokens_list, "list a project's tokens, newest first", uses=SHOWS_TOKENS
    )
    _project_flag(listing)
    listing.add_argument(
        "--status", metavar="STATUS", help=f"only {', '.join(tokens.STATUS_FILTERS)} tokens"
    )
    listing.add_argument(
        "--within",
        metavar="DURATION",
        help=f"with --status expiring: ending within this (default {tokens.DEFAULT_WITHIN})",
    )
    show = _data_command(
        group, "show", _tokens_show, "show one token (masked, never the secret)", uses=SHOWS_TOKENS
    )
    _token_flags(show)
    revoke = _data_command(group, "revoke", _tokens_revoke, "revoke a token at once")
    _token_flags(revoke)


def _webhook_commands(commands: Any) -> None:
    group = _group(commands, "webhooks", "add, list, test and delete a project's webhooks")
    create = _webhook_command(
        group,
        "create",
        _webhooks_create,
        "add a webhook (its secret is shown once)",
        one=False,
        uses=("WEBHOOK_ALLOW_PRIVATE",),
    )
    create.add_argument("--url", required=True, help="where events are POSTed (http or https)")
    create.add_argument(
        "--event",
        action="append",
        metavar="TYPE",
        help=f"an event type to send (repeat it; default: all): {', '.join(EVENT_CHOICES)}",
    )
    _webhook_command(group, "list", _webhooks_list, "list a project's webhooks", one=False)
    _webhook_command(group, "delete", _webhooks_delete, "delete a webhook")
    _webhook_command(group, "test", _webhooks_test, "queue a webhook.test event for a webhook")
    deliveries = _webhook_command(
        group, "deliveries", _webhooks_deliveries, "a webhook's recent deliveries, newest first"
    )
    deliveries.add_argument(
        "--limit", default=str(tokens.PAGE_DEFAULT), metavar="N", help="how many (1-100)"
    )


def _key_commands(commands: Any) -> None:
    group = _group(commands, "keys", "issue, show, list and revoke admin keys")
    create = _data_command(
        group, "create", _keys_create, "issue an admin key (shown once)", uses=ISSUES_TOKENS
    )
    create.add_argument("--name", required=True, help=f"1-{admin_keys.NAME_MAX} characters")
    create.add_argument(
        "--role",
        required=True,
        choices=admin_keys.ROLES,
        help="admin: everything; manager or viewer: one project (--project)",
    )
    create.add_argument("--project", metavar="PROJECT_ID", help="the project of a project role")
    create.add_argument(
        "--expires-in",
        default=tokens.DEFAULT_PRESET,
        metavar="PRESET",
        help=f"one of {', '.join(tokens.PRESETS)} (default {tokens.DEFAULT_PRESET})",
    )
    _data_command(group, "list", _keys_list, "list admin keys, newest first", uses=SHOWS_TOKENS)
    show = _data_command(
        group, "show", _keys_show, "show one admin key (never its secret)", uses=SHOWS_TOKENS
    )
    show.add_argument("--key", required=True, metavar="KEY_ID")
    revoke = _data_command(group, "revoke", _keys_revoke, "revoke an admin key at once")
    revoke.add_argument("--key", required=True, metavar="KEY_ID")


def _usage_command(commands: Any) -> None:
    command = _data_command(
        commands, "usage", _usage, "a project's usage per UTC day (or per token), as a table"
    )
    _project_flag(command)
    command.add_argument(
        "--from", metavar="YYYY-MM-DD", help="first day (default: 29 days before --to)"
    )
    command.add_argument("--to", metavar="YYYY-MM-DD", help="last day, included (default: today)")
    command.add_argument("--token", metavar="TOKEN_ID", help="only this token's usage")
    command.add_argument(
        "--group-by", choices=usage.GROUPINGS, help="one row per day (default) or per token"
    )
    command.add_argument("--csv", action="store_true", help="print CSV with a header line")


def build_parser() -> Parser:
    parser = Parser(prog="admin", description="Tollgate administration.")
    group = commands_of(parser)
    subcommand(group, "serve", _serve, "run the admin API", migrate_flag=True)
    _project_commands(group)
    _token_commands(group)
    _webhook_commands(group)
    _key_commands(group)
    _usage_command(group)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """``admin ARGS``; settings from ``environ`` (default: the process environment)."""
    return run("admin", build_parser(), argv, environ)
