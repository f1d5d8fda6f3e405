"""The admin HTTP API's routes (SPEC §4): the route table, each handler under its declaration.

A handler gets its input checked (``given``), calls a use case from ``projects``/``tokens``
and returns a view; ``@documented`` renders it as the declared answer, and the OpenAPI
document is generated from these same declarations. Errors are raised as
``gateway.core.errors`` classes and rendered by the error middleware.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web

from gateway.core import db
from gateway.core.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from gateway.core.journal import Actor
from gateway.core.outbox import rfc3339

from . import admin_keys, audit, projects, scanning, schemas, tokens, usage, webhooks
from .context import REQUEST_ID, actor, client_ip, principal
from .endpoints import Answer, Given, Operation, RawBody, Reply, documented, is_public
from .jsonbody import json_bytes, parse_json
from .keys import (
    ADMIN_METRICS,
    AUDIT,
    CREDENTIALS,
    DELIVERER,
    GUARD,
    HASHER,
    KEYS,
    LEAK_LIMITER,
    LEAKS,
    OPENAPI,
    POOL,
    SCANNING_KEYS,
    SETTINGS,
    STORE,
    USAGE,
    WEBHOOKS,
)
from .metrics import exposition
from .views import (
    admin_key_page_view,
    admin_key_view,
    audit_page_view,
    delivery_list_view,
    me_view,
    new_admin_key_view,
    new_token_view,
    new_webhook_view,
    project_list_view,
    project_view,
    token_page_view,
    token_view,
    usage_csv,
    usage_view,
    webhook_list_view,
)

HEALTH_TIMEOUT: Final = 2.0

PROJECTS: Final = "/v1/projects"
PROJECT: Final = "/v1/projects/{project_id}"
TOKENS: Final = "/v1/projects/{project_id}/tokens"
TOKEN: Final = "/v1/projects/{project_id}/tokens/{token_id}"
TOKEN_ROTATE: Final = "/v1/projects/{project_id}/tokens/{token_id}/rotate"

# The routes the app serves, in this order (see add_routes).
ROUTES: Final = web.RouteTableDef()

_BODY_ERRORS: Final = (400, 401, 413, 415)
_PROJECT: Final = Answer(200, "The project.", "Project")
_DELETED: Final = Answer(204, "Deleted.")
_REVOKED: Final = Answer(204, "Revoked.")


def _created(description: str, schema: str, location: str) -> Answer:
    """201 with ``Location``, carrying a secret that this answer alone ever shows."""
    return Answer(201, description, schema, location=location, secret=True)


def _in_project(request: web.Request, name: str) -> tuple[str, str]:
    """The project's id and the path's id ``name``: the ids of one object of a project."""
    return request.match_info["project_id"], request.match_info[name]


# ---------------------------------------------------------------- projects


@ROUTES.post(PROJECTS)
@documented(
    Operation(
        "Create a project",
        Answer(201, "The project.", "Project", location="/v1/projects/{id}"),
        _BODY_ERRORS,
        body=schemas.PROJECT_CREATE,
    )
)
async def create_project(request: web.Request, given: Given) -> Reply:
    return project_view(
        await projects.create(request.app[STORE], **given.body, actor=actor(request))
    )


@ROUTES.get(PROJECTS)
@documented(
    Operation("List projects, newest first", Answer(200, "Every project.", "ProjectList"), (401,))
)
async def list_projects(request: web.Request, given: Given) -> Reply:
    scope = principal(request).project_id  # a project role sees its own project only
    return project_list_view(await projects.list_all(request.app[STORE], only=scope))


@ROUTES.get(PROJECT)
@documented(Operation("Get a project", _PROJECT, (401, 404)))
async def get_project(request: web.Request, given: Given) -> Reply:
    return project_view(await projects.get(request.app[STORE], request.match_info["project_id"]))


@ROUTES.patch(PROJECT)
@documented(
    Operation(
        "Rename a project or change its rate limit or quota",
        _PROJECT,
        (*_BODY_ERRORS, 404),
        "A new rate limit or quota reaches every gateway at once.",
        body=schemas.PROJECT_UPDATE,
    )
)
async def update_project(request: web.Request, given: Given) -> Reply:
    project_id = request.match_info["project_id"]
    updated = await projects.update(
        request.app[STORE], project_id, **given.body, actor=actor(request)
    )
    return project_view(updated)


@ROUTES.delete(PROJECT)
@documented(
    Operation(
        "Delete a project and its tokens",
        _DELETED,
        (401, 404),
        "Its tokens stop working at once on every gateway.",
    )
)
async def delete_project(request: web.Request, given: Given) -> Reply:
    await projects.delete(
        request.app[STORE], request.match_info["project_id"], actor=actor(request)
    )
    return None


# ---------------------------------------------------------------- tokens


def _prefix(request: web.Request) -> str:
    return request.app[SETTINGS].token_prefix


@ROUTES.post(TOKENS)
@documented(
    Operation(
        "Issue a token",
        _created("The new token.", "NewToken", "/v1/projects/{project_id}/tokens/{id}"),
        (*_BODY_ERRORS, 404),
        "The answer is the only place the token itself ever appears.",
        body=schemas.TOKEN_CREATE,
    )
)
async def create_token(request: web.Request, given: Given) -> Reply:
    app, project_id = request.app, request.match_info["project_id"]
    issued = await tokens.issue(
        app[STORE], app[HASHER], _prefix(request), project_id, **given.body, actor=actor(request)
    )
    return new_token_view(issued, _prefix(request))


@ROUTES.get(TOKENS)
@documented(
    Operation(
        "List a project's tokens, newest first",
        Answer(200, "A page of tokens.", "TokenPage"),
        (400, 401, 404),
        query=schemas.TOKEN_PAGE,
    )
)
async def list_tokens(request: web.Request, given: Given) -> Reply:
    project_id = request.match_info["project_id"]
    page = await tokens.list_page(request.app[STORE], project_id, **given.query)
    found = await usage.last_30_days(request.app[USAGE], [info.id for info in page.tokens])
    return token_page_view(page, _prefix(request), found)


@ROUTES.get(TOKEN)
@documented(
    Operation("Get a token (never its secret)", Answer(200, "The token.", "Token"), (401, 404))
)
async def get_token(request: web.Request, given: Given) -> Reply:
    info = await tokens.get(request.app[STORE], *_in_project(request, "token_id"))
    found = await usage.last_30_days(request.app[USAGE], [info.id])
    return token_view(info, _prefix(request), usage_30d=found.get(info.id))


@ROUTES.delete(TOKEN)
@documented(
    Operation(
        "Revoke a token",
        _REVOKED,
        (401, 404),
        "Deletes it: it stops working at once on every gateway.",
    )
)
async def revoke_token(request: web.Request, given: Given) -> Reply:
    ids = _in_project(request, "token_id")
    await tokens.revoke(request.app[STORE], *ids, actor=actor(request))
    return None


@ROUTES.post(TOKEN_ROTATE)
@documented(
    Operation(
        "Rotate a token: issue its successor, retire it after a grace period",
        _created(
            "The successor, with `rotated_from`.",
            "NewToken",
            "/v1/projects/{project_id}/tokens/{id}",
        ),
        (*_BODY_ERRORS, 404, 409),
        "The successor has the same description, scopes, allowed_ips and expiry preset "
        "(counted from now). The old token keeps working until the end of its grace (never "
        "past its own expiry) on every gateway, its proxied answers carrying `Deprecation` "
        "and `Sunset`; it shows `replaced_by` and cannot be rotated again (409 "
        "`already_rotated`). The answer is the only place the new token ever appears.",
        body=schemas.TOKEN_ROTATE,
    )
)
async def rotate_token(request: web.Request, given: Given) -> Reply:
    app, prefix, ids = request.app, _prefix(request), _in_project(request, "token_id")
    issued = await tokens.rotate(
        app[STORE], app[HASHER], prefix, *ids, actor=actor(request), **given.body
    )
    return new_token_view(issued, prefix)


_TOKEN_ALLOW: Final = {"Allow": "GET, DELETE"}


@ROUTES.route("*", TOKEN)  # last: any other method; not an operation of its own
async def token_other_method(request: web.Request) -> web.Response:
    """405 with ``Allow: GET, DELETE``; PATCH and PUT, what a client would try to change a
    token with, are told why. Neither is an operation of the API, so neither is documented
    (a described operation that always refuses would contradict ``Allow``)."""
    if request.method in ("PATCH", "PUT"):
        raise MethodNotAllowed(
            "tokens are immutable: create a new one and revoke this one",
            code="token_immutable",
            headers=_TOKEN_ALLOW,
        )
    raise MethodNotAllowed(headers=_TOKEN_ALLOW)


# ---------------------------------------------------------------- usage

USAGE_PATH: Final = "/v1/projects/{project_id}/usage"


def wants_csv(request: web.Request) -> bool:
    """CSV when the client prefers it to JSON (RFC 9110 §12.5.1: q-values, and the most
    specific range naming a type counts); JSON otherwise, and without ``Accept``."""
    accept = request.headers.get("Accept", "")
    return quality(accept, "text/csv") > quality(accept, "application/json")


def quality(accept: str, kind: str) -> float:
    """The q ``accept`` gives the media type ``kind``: that of its most specific range
    (``kind``, then ``type/*``, then ``*/*``); 0 when none covers it."""
    ranks = {kind: 3, kind.split("/")[0] + "/*": 2, "*/*": 1}
    best, q = 0, 0.0
    for part in accept.split(","):
        media, *params = part.split(";")
        rank = ranks.get(media.strip().lower(), 0)
        if rank > best:
            best, q = rank, _q(params)
    return q


def _q(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


@ROUTES.get(USAGE_PATH)
@documented(
    Operation(
        "A project's usage per UTC day or per token",
        Answer(200, "Its usage (CSV with a header line for Accept: text/csv).", "Usage"),
        (400, 401, 404),
        "Counts: proxied (answers from the upstream), upstream_errors (502, 504 and upstream "
        "5xx), rate_limited (429s) and forbidden (403s). Grouped by day, days without "
        "traffic have zeros. Revoked tokens' usage stays in the totals.",
        query=schemas.USAGE_QUERY,
    )
)
async def get_usage(request: web.Request, given: Given) -> Reply:
    start, end = usage.span(given.query["from"], given.query["to"])
    report = await usage.report(
        request.app[STORE],
        request.app[USAGE],
        request.match_info["project_id"],
        start=start,
        end=end,
        token_id=given.query["token_id"],
        group_by=given.query["group_by"],
    )
    if wants_csv(request):
        name = f"usage-{report.start}-{report.end}.csv"
        return web.Response(
            text=usage_csv(report),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return usage_view(report)


# ---------------------------------------------------------------- webhooks

WEBHOOKS_PATH: Final = "/v1/projects/{project_id}/webhooks"
WEBHOOK: Final = "/v1/projects/{project_id}/webhooks/{webhook_id}"
WEBHOOK_TEST: Final = "/v1/projects/{project_id}/webhooks/{webhook_id}/test"
WEBHOOK_DELIVERIES: Final = "/v1/projects/{project_id}/webhooks/{webhook_id}/deliveries"
LEAKS_PATH: Final = "/v1/leaks"
LEAKS_GITHUB: Final = "/v1/leaks/github"


def _leak_report(request: web.Request) -> Actor:
    """The actor of a leak report: whoever sent it (each event is named after its source)."""
    return Actor("leak_report", request_id=request.get(REQUEST_ID), ip=client_ip(request))


@ROUTES.post(WEBHOOKS_PATH)
@documented(
    Operation(
        "Add a webhook",
        _created(
            "The webhook, with its signing secret.",
            "NewWebhook",
            "/v1/projects/{project_id}/webhooks/{id}",
        ),
        (*_BODY_ERRORS, 404, 409),
        "The answer is the only place the secret ever appears. A URL whose host resolves to "
        "a loopback, private, link-local or metadata address is refused "
        "(`webhook_url_not_allowed`) unless WEBHOOK_ALLOW_PRIVATE.",
        body=schemas.WEBHOOK_CREATE,
    )
)
async def create_webhook(request: web.Request, given: Given) -> Reply:
    app, project_id = request.app, request.match_info["project_id"]
    created = await webhooks.create(
        app[STORE], app[WEBHOOKS], app[GUARD], project_id, actor=actor(request), **given.body
    )
    return new_webhook_view(created)


@ROUTES.get(WEBHOOKS_PATH)
@documented(
    Operation("List a project's webhooks", Answer(200, "Its webhooks.", "WebhookList"), (401, 404))
)
async def list_webhooks(request: web.Request, given: Given) -> Reply:
    app, project_id = request.app, request.match_info["project_id"]
    return webhook_list_view(await webhooks.list_all(app[STORE], app[WEBHOOKS], project_id))


@ROUTES.delete(WEBHOOK)
@documented(
    Operation("Delete a webhook", _DELETED, (401, 404), "Its pending deliveries are dropped.")
)
async def delete_webhook(request: web.Request, given: Given) -> Reply:
    app = request.app
    await webhooks.delete(
        app[STORE], app[WEBHOOKS], *_in_project(request, "webhook_id"), actor=actor(request)
    )
    return None


@ROUTES.post(WEBHOOK_TEST)
@documented(
    Operation(
        "Send a webhook.test event to this webhook now",
        Answer(202, "Queued; its delivery shows in the webhook's deliveries.", "TestEvent"),
        (401, 404),
    )
)
async def test_webhook(request: web.Request, given: Given) -> Reply:
    app = request.app
    event_id = await webhooks.send_test(
        app[STORE], app[WEBHOOKS], *_in_project(request, "webhook_id")
    )
    if DELIVERER in app:
        app[DELIVERER].wake()
    return {"event_id": event_id}


@ROUTES.get(WEBHOOK_DELIVERIES)
@documented(
    Operation(
        "A webhook's recent deliveries, newest first",
        Answer(200, "Its deliveries.", "DeliveryList"),
        (400, 401, 404),
        query=schemas.DELIVERY_PAGE,
    )
)
async def list_deliveries(request: web.Request, given: Given) -> Reply:
    app = request.app
    found = await webhooks.deliveries(
        app[STORE], app[WEBHOOKS], *_in_project(request, "webhook_id"), **given.query
    )
    return delivery_list_view(found)


# ---------------------------------------------------------------- leak reports


@ROUTES.post(LEAKS_PATH)
@documented(
    Operation(
        "Report tokens found in public",
        Answer(202, "Received; genuine tokens are revoked at once.", "LeakReceipt"),
        (400, 413, 415, 429),
        "No credential needed. The answer is the same whatever the strings are, so it "
        "never tells which tokens exist. Limited per client address (LEAK_REPORT_RATE).",
        body=schemas.LEAK_REPORT,
        public=True,
    )
)
async def report_leaks(request: web.Request, given: Given) -> Reply:
    app = request.app
    app[LEAK_LIMITER].admit(request.remote or "")
    source = given.body["source"] or None
    found = [(raw, source) for raw in given.body["tokens"]]
    await app[LEAKS].report(found, actor=_leak_report(request))
    return {"received": len(found)}


@ROUTES.post(LEAKS_GITHUB)
@documented(
    Operation(
        "GitHub secret scanning reports (its partner protocol)",
        Answer(200, "Each reported token and whether it was genuine.", "GitHubLabels"),
        (400, 401, 404, 413, 415),
        "Signed by GitHub (Github-Public-Key-Identifier, Github-Public-Key-Signature: ECDSA "
        "P-256, SHA-256) with a key of GITHUB_SCANNING_KEYS_FILE; 401 without a valid "
        "signature, 404 when no keys file is set. Genuine tokens are revoked at once.",
        raw_body=RawBody(
            "GitHubTokenReports",
            {
                "type": "array",
                "items": {**schemas.GITHUB_REPORT_ITEM.schema(), "additionalProperties": True},
            },
        ),
        public=True,
    )
)
async def github_leaks(request: web.Request, given: Given) -> Reply:
    app = request.app
    if SCANNING_KEYS not in app:
        raise NotFound(
            f"GitHub secret scanning is not set up ({scanning.VARIABLE})",
            code="github_scanning_not_configured",
        )
    raw = await json_bytes(request)
    signed = scanning.verify(
        app[SCANNING_KEYS].keys(),
        request.headers.get(scanning.KEY_ID_HEADER),
        request.headers.get(scanning.SIGNATURE_HEADER),
        raw,
    )
    if not signed:
        raise Unauthorized(
            "the report is not signed by a known GitHub key", code="invalid_signature"
        )
    reports = _github_reports(parse_json(raw))
    found = [(report["token"], report["url"] or report["source"]) for report in reports]
    verdicts = await app[LEAKS].report(found, actor=_leak_report(request))
    return web.json_response(
        scanning.labels(reports, [verdict == "revoked" for verdict in verdicts])
    )


def _github_reports(value: Any) -> list[dict[str, Any]]:
    """Each report checked as declared (fields GitHub may add later are left out)."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise BadRequest("the body must be a JSON array of objects", code="invalid_json")
    fields = schemas.GITHUB_REPORT_ITEM.fields
    return [
        schemas.GITHUB_REPORT_ITEM.check({k: v for k, v in item.items() if k in fields})
        for item in value
    ]


# ---------------------------------------------------------------- the audit log

AUDIT_PATH: Final = "/v1/audit"


@ROUTES.get(AUDIT_PATH)
@documented(
    Operation(
        "The audit log, newest first",
        Answer(200, "A page of events.", "AuditPage"),
        (400, 401),
        "One event per successful change, written in the change's own transaction. "
        "Append-only: nothing changes or deletes events but the retention job "
        "(AUDIT_RETENTION_DAYS).",
        query=schemas.AUDIT_PAGE,
    )
)
async def list_audit(request: web.Request, given: Given) -> Reply:
    query, scope = given.query, principal(request).project_id
    if scope is not None:  # a project role reads its own project's events only
        if query.get("project_id") not in (None, scope):
            raise projects.not_found()
        query = {**query, "project_id": scope}
    return audit_page_view(await audit.page(request.app[AUDIT], **query))


# ---------------------------------------------------------------- admin keys and who am I

ADMIN_KEYS: Final = "/v1/admin-keys"
ADMIN_KEY: Final = "/v1/admin-keys/{key_id}"
ME: Final = "/v1/me"
PORTAL_SESSIONS: Final = "/v1/projects/{project_id}/portal-sessions"
PORTAL_EXCHANGE: Final = "/v1/portal-sessions/exchange"


def _key_prefix(request: web.Request) -> str:
    return request.app[CREDENTIALS].prefix


@ROUTES.post(ADMIN_KEYS)
@documented(
    Operation(
        "Issue an admin key",
        _created("The new key.", "NewAdminKey", "/v1/admin-keys/{id}"),
        (*_BODY_ERRORS, 403, 404),
        "Admin role only. The answer is the only place the key itself ever appears.",
        body=schemas.ADMIN_KEY_CREATE,
    )
)
async def create_admin_key(request: web.Request, given: Given) -> Reply:
    app = request.app
    issued = await admin_keys.issue(
        app[KEYS], app[STORE], app[HASHER], _key_prefix(request), **given.body, actor=actor(request)
    )
    return new_admin_key_view(issued, _key_prefix(request))


@ROUTES.get(ADMIN_KEYS)
@documented(
    Operation(
        "List admin keys, newest first",
        Answer(200, "A page of admin keys.", "AdminKeyPage"),
        (400, 401, 403),
        query=schemas.KEY_PAGE,
    )
)
async def list_admin_keys(request: web.Request, given: Given) -> Reply:
    page = await admin_keys.list_page(request.app[KEYS], **given.query)
    return admin_key_page_view(page, _key_prefix(request))


@ROUTES.get(ADMIN_KEY)
@documented(
    Operation(
        "Get an admin key (never its secret)",
        Answer(200, "The admin key.", "AdminKey"),
        (401, 403, 404),
    )
)
async def get_admin_key(request: web.Request, given: Given) -> Reply:
    key = await admin_keys.get(request.app[KEYS], request.match_info["key_id"])
    return admin_key_view(key, _key_prefix(request))


@ROUTES.delete(ADMIN_KEY)
@documented(
    Operation(
        "Revoke an admin key",
        _REVOKED,
        (401, 403, 404),
        "Deletes it: every admin instance refuses it from its next request on.",
    )
)
async def revoke_admin_key(request: web.Request, given: Given) -> Reply:
    await admin_keys.revoke(request.app[KEYS], request.match_info["key_id"], actor=actor(request))
    return None


@ROUTES.get(ME)
@documented(
    Operation(
        "The credential this request was made with",
        Answer(200, "Who is asking: its type, role and project.", "Me"),
        (401,),
    )
)
async def me(request: web.Request, given: Given) -> Reply:
    return me_view(principal(request))


@ROUTES.post(PORTAL_SESSIONS)
@documented(
    Operation(
        "A one-time link to the project's token pages, for the seller's customer",
        Answer(201, "The link; redirect the customer to it.", "PortalLink", secret=True),
        (*_BODY_ERRORS, 403, 404),
        "The seller's backend calls this for a signed-in customer and redirects the "
        "customer to `url`. The link works once, within 5 minutes; the session it opens "
        "has `role` on this project alone, for `ttl`.",
        body=schemas.PORTAL_SESSION_CREATE,
    )
)
async def create_portal_session(request: web.Request, given: Given) -> Reply:
    app, project_id = request.app, request.match_info["project_id"]
    link = await admin_keys.mint(
        app[KEYS],
        app[STORE],
        app[SETTINGS].public_url(),
        project_id,
        **given.body,
        actor=actor(request),
    )
    return {"url": link.url, "expires_at": rfc3339(link.expires_at)}


@ROUTES.post(PORTAL_EXCHANGE)
@documented(
    Operation(
        "Exchange a portal link's code for a session",
        Answer(200, "The session credential.", "PortalSession", secret=True),
        (400, 401, 413, 415),
        "No credential needed: the code is one. A used or expired code is 401.",
        body=schemas.PORTAL_EXCHANGE,
        public=True,
    )
)
async def exchange_portal_code(request: web.Request, given: Given) -> Reply:
    session = await admin_keys.exchange(request.app[KEYS], _key_prefix(request), given.body["code"])
    return {"session": session.raw, "expires_at": rfc3339(session.expires_at)}


# ---------------------------------------------------------------- service


@ROUTES.get("/v1/openapi.json")
@documented(Operation("This document", Answer(200, "The OpenAPI document."), public=True))
async def openapi(request: web.Request, given: Given) -> Reply:
    return request.app[OPENAPI]


@ROUTES.get("/healthz")
@documented(
    Operation(
        "Whether the admin API and its database answer",
        Answer(200, "Healthy."),
        (503,),
        public=True,
    )
)
async def healthz(request: web.Request, given: Given) -> Reply:
    """200 when the database answers a query, 503 otherwise."""
    try:
        await asyncio.wait_for(request.app[POOL].fetchval("SELECT 1"), HEALTH_TIMEOUT)
    except db.UNREACHABLE:
        raise ServiceUnavailable("the database is not answering") from None
    return {"status": "ok"}


@ROUTES.get("/metrics")
@documented(
    Operation(
        "Prometheus metrics of the admin API",
        Answer(200, "Metrics.", media_type="text/plain"),
        public=True,
    )
)
async def metrics(request: web.Request, given: Given) -> Reply:
    app = request.app
    try:
        pending = await asyncio.wait_for(app[WEBHOOKS].pending_count(), HEALTH_TIMEOUT)
        app[ADMIN_METRICS].outbox_pending.set(pending)
        soon = tokens.EXPIRING_SOON
        expiring = await asyncio.wait_for(
            app[STORE].count_expiring(tokens.seconds(soon)), HEALTH_TIMEOUT
        )
        app[ADMIN_METRICS].tokens_expiring.labels(soon).set(expiring)
    except db.UNREACHABLE:  # the gauges keep their last values; the scrape still answers
        pass
    return exposition(app[ADMIN_METRICS])


def public_paths() -> frozenset[str]:
    """The paths of the routes declared public: they need no admin token."""
    return frozenset(
        route.path
        for route in ROUTES
        if isinstance(route, web.RouteDef) and is_public(route.handler)
    )


def add_routes(router: web.UrlDispatcher) -> None:
    for route in ROUTES:
        assert isinstance(route, web.RouteDef)
        # add_route, unlike add_get, adds no implicit HEAD: the table is exactly what is served.
        router.add_route(route.method, route.path, route.handler, **route.kwargs)
