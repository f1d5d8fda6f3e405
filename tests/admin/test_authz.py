"""Who may call what (SPEC §8), as a matrix generated from the app's route table: every
route x every kind of credential x its own project or another one, through real HTTP.

A route the app serves without an entry in ``admin.authz.TABLE`` fails
:func:`test_every_route_has_exactly_one_rule`; a rule the middleware does not enforce
fails the matrix."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from admin import authz
from admin.app import create_app
from admin.routes import ROUTES
from gateway.core.config import Settings
from tests.conftest import ADMIN_AUTH

Client = Any


@pytest.fixture
def settings(environ: dict[str, str]) -> Settings:
    return Settings.from_env({**environ, "ARGON2_MEMORY_COST": "1024", "ARGON2_TIME_COST": "1"})


def served() -> set[tuple[str, str]]:
    return {(r.method, r.path) for r in ROUTES if isinstance(r, web.RouteDef)}


def test_every_route_has_exactly_one_rule() -> None:
    assert authz.unchecked(authz.TABLE, served()) == set()
    # A new route without an entry is caught.
    assert authz.unchecked(authz.TABLE, {*served(), ("POST", "/v1/new")}) == {"POST /v1/new"}


def test_the_table_keeps_the_roles_promises() -> None:
    """SPEC §8 in a few lines, independent of how the table is written."""
    for (method, path), rule in authz.TABLE.items():
        if rule.role == "viewer" and method != "GET":
            assert path == "/v1/projects/{project_id}/tokens/{token_id}"  # only the 405s
        if path.startswith("/v1/admin-keys") or (path == "/v1/projects" and method == "POST"):
            assert rule.role == "admin"
        if rule.portal:
            assert path.startswith(("/v1/projects/{project_id}", "/v1/me", "/v1/audit"))
            assert "webhooks" not in path and "portal-sessions" not in path
            assert method == "GET" or "/tokens" in path
        if "{project_id}" in path:
            assert rule.project, path


@dataclass
class World:
    """Two projects, a credential of each kind on the first one, and ways to make targets."""

    client: Client
    own: str
    other: str
    credentials: dict[str, dict[str, str]]

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        response = await self.client.post(path, json=body, headers=ADMIN_AUTH)
        assert response.status == 201, await response.text()
        return await response.json()

    async def project(self) -> str:
        return str((await self.post("/v1/projects", {"name": "spare"}))["id"])

    async def values(self, path: str, project_id: str) -> dict[str, str]:
        """A fresh target for each parameter of ``path`` (a DELETE may take it away)."""
        found = {"project_id": project_id}
        if "{token_id}" in path:
            found["token_id"] = (await self.post(f"/v1/projects/{project_id}/tokens", {}))["id"]
        if "{webhook_id}" in path:
            hook = {"url": "http://127.0.0.1:9/hook"}
            found["webhook_id"] = (await self.post(f"/v1/projects/{project_id}/webhooks", hook))[
                "id"
            ]
        if "{key_id}" in path:
            key = {"name": "target", "role": "viewer", "project_id": project_id}
            found["key_id"] = (await self.post("/v1/admin-keys", key))["id"]
        return found


BODIES = {
    "/v1/projects": {"name": "made"},
    "/v1/projects/{project_id}": {"name": "renamed"},
    "/v1/projects/{project_id}/tokens": {},
    "/v1/projects/{project_id}/webhooks": {"url": "http://127.0.0.1:9/hook"},
    "/v1/admin-keys": {"name": "made", "role": "admin"},
    "/v1/projects/{project_id}/portal-sessions": {},
    "/v1/portal-sessions/exchange": {"code": "x" * 43},
    "/v1/leaks": {"tokens": []},
}


async def bearer(client: Client, raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
async def world(settings: Settings, pg_pool: Any, aiohttp_client: Any) -> World:
    client = await aiohttp_client(create_app(settings))
    made = World(client, "", "", {})
    made.own, made.other = await made.project(), await made.project()
    creds = {"bootstrap": ADMIN_AUTH}
    for name, role, project in [
        ("admin key", "admin", None),
        ("manager", "manager", made.own),
        ("viewer", "viewer", made.own),
    ]:
        body = {"name": name, "role": role, **({"project_id": project} if project else {})}
        creds[name] = await bearer(client, (await made.post("/v1/admin-keys", body))["key"])
    for role in ("manager", "viewer"):
        link = await made.post(f"/v1/projects/{made.own}/portal-sessions", {"role": role})
        code = link["url"].rsplit("/", 1)[1]
        response = await client.post("/v1/portal-sessions/exchange", json={"code": code})
        assert response.status == 200, await response.text()
        creds[f"portal {role}"] = await bearer(client, (await response.json())["session"])
    made.credentials = creds
    return made


SCOPED = {"manager", "viewer", "portal manager", "portal viewer"}
ROLE_OF = {
    "bootstrap": "admin",
    "admin key": "admin",
    "manager": "manager",
    "viewer": "viewer",
    "portal manager": "manager",
    "portal viewer": "viewer",
}
RANK = {"viewer": 0, "manager": 1, "admin": 2}


PUBLIC = {"/v1/leaks", "/v1/leaks/github", "/v1/portal-sessions/exchange", "/v1/openapi.json"}
TOKEN = "/v1/projects/{project_id}/tokens/{token_id}"


def spec_role(method: str, path: str) -> str | None:
    """SPEC §8's table, written apart from admin.authz so the matrix checks one against the
    other: the least role for a route (None: public)."""
    if path in PUBLIC or not path.startswith("/v1/"):
        return None
    if path.startswith("/v1/admin-keys") or (path == "/v1/projects" and method == "POST"):
        return "admin"
    if path == "/v1/projects/{project_id}" and method == "DELETE":
        return "admin"
    if "/webhooks" in path:
        return "manager"  # reading them too: their URLs are the seller's business
    if method == "GET" or (path == TOKEN and method in ("PUT", "PATCH", "*")):
        return "viewer"  # reading; and the token's 405s, which change nothing
    return "manager"


def portal_may(method: str, path: str) -> bool:
    """A customer's session: the project's token pages, itself, its usage and its activity,
    no more."""
    tokens = path.startswith("/v1/projects/{project_id}/tokens")
    reads = ("/v1/projects/{project_id}", "/v1/projects/{project_id}/usage", "/v1/me", "/v1/audit")
    return tokens or (method == "GET" and path in reads)


def expected(method: str, path: str, credential: str, side: str) -> str:
    """What SPEC §8 says this credential gets: 'allowed', '404' or '403'."""
    role = spec_role(method, path)
    if role is None:
        return "allowed"
    if credential in SCOPED and "{project_id}" in path and side == "other":
        return "404"
    if credential.startswith("portal") and not portal_may(method, path):
        return "403"
    return "allowed" if RANK[ROLE_OF[credential]] >= RANK[role] else "403"


async def test_the_matrix(world: World) -> None:
    outcomes: list[tuple[str, str, str, str, int]] = []
    for (method, path), credential, side in itertools.product(
        sorted(served()), world.credentials, ("own", "other")
    ):
        project = world.own if side == "own" else world.other
        if credential not in SCOPED and method == "DELETE" and path == "/v1/projects/{project_id}":
            project = await world.project()  # it will be deleted
        url = path.format(**await world.values(path, project))
        sent = "POST" if method == "*" else method
        response = await world.client.request(
            sent, url, json=BODIES.get(path), headers=world.credentials[credential]
        )
        body = await response.read()
        code = re.search(rb'"code": "(\w+)"', body)
        got = {403: "403"}.get(response.status, "allowed")
        if response.status == 404 and code and code[1] == b"project_not_found":
            got = "404"
        rule = authz.TABLE[(method, path)]
        # Every credential here is genuine: a 401 can only be a public route's own answer.
        assert response.status != 401 or rule.role is None, (credential, method, path, body)
        want = expected(method, path, credential, side)
        if got != want:
            outcomes.append((credential, side, method, path, response.status))
    assert outcomes == []


async def test_scoped_credentials_list_and_read_only_their_project(world: World) -> None:
    for credential in SCOPED:
        headers = world.credentials[credential]
        listed = await world.client.get("/v1/projects", headers=headers)
        if credential.startswith("portal"):  # a customer gets no project list at all
            assert listed.status == 403
        else:
            projects = (await listed.json())["projects"]
            assert [p["id"] for p in projects] == [world.own]
        events = await (await world.client.get("/v1/audit", headers=headers)).json()
        assert events["events"] and {e["project_id"] for e in events["events"]} == {world.own}
        response = await world.client.get(
            "/v1/audit", params={"project_id": world.other}, headers=headers
        )
        assert response.status == 404
    everything = await (await world.client.get("/v1/projects", headers=ADMIN_AUTH)).json()
    assert {world.own, world.other} <= {p["id"] for p in everything["projects"]}


async def test_refusals_are_counted_by_status(world: World) -> None:
    viewer = world.credentials["viewer"]
    assert (
        await world.client.post("/v1/projects", json={"name": "x"}, headers=viewer)
    ).status == 403
    assert (
        await world.client.get("/v1/projects", headers=await bearer(world.client, "x"))
    ).status == 401
    text = await (await world.client.get("/metrics")).text()
    assert re.search(
        r'admin_requests_total\{method="POST",route="/v1/projects",status="403"\} [1-9]', text
    )
    assert re.search(
        r'admin_requests_total\{method="GET",route="/v1/projects",status="401"\} [1-9]', text
    )


async def test_me_says_who_is_asking(world: World) -> None:
    for credential, headers in world.credentials.items():
        me = await (await world.client.get("/v1/me", headers=headers)).json()
        assert me["role"] == ROLE_OF[credential]
        assert me["type"] == {"bootstrap": "bootstrap"}.get(
            credential, "portal" if credential.startswith("portal") else "admin_key"
        )
        assert me["project_id"] == (world.own if credential in SCOPED else None)
        assert set(me) == {"type", "id", "name", "role", "project_id"}
