"""The OpenAPI document matches the admin app's real routes, fields and status codes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web

from admin.app import create_app
from admin.console import is_console_route
from admin.openapi import SCHEMAS, document
from gateway.core.config import Settings

Operation = tuple[str, str]
# The /v1 routes that need no admin token: the API's description, and leak reports (whoever
# found a token reports it; GitHub's are signed instead).
PUBLIC_V1 = {"/v1/openapi.json", "/v1/leaks", "/v1/leaks/github", "/v1/portal-sessions/exchange"}


def served_operations(app: web.Application) -> set[Operation]:
    """(method, path template) of every route the app answers, console files aside
    (and catch-alls: "*" routes only refuse other methods with a 405)."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and not is_console_route(route) and route.method != "*"
    }


def documented_operations(doc: dict[str, Any]) -> set[Operation]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def test_every_route_is_documented_and_every_documented_route_exists(
    settings: Settings,
) -> None:
    app = create_app(settings)
    served, documented = served_operations(app), documented_operations(document())
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "documented operations the app does not serve"
    # PATCH and PUT on a token are refused by the catch-all: no operation, not described.
    assert ("PATCH", "/v1/projects/{project_id}/tokens/{token_id}") not in documented


def test_the_check_notices_an_undocumented_route(settings: Settings) -> None:
    app = create_app(settings)

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_post("/v1/projects/{project_id}/rotate", handler)
    assert served_operations(app) - documented_operations(document()) == {
        ("POST", "/v1/projects/{project_id}/rotate")
    }


def test_console_files_are_not_in_the_document(settings: Settings) -> None:
    paths = document()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_the_document_is_well_formed_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    for ref in _refs(doc):
        section, kind, name = ref.removeprefix("#/").split("/")
        assert name in doc[section][kind], ref
    for path, item in doc["paths"].items():
        templated = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            assert method in {"get", "post", "patch", "put", "delete"}
            assert operation["summary"] and operation["responses"]
            assert all(re.fullmatch(r"[1-5]\d\d", status) for status in operation["responses"])
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == templated, (method, path)
            if "requestBody" in operation:
                assert method in {"post", "patch"}


def test_protected_operations_say_so() -> None:
    doc = document()
    assert doc["security"] == [{"adminToken": []}]
    assert doc["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            public = operation.get("security") == []
            assert public == (not path.startswith("/v1/") or path in PUBLIC_V1)
            if not public:
                assert "401" in operation["responses"], (method, path)


async def test_the_document_is_served_without_a_token(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/v1/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == document()


@pytest.mark.parametrize(
    ("schema", "path"),
    [("Project", "project"), ("Token", "token"), ("NewToken", "new_token")],
)
async def test_documented_fields_are_the_real_fields(
    admin_client: Any, schema: str, path: str
) -> None:
    project = await (await admin_client.post("/v1/projects", json={"name": "p"})).json()
    tokens_path = f"/v1/projects/{project['id']}/tokens"
    new_token = await (await admin_client.post(tokens_path, json={})).json()
    token = await (await admin_client.get(f"{tokens_path}/{new_token['id']}")).json()
    real = {"project": project, "token": token, "new_token": new_token}[path]
    declared = SCHEMAS[schema]
    if "allOf" in declared:
        parts = [
            SCHEMAS[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p for p in declared["allOf"]
        ]
        required = {name for part in parts for name in part["required"]}
    else:
        required = set(declared["required"])
        assert set(declared["properties"]) == required
    assert set(real) == required


# ---------------------------------------------------------------- generated from the table


def test_a_route_without_a_declaration_cannot_be_described() -> None:
    table = web.RouteTableDef()

    @table.post("/v1/projects/{project_id}/rotate")
    async def undeclared(request: web.Request) -> web.Response:
        return web.Response()

    with pytest.raises(LookupError, match="undeclared is not @documented"):
        document(table)


def _bodies(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path with real ids to fill in, body schema) of every documented body."""
    found = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if "requestBody" in operation:
                ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                found.append((method, path, SCHEMAS[ref.rsplit("/", 1)[1]]))
    return found


NO_NUL = "^[^\\u0000]*$"


def _good_value(schema: dict[str, Any]) -> Any:
    """A value the field's schema allows."""
    if schema["type"] == "array":
        return []
    return schema["examples"][0] if "examples" in schema else "x"


def _bad_values(schema: dict[str, Any]) -> list[tuple[Any, str]]:
    """Values the field's schema rules out, each with the error code it must get."""
    if schema["type"] == "array":
        items = schema["items"]
        bad: list[tuple[Any, str]] = [(5, "invalid_type"), ("x", "invalid_type")]
        bad += [
            ([5], "invalid_type"),
            ([_good_value(items)] * (schema["maxItems"] + 1), "invalid_value"),
        ]
        bad += [([value], code) for value, code in _bad_values(items) if code == "invalid_value"]
        return bad
    bad = [(5, "invalid_type"), (["x"], "invalid_type")]
    if "null" not in schema["type"]:
        bad.append((None, "invalid_type"))
    if "maxLength" in schema:
        bad.append(("x" * (schema["maxLength"] + 1), "invalid_value"))
    if schema.get("minLength"):
        bad.append(("", "invalid_value"))
    if "enum" in schema:
        bad.append(("surely-not-" + schema["enum"][0], "invalid_value"))
    if schema.get("pattern") == NO_NUL:  # free text: anything but NUL
        bad.append(("a\x00b", "invalid_value"))
    elif "pattern" in schema:
        bad.append(("!", "invalid_value"))
        assert re.fullmatch(schema["pattern"].strip("^$"), schema["examples"][0])
    return bad


async def test_each_body_is_checked_as_the_document_declares_it(admin_client: Any) -> None:
    """Driven by the served document: what it rules out, the API refuses, naming the field."""
    doc = await (await admin_client.get("/v1/openapi.json")).json()
    project = await (await admin_client.post("/v1/projects", json={"name": "p"})).json()
    bodies = [(m, p, schema) for m, p, schema in _bodies(doc) if schema["type"] == "object"]
    assert {(m, p) for m, p, _ in bodies} == {
        ("post", "/v1/projects"),
        ("patch", "/v1/projects/{project_id}"),
        ("post", "/v1/projects/{project_id}/tokens"),
        ("post", "/v1/projects/{project_id}/tokens/{token_id}/rotate"),
        ("post", "/v1/projects/{project_id}/webhooks"),
        ("post", "/v1/leaks"),
        ("post", "/v1/admin-keys"),
        ("post", "/v1/projects/{project_id}/portal-sessions"),
        ("post", "/v1/portal-sessions/exchange"),
    }
    token = await (await admin_client.post(f"/v1/projects/{project['id']}/tokens")).json()
    for method, template, schema in bodies:
        path = template.format(project_id=project["id"], token_id=token["id"])
        minimal = {
            name: _good_value(schema["properties"][name]) for name in schema.get("required", [])
        }
        response = await admin_client.request(method, path, json={**minimal, "surely_unknown": 1})
        error = (await response.json())["error"]
        assert (response.status, error["code"]) == (400, "unknown_field")
        assert set(re.findall(r'"(\w+)"', error["message"].split("known:")[1])) == set(
            schema["properties"]
        )
        for name in schema.get("required", []):
            response = await admin_client.request(method, path, json={})
            assert (await response.json())["error"]["code"] == "missing_field", name
        for name, field in schema["properties"].items():
            for value, code in _bad_values(field):
                response = await admin_client.request(method, path, json={**minimal, name: value})
                error = (await response.json())["error"]
                assert (response.status, error["code"]) == (400, code), (method, path, name, value)
                assert f'"{name}"' in error["message"]


async def test_the_page_size_is_checked_as_documented(admin_client: Any) -> None:
    doc = await (await admin_client.get("/v1/openapi.json")).json()
    operation = doc["paths"]["/v1/projects/{project_id}/tokens"]["get"]
    (limit,) = [p["schema"] for p in operation["parameters"] if p["name"] == "limit"]
    project = await (await admin_client.post("/v1/projects", json={"name": "p"})).json()
    path = f"/v1/projects/{project['id']}/tokens"
    for value, status in [
        (limit["minimum"] - 1, 400),
        (limit["minimum"], 200),
        (limit["maximum"], 200),
        (limit["maximum"] + 1, 400),
    ]:
        response = await admin_client.get(path, params={"limit": str(value)})
        assert response.status == status, value


async def test_answers_documented_as_secret_are_never_cached(admin_client: Any) -> None:
    doc = await (await admin_client.get("/v1/openapi.json")).json()
    secret = [
        (method, path)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        for answer in operation["responses"].values()
        if "Cache-Control" in answer.get("headers", {})
    ]
    assert secret == [
        ("post", "/v1/projects/{project_id}/tokens"),
        ("post", "/v1/projects/{project_id}/tokens/{token_id}/rotate"),
        ("post", "/v1/projects/{project_id}/webhooks"),
        ("post", "/v1/admin-keys"),
        ("post", "/v1/projects/{project_id}/portal-sessions"),
        ("post", "/v1/portal-sessions/exchange"),
    ]
    project = await (await admin_client.post("/v1/projects", json={"name": "p"})).json()
    for path, body in [("tokens", {}), ("webhooks", {"url": "http://127.0.0.1:9/hook"})]:
        response = await admin_client.post(f"/v1/projects/{project['id']}/{path}", json=body)
        assert response.status == 201
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Pragma"] == "no-cache"


async def test_what_the_document_calls_public_needs_no_token_and_the_rest_does(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    doc = document()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            url = re.sub(r"{\w+}", "x", path)
            response = await client.request(method.upper(), url)
            public = operation.get("security") == []
            assert (response.status != 401) == public, (method, path, response.status)
