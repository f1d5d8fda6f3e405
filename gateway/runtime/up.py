"""``gateway up``: the local all-in-one (what ``make run`` runs).

One process, one event loop: the database (``DATABASE_URL`` or the embedded Postgres),
migrations, the admin API, the proxy (one in-process worker), its metrics port and, unless
``UPSTREAM_URL`` is set, the demo echo upstream on a free port. It then prints the
addresses, the admin token and the README's walk-through, ready to paste. Ctrl-C or
SIGTERM stops every listener (the proxy first, so buffered last-used times are written)
and exits 0; the embedded Postgres is stopped by its package when the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import secrets
import shlex
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import FrameType

import uvloop
from aiohttp import web

# The one module of gateway/ allowed to import admin: it composes everything for local use.
from admin.app import create_app as create_admin_app
from gateway.core import db, migrate, ports, tls
from gateway.core.config import ConfigError, Secret, Settings, cannot_listen
from gateway.proxy.app import running, serve
from gateway.proxy.front import raise_open_files_limit
from gateway.proxy.listener import Listener

from . import demo, health

log = logging.getLogger(__name__)

# Open connections get this long to finish once a stop is asked for.
SHUTDOWN_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Addresses:
    """Where everything ended up listening (ports may have been chosen by the OS)."""

    gateway: str
    admin: str
    metrics: str | None
    upstream: str
    demo: bool


def up(settings: Settings) -> int:
    # Until the event loop takes over signals, a SIGTERM ends like Ctrl-C: through the
    # normal exit path, so the embedded Postgres is still stopped by its package.
    signal.signal(signal.SIGTERM, _interrupt)
    embedded = settings.database_url is None
    url = db.database_url(settings)
    generated = settings.admin_token is None
    token = settings.admin_token or Secret(secrets.token_urlsafe(32))
    # A local run's webhook receivers are local too: let them be reached.
    settings = dataclasses.replace(
        settings, database_url=url, admin_token=token, webhook_allow_private=True
    )
    if settings.gateway_workers > 1:
        log.warning("gateway up runs one in-process proxy worker; GATEWAY_WORKERS is for serve")
    raise_open_files_limit()
    return uvloop.run(_run(settings, embedded=embedded, generated=generated))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


async def _run(settings: Settings, *, embedded: bool, generated: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await migrate.apply(settings)
    async with contextlib.AsyncExitStack() as stack:
        addresses = await _start_all(stack, settings)
        print(banner(settings, addresses, embedded=embedded, generated=generated), flush=True)
        await stop.wait()
        print("\nstopping…", flush=True)
    print("stopped.", flush=True)
    return 0


async def _start_all(stack: contextlib.AsyncExitStack, settings: Settings) -> Addresses:
    """Start every listener; the stack stops them in reverse order (the proxy first)."""
    upstream = settings.upstream_url
    use_demo = upstream is None
    if upstream is None:
        port = await _listen(stack, demo.create_app(), "127.0.0.1", 0, "UPSTREAM_URL")
        upstream = f"http://127.0.0.1:{port}"
    settings = dataclasses.replace(settings, upstream_url=upstream)
    admin_app = create_admin_app(settings)
    listeners: list[Listener] = []  # the gateway's, once it runs
    admin_app.on_response_prepare.append(_settled(listeners))
    admin_port = await _listen(
        stack, admin_app, settings.admin_host, settings.admin_port, "ADMIN_PORT"
    )
    gateway = await stack.enter_async_context(running(settings))
    listeners.append(gateway.listener)
    host, port = settings.gateway_host, settings.gateway_port
    try:
        server = await stack.enter_async_context(
            serve(gateway, host, port, shutdown_timeout=SHUTDOWN_TIMEOUT)
        )
    except OSError as err:
        raise _cannot_bind("GATEWAY_PORT", host, port, err) from None
    gateway_port = server.port
    assert settings.database_url is not None  # resolved by up()
    monitor = health.single_app(lambda: gateway, health.DatabaseCheck(settings.database_url))
    host = settings.gateway_host
    metrics_port = await _listen(
        stack, monitor, host, settings.metrics_port, "GATEWAY_METRICS_PORT"
    )
    return Addresses(
        gateway=_url(settings.gateway_host, gateway_port, tls.scheme(settings)),
        admin=_url(settings.admin_host, admin_port),
        metrics=_url(host, metrics_port),
        upstream=upstream,
        demo=use_demo,
    )


def _settled(
    listeners: list[Listener],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An admin answer to a change goes out once this process's gateway has applied it.

    Admin API and gateway share this process: waiting for the gateway's LISTEN connection
    to catch up (one round trip, :meth:`~gateway.proxy.listener.Listener.caught_up`) makes
    "revoked" mean refused by the very next request, as the printed walkthrough shows.
    (Separate instances apply it a few milliseconds after the answer, README.)
    """

    async def settle(request: web.Request, response: web.StreamResponse) -> None:
        if request.method in ("GET", "HEAD", "OPTIONS") or response.status >= 400:
            return
        for listener in listeners:
            await listener.caught_up()

    return settle


async def _listen(
    stack: contextlib.AsyncExitStack, app: web.Application, host: str, port: int, variable: str
) -> int:
    """Serve ``app`` on host:port; return the bound port. A busy port is a ConfigError,
    found before the app starts (its database pool, its background work)."""
    try:
        ports.probe(host, port)
    except OSError as err:
        raise _cannot_bind(variable, host, port, err) from None
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as err:
        raise _cannot_bind(variable, host, port, err) from None
    bound: int = runner.addresses[0][1]
    return bound


def _cannot_bind(variable: str, host: str, port: int, err: OSError) -> ConfigError:
    if err.errno == errno.EADDRINUSE:
        hint = "stop what holds it, or choose another port"
        return ConfigError(variable, f"{host}:{port} is already in use ({hint})")
    return cannot_listen(variable, host, port, err)


def _url(host: str, port: int, scheme: str = "http") -> str:
    """A URL a local shell can call (a wildcard listener is reached through loopback)."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - recognising the wildcard, not binding it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def banner(settings: Settings, where: Addresses, *, embedded: bool, generated: bool) -> str:
    """What ``gateway up`` prints once everything listens."""
    token = settings.admin_tokens()[0].reveal()  # while rotating, the first one given
    upstream = f"{where.upstream}  (the built-in demo: echoes each request as JSON)"
    if not where.demo:
        upstream = where.upstream
    data = settings.data_dir.expanduser().resolve() / "pg"
    database = f"embedded Postgres in {data}" if embedded else "DATABASE_URL"
    origin = "generated for this run; set ADMIN_TOKEN to choose one" if generated else "ADMIN_TOKEN"
    lines = [
        "",
        "Tollgate is up. Ctrl-C stops everything.",
        "",
        f"  gateway    {where.gateway}",
        f"  upstream   {upstream}",
        f"  admin API  {where.admin}/v1  (web console: {where.admin}/)",
    ]
    if where.metrics is not None:
        lines.append(f"  metrics    {where.metrics}/metrics  (and /healthz, /readyz)")
    lines += [
        f"  database   {database}",
        "",
        f"Admin token ({origin}):",
        f"  {token}",
        "",
        "Try it from another shell (copy-paste the whole block):",
        "",
        *(f"  {line}".rstrip() for line in walkthrough(where.admin, where.gateway, token)),
        "",
    ]
    return "\n".join(lines)


# `field` prints one field of a JSON answer (python3 is there, jq may not be); when the
# field is missing it prints the whole answer, the API's error, and fails.
_FIELD = (
    "field() { python3 -c 'import json,sys;k=sys.argv[1];"
    'a=json.loads(sys.stdin.read() or "{}");'
    'print(a[k]) if k in a else sys.exit("no "+k+" in the answer: "+json.dumps(a))\' "$1"; }'
)
# The same for every run. -w '\n' ends each answer with a line break.
_STEPS = r"""
# 1. Create a project (a team or customer) and keep its id.
PROJECT_ID=$(curl -sS -H "Authorization: Bearer $ADMIN_TOKEN" -H "Content-Type: application/json" \
  -d '{"name": "demo"}' "$ADMIN_URL/v1/projects" | field id)

# 2. Create a token. It expires in 30 days ("expires_in": 30d by default; 90d, 180d, 365d or
#    never). The raw token is in this answer only: store it now.
CREATED=$(curl -sS -H "Authorization: Bearer $ADMIN_TOKEN" -H "Content-Type: application/json" \
  -d '{"description": "first token"}' "$ADMIN_URL/v1/projects/$PROJECT_ID/tokens")
TOKEN=$(echo "$CREATED" | field token)
TOKEN_ID=$(echo "$CREATED" | field id)

# 3. Call the API through the gateway. The demo upstream echoes what it received:
#    X-Project-Id, X-Token-Id and X-Request-Id are there, Authorization is not.
curl -sS -i -w '\n' -H "Authorization: Bearer $TOKEN" "$GATEWAY_URL/hello?name=world"

# 4. List the project's tokens: masked, never the secret. last_used_at shows the call once
#    the gateway has written it (every LAST_USED_FLUSH_INTERVAL, 5 seconds by default).
curl -sS -w '\n' -H "Authorization: Bearer $ADMIN_TOKEN" \
  "$ADMIN_URL/v1/projects/$PROJECT_ID/tokens"

# 5. Revoke the token (204). Every gateway hears of it at once through Postgres NOTIFY,
#    and the token then gets 401 invalid_token.
curl -sS -i -w '\n' -X DELETE -H "Authorization: Bearer $ADMIN_TOKEN" \
  "$ADMIN_URL/v1/projects/$PROJECT_ID/tokens/$TOKEN_ID"
curl -sS -i -w '\n' -H "Authorization: Bearer $TOKEN" "$GATEWAY_URL/hello"
"""


def walkthrough(admin: str, gateway: str, admin_token: str) -> list[str]:
    """The README's walk-through with these addresses and admin token, line by line.

    Pasted into a shell it creates a project and a token, calls the gateway with it, lists
    the project's tokens, revokes the token and shows the gateway refusing it.
    """
    return [
        f"export ADMIN_URL={admin} GATEWAY_URL={gateway}",
        f"export ADMIN_TOKEN={shlex.quote(admin_token)}",
        _FIELD,
        *_STEPS.splitlines(),
    ]
