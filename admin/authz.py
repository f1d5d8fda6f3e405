"""Who may call which route (SPEC §8): ONE table, and the middleware that enforces it.

Each route of the admin API has exactly one :class:`Rule`: the least role that may call
it (None: public, no credential), whether it names a project in its path (a scoped
credential only reaches its own project there), and whether a portal session may call
it (a seller's customer reaches the token pages of one project, nothing else). A route
missing from the table is refused to everyone but the bootstrap credential, and the
matrix test (tests/admin/test_authz.py, generated from the route table) fails for it.

Order of refusals, so an answer never tells a scoped credential that another project
exists: another project's routes are **404** first; then a role below the rule's, or a
portal session on a route not open to portals, is **403** ``forbidden``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.core.errors import Forbidden

from . import projects, routes
from .context import PRINCIPAL, Principal, Role


@dataclass(frozen=True, slots=True)
class Rule:
    role: Role | None  # None: public
    project: bool = False  # the path names a project: scoped credentials only reach theirs
    portal: bool = False  # a portal session (of that role or above) may call it


PUBLIC: Final = Rule(None)

# (method, route template) -> who may call it.
TABLE: Final[dict[tuple[str, str], Rule]] = {
    # projects
    ("POST", routes.PROJECTS): Rule("admin"),
    ("GET", routes.PROJECTS): Rule("viewer"),  # a scoped credential sees its project only
    ("GET", routes.PROJECT): Rule("viewer", project=True, portal=True),
    ("PATCH", routes.PROJECT): Rule("manager", project=True),
    ("DELETE", routes.PROJECT): Rule("admin", project=True),
    # tokens: the pages a portal session is for
    ("POST", routes.TOKENS): Rule("manager", project=True, portal=True),
    ("GET", routes.TOKENS): Rule("viewer", project=True, portal=True),
    ("GET", routes.TOKEN): Rule("viewer", project=True, portal=True),
    ("DELETE", routes.TOKEN): Rule("manager", project=True, portal=True),
    ("POST", routes.TOKEN_ROTATE): Rule("manager", project=True, portal=True),
    ("*", routes.TOKEN): Rule(
        "viewer", project=True, portal=True
    ),  # other methods (PATCH, PUT...): 405
    # usage: what the project used, read by everyone who may read the project (the
    # portal's Access Tokens page shows each token's last 30 days and the project's chart)
    ("GET", routes.USAGE_PATH): Rule("viewer", project=True, portal=True),
    # webhooks: the project's managers
    ("POST", routes.WEBHOOKS_PATH): Rule("manager", project=True),
    ("GET", routes.WEBHOOKS_PATH): Rule("manager", project=True),
    ("DELETE", routes.WEBHOOK): Rule("manager", project=True),
    ("POST", routes.WEBHOOK_TEST): Rule("manager", project=True),
    ("GET", routes.WEBHOOK_DELIVERIES): Rule("manager", project=True),
    # the audit log: a scoped credential reads its project's events only
    ("GET", routes.AUDIT_PATH): Rule("viewer", portal=True),
    # admin keys and who am I
    ("POST", routes.ADMIN_KEYS): Rule("admin"),
    ("GET", routes.ADMIN_KEYS): Rule("admin"),
    ("GET", routes.ADMIN_KEY): Rule("admin"),
    ("DELETE", routes.ADMIN_KEY): Rule("admin"),
    ("GET", routes.ME): Rule("viewer", portal=True),
    # portal sessions: minted by the seller's backend, exchanged by the console
    ("POST", routes.PORTAL_SESSIONS): Rule("manager", project=True),
    ("POST", routes.PORTAL_EXCHANGE): PUBLIC,
    # leak reports and the service's own routes
    ("POST", routes.LEAKS_PATH): PUBLIC,
    ("POST", routes.LEAKS_GITHUB): PUBLIC,
    ("GET", "/v1/openapi.json"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
}

# Fail closed: a route nobody declared is the bootstrap credential's alone.
UNDECLARED: Final = Rule("admin")


def rule_of(request: web.Request) -> Rule | None:
    """The rule of the route ``request`` matched; None when it matched none (404/405)."""
    route = request.match_info.route
    if route.resource is None or request.match_info.http_exception is not None:
        return None
    return TABLE.get((route.method, route.resource.canonical), UNDECLARED)


def check(principal: Principal, rule: Rule, project_id: str | None) -> None:
    """Raise the 404 or 403 that ``principal`` gets for this rule, if any."""
    if rule.role is None:
        return
    scoped = principal.project_id
    if rule.project and scoped is not None and project_id != scoped:
        raise projects.not_found()
    if principal.type == "bootstrap":
        return
    if principal.type == "portal" and not rule.portal:
        raise Forbidden("a portal session may only manage this project's tokens")
    if not principal.may(rule.role):
        raise Forbidden(
            f"this needs the {rule.role} role; this credential has the {principal.role} role"
        )


@web.middleware
async def authorization(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After authentication: the route's rule, checked against the proven principal."""
    principal = request.get(PRINCIPAL)
    rule = rule_of(request)
    if principal is not None and rule is not None:
        if principal.type == "bootstrap" and rule is UNDECLARED:
            pass  # the bootstrap credential reaches everything
        elif rule is UNDECLARED:
            raise Forbidden("this route is not open to admin keys")
        check(principal, rule, request.match_info.get("project_id"))
    return await handler(request)


def unchecked(table: dict[tuple[str, str], Rule], served: set[tuple[str, str]]) -> set[str]:
    """Routes served without a rule, and rules without a route (for the matrix test)."""
    return {f"{m} {p}" for m, p in served ^ set(table)}
