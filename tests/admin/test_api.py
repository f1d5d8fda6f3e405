"""The admin API through real HTTP on a real Postgres: every row of SPEC §4, every bad input."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from multidict import CIMultiDict

from admin.endpoints import is_public
from admin.routes import ROUTES
from gateway.core.config import Settings
from gateway.core.store import Store
from gateway.core.tokens import Hasher, parse
from tests.conftest import ADMIN_AUTH, ADMIN_TOKEN
from tests.helpers import MISSING_ID, GatewayClient
from tests.relay import Relay

Client = Any
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
MISSING = MISSING_ID


@pytest.fixture
def settings(environ: dict[str, str]) -> Settings:
    # Cheap argon2 parameters: these tests issue many tokens. The default (OWASP) profile
    # is checked on its own below.
    return Settings.from_env({**environ, "ARGON2_MEMORY_COST": "1024", "ARGON2_TIME_COST": "1"})


async def error_of(response: aiohttp.ClientResponse, status: int) -> dict[str, str]:
    """The error of an answer that must have ``status`` and the JSON error shape."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", body["error"]["code"])
    error: dict[str, str] = body["error"]
    return error


async def new_project(client: Client, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/projects", json={"name": "acme", **body})
    assert response.status == 201, await response.text()
    project: dict[str, Any] = await response.json()
    return project


async def new_token(client: Client, project_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/projects/{project_id}/tokens", json=body)
    assert response.status == 201, await response.text()
    token: dict[str, Any] = await response.json()
    return token


def when(text: str) -> datetime:
    assert RFC3339_UTC.fullmatch(text), text
    return datetime.fromisoformat(text)


# ---------------------------------------------------------------- admin authentication


def _all_v1_requests() -> list[tuple[str, str]]:
    paths = [
        (r.method, re.sub(r"{\w+}", MISSING, r.path))
        for r in ROUTES
        if r.path.startswith("/v1/") and not is_public(r.handler) and r.method != "*"
    ]
    return [*paths, ("GET", "/v1/no-such-route"), ("POST", "/v1")]


@pytest.mark.parametrize(("method", "path"), _all_v1_requests())
@pytest.mark.parametrize(
    ("authorization", "invalid"),
    [
        (None, False),
        ("Bearer wrong-admin-token-" + "y" * 32, True),
        (f"Bearer {ADMIN_TOKEN[:-1]}", True),
        (f"Basic {ADMIN_TOKEN}", False),
        (f"Bearer  {ADMIN_TOKEN}", True),
        ("Bearer", False),
    ],
)
async def test_every_v1_route_needs_the_admin_token(
    admin_client: Client, method: str, path: str, authorization: str | None, invalid: bool
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.request(method, admin_client.make_url(path), headers=headers) as response,
    ):
        error = await error_of(response, 401)
        assert error["code"] == "unauthorized"
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="tollgate-admin"')
        assert ('error="invalid_token"' in challenge) is invalid
        assert ADMIN_TOKEN not in await response.text()


async def test_two_authorization_headers_are_refused(admin_client: Client) -> None:
    headers = CIMultiDict(
        [("Authorization", f"Bearer {ADMIN_TOKEN}"), ("Authorization", f"Bearer {ADMIN_TOKEN}")]
    )
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(admin_client.make_url("/v1/projects"), headers=headers) as response,
    ):
        await error_of(response, 401)


async def test_the_scheme_is_case_insensitive(admin_client: Client) -> None:
    response = await admin_client.get(
        "/v1/projects", headers={"Authorization": f"bearer {ADMIN_TOKEN}"}
    )
    assert response.status == 200


@pytest.mark.parametrize("path", ["/v1/openapi.json", "/healthz", "/metrics", "/"])
async def test_public_routes_need_no_token(admin_client: Client, path: str) -> None:
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(admin_client.make_url(path)) as response,
    ):
        assert response.status == 200


@pytest.mark.parametrize("path", ["/nope", "/v1/projects/x/y/z/w", "/v2/projects"])
async def test_unknown_routes_are_404_json(admin_client: Client, path: str) -> None:
    await error_of(await admin_client.get(path), 404)


# ---------------------------------------------------------------- projects


async def test_create_get_list_update_delete_a_project(admin_client: Client) -> None:
    response = await admin_client.post(
        "/v1/projects", json={"name": "Acme mail", "rate_limit": " 100/second "}
    )
    assert response.status == 201
    project = await response.json()
    assert set(project) == {"id", "name", "rate_limit", "quota", "created_at"}
    assert project["name"] == "Acme mail" and project["rate_limit"] == "100/second"
    assert abs(when(project["created_at"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert response.headers["Location"] == f"/v1/projects/{project['id']}"
    path = f"/v1/projects/{project['id']}"

    assert await (await admin_client.get(path)).json() == project
    second = await new_project(admin_client, name="Second")
    listing = await (await admin_client.get("/v1/projects")).json()
    assert [p["id"] for p in listing["projects"]] == [second["id"], project["id"]]

    renamed = await (await admin_client.patch(path, json={"name": "Acme"})).json()
    assert renamed == {**project, "name": "Acme"}
    defaulted = await (await admin_client.patch(path, json={"rate_limit": None})).json()
    assert defaulted == {**project, "name": "Acme", "rate_limit": None}
    unchanged = await admin_client.patch(path, json={})
    assert unchanged.status == 200 and await unchanged.json() == defaulted

    response = await admin_client.delete(path)
    assert response.status == 204 and await response.read() == b""
    await error_of(await admin_client.get(path), 404)
    await error_of(await admin_client.delete(path), 404)
    await error_of(await admin_client.patch(path, json={"name": "x"}), 404)


@pytest.mark.parametrize(
    ("given", "stored"),
    [("10/sec", "10/second"), ("10/min", "10/minute"), ("10/hr", "10/hour"), ("7/h", "7/hour")],
)
async def test_short_rate_spellings_are_stored_canonically(
    admin_client: Client, given: str, stored: str
) -> None:
    project = await new_project(admin_client, rate_limit=given)
    assert project["rate_limit"] == stored
    path = f"/v1/projects/{project['id']}"
    changed = await (await admin_client.patch(path, json={"rate_limit": given.upper()})).json()
    assert changed["error"]["code"] == "invalid_value"  # units are lower case
    changed = await (
        await admin_client.patch(path, json={"rate_limit": " 2/" + given.split("/")[1]})
    ).json()
    assert changed["rate_limit"] == f"2/{stored.split('/')[1]}"


async def test_project_names_need_not_be_unique(admin_client: Client) -> None:
    first, second = await new_project(admin_client), await new_project(admin_client)
    assert first["id"] != second["id"] and first["name"] == second["name"]


@pytest.mark.parametrize("name", ["x", "x" * 200, "Ünïcode ✓ 名前", "a\tb"])
async def test_names_of_1_to_200_characters_are_accepted(admin_client: Client, name: str) -> None:
    assert (await new_project(admin_client, name=name))["name"] == name


# Each bad input class: (raw body, content type, status, error code, text in the message).
BAD_PROJECT_BODIES = [
    pytest.param(b'{"name": ""}', "application/json", 400, "invalid_value", '"name"', id="empty"),
    pytest.param(
        json.dumps({"name": "x" * 201}).encode(), None, 400, "invalid_value", '"name"', id="long"
    ),
    pytest.param(b'{"name": "  "}', None, 400, "invalid_value", '"name"', id="blank"),
    pytest.param(b'{"name": "a\\u0000b"}', None, 400, "invalid_value", "NUL", id="nul"),
    pytest.param(b'{"name": "\\ud800"}', None, 400, "invalid_value", '"name"', id="surrogate"),
    pytest.param(b'{"name": 5}', None, 400, "invalid_type", '"name" must be a string', id="int"),
    pytest.param(b'{"name": null}', None, 400, "invalid_type", '"name"', id="null-name"),
    pytest.param(b'{"name": ["a"]}', None, 400, "invalid_type", '"name"', id="list"),
    pytest.param(b"{}", None, 400, "missing_field", '"name" is required', id="missing"),
    pytest.param(b'{"name": "a", "owner": 1}', None, 400, "unknown_field", '"owner"', id="unknown"),
    pytest.param(
        b'{"name": "a", "rate_limit": "lots"}',
        None,
        400,
        "invalid_value",
        '"rate_limit" must be a number of requests per second, minute or hour, such as'
        " 600/minute or 10/sec (1 <= N < 10^9), or null for the default",
        id="rate",
    ),
    pytest.param(
        b'{"name": "a", "rate_limit": "0/second"}', None, 400, "invalid_value", "rate_limit", id="0"
    ),
    pytest.param(
        b'{"name": "a", "rate_limit": "5/day"}', None, 400, "invalid_value", "rate_limit", id="day"
    ),
    pytest.param(
        b'{"name": "a", "rate_limit": 5}', None, 400, "invalid_type", '"rate_limit"', id="rate-int"
    ),
    pytest.param(b'{"name": "a",}', None, 400, "invalid_json", "JSON", id="malformed"),
    pytest.param(b'["a"]', None, 400, "invalid_json", "object", id="array"),
    pytest.param(b'"a"', None, 400, "invalid_json", "object", id="string"),
    pytest.param(b'{"name": "a", "name": "b"}', None, 400, "invalid_json", "duplicate", id="dup"),
    pytest.param(b'{"name": NaN}', None, 400, "invalid_json", "NaN", id="nan"),
    pytest.param(b'{"name": "\xff"}', None, 400, "invalid_json", "UTF-8", id="not-utf8"),
    pytest.param(b"[" * 100_00, None, 400, "invalid_json", "", id="deep"),
    pytest.param(b'{"name": "a"}', "text/plain", 415, "unsupported_media_type", "JSON", id="text"),
    pytest.param(b"name=a", "application/x-www-form-urlencoded", 415, None, "JSON", id="form"),
    pytest.param(b'{"name": "a"}', "application/octet-stream", 415, None, "", id="octet"),
    pytest.param(b"{}" + b" " * 65535, "text/plain", 413, "payload_too_large", "64 KiB", id="413"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "code", "says"), BAD_PROJECT_BODIES)
async def test_bad_project_bodies_are_refused_and_leave_nothing(
    admin_client: Client,
    pg_pool: asyncpg.Pool,
    body: bytes,
    content_type: str | None,
    status: int,
    code: str | None,
    says: str,
) -> None:
    headers = {"Content-Type": content_type or "application/json"}
    error = await error_of(
        await admin_client.post("/v1/projects", data=body, headers=headers), status
    )
    if code is not None:
        assert error["code"] == code
    assert says in error["message"]
    assert await pg_pool.fetchval("SELECT count(*) FROM projects") == 0


async def test_a_body_of_exactly_64_kib_is_accepted(admin_client: Client) -> None:
    body = b'{"name": "a"}'.ljust(64 * 1024)
    response = await admin_client.post(
        "/v1/projects", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 201


async def test_an_oversized_chunked_body_is_413(admin_client: Client) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}'

    response = await admin_client.post(
        "/v1/projects", data=chunks(), headers={"Content-Type": "application/json"}
    )
    await error_of(response, 413)


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/merge-patch+json"]
)
async def test_json_content_types_are_accepted(admin_client: Client, content_type: str) -> None:
    project = await new_project(admin_client)
    response = await admin_client.patch(
        f"/v1/projects/{project['id']}",
        data=b'{"name": "b"}',
        headers={"Content-Type": content_type},
    )
    assert response.status == 200


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": None}, '"name"'),
        ({"name": ""}, '"name"'),
        ({"rate_limit": "fast"}, '"rate_limit"'),
        ({"name": "ok", "rate_limit": "fast"}, '"rate_limit"'),
        ({"id": "x"}, '"id"'),
        ({"created_at": "2020-01-01T00:00:00Z"}, '"created_at"'),
    ],
)
async def test_a_bad_update_changes_nothing(
    admin_client: Client, body: dict[str, Any], says: str
) -> None:
    project = await new_project(admin_client, rate_limit="10/second")
    path = f"/v1/projects/{project['id']}"
    error = await error_of(await admin_client.patch(path, json=body), 400)
    assert says in error["message"]
    assert await (await admin_client.get(path)).json() == project


MALFORMED_IDS = ["x", "%00", "a%00b" * 4, "z" * 17, "0" * 500, "%E2%9C%93", "..%2F.."]


@pytest.mark.parametrize("bad", MALFORMED_IDS)
async def test_malformed_ids_are_404_never_500(admin_client: Client, bad: str) -> None:
    project = await new_project(admin_client)
    token = await new_token(admin_client, project["id"])
    good_p, good_t = project["id"], token["id"]
    attempts = [
        ("GET", f"/v1/projects/{bad}", None),
        ("PATCH", f"/v1/projects/{bad}", {"name": "x"}),
        ("DELETE", f"/v1/projects/{bad}", None),
        ("POST", f"/v1/projects/{bad}/tokens", {}),
        ("GET", f"/v1/projects/{bad}/tokens", None),
        ("GET", f"/v1/projects/{bad}/tokens/{good_t}", None),
        ("GET", f"/v1/projects/{good_p}/tokens/{bad}", None),
        ("DELETE", f"/v1/projects/{good_p}/tokens/{bad}", None),
        ("DELETE", f"/v1/projects/{bad}/tokens/{good_t}", None),
    ]
    for method, path, body in attempts:
        response = await admin_client.request(method, path, json=body)
        await error_of(response, 404)
    assert (await admin_client.get(f"/v1/projects/{good_p}/tokens/{good_t}")).status == 200


# ---------------------------------------------------------------- tokens


async def test_issue_a_token(admin_client: Client, settings: Settings) -> None:
    project = await new_project(admin_client)
    response = await admin_client.post(
        f"/v1/projects/{project['id']}/tokens", json={"description": "CI runner"}
    )
    assert response.status == 201
    token = await response.json()
    assert set(token) == {
        "id",
        "project_id",
        "description",
        "masked",
        "created_at",
        "expires_at",
        "last_used_at",
        "status",
        "expires_in",
        "scopes",
        "allowed_ips",
        "rotated_from",
        "replaced_by",
        "rotated_at",
        "usage_30d",
        "token",
    }
    parsed = parse(token["token"], settings.token_prefix)
    assert parsed is not None and parsed.id == token["id"]
    assert token["project_id"] == project["id"] and token["description"] == "CI runner"
    assert token["masked"].startswith(f"tg_{token['id']}_")
    assert parsed.secret not in token["masked"]
    assert token["status"] == "active" and token["last_used_at"] is None
    assert when(token["expires_at"]) - when(token["created_at"]) == timedelta(days=30)
    assert response.headers["Location"] == f"/v1/projects/{project['id']}/tokens/{token['id']}"


async def test_the_answer_carrying_a_new_token_is_never_cached(admin_client: Client) -> None:
    project = await new_project(admin_client)
    created = await admin_client.post(f"/v1/projects/{project['id']}/tokens", json={})
    assert created.status == 201
    assert created.headers["Cache-Control"] == "no-store"
    assert created.headers["Pragma"] == "no-cache"
    shown = await admin_client.get(f"/v1/projects/{project['id']}/tokens")
    assert "no-store" not in shown.headers.get("Cache-Control", "")  # no secret in it


async def test_a_token_can_be_issued_with_no_body_at_all(admin_client: Client) -> None:
    project = await new_project(admin_client)
    response = await admin_client.post(f"/v1/projects/{project['id']}/tokens")
    assert response.status == 201
    assert (await response.json())["description"] == ""


@pytest.mark.parametrize(
    ("preset", "days"), [("30d", 30), ("90d", 90), ("180d", 180), ("365d", 365), ("never", None)]
)
async def test_expiry_presets(admin_client: Client, preset: str, days: int | None) -> None:
    project = await new_project(admin_client)
    token = await new_token(admin_client, project["id"], expires_in=preset)
    if days is None:
        assert token["expires_at"] is None
    else:
        assert when(token["expires_at"]) - when(token["created_at"]) == timedelta(days=days)
    assert token["status"] == "active"


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"expires_in": "7d"}, "invalid_value", '"expires_in" must be one of 30d, 90d'),
        ({"expires_in": ""}, "invalid_value", '"expires_in"'),
        ({"expires_in": 30}, "invalid_type", '"expires_in"'),
        ({"expires_in": None}, "invalid_type", '"expires_in"'),
        ({"description": "x" * 201}, "invalid_value", '"description"'),
        ({"description": "a\x00"}, "invalid_value", "NUL"),
        ({"description": ["x"]}, "invalid_type", '"description"'),
        ({"name": "x"}, "unknown_field", '"name"'),
        ({"token": "tg_x"}, "unknown_field", '"token"'),
    ],
)
async def test_bad_token_requests_are_refused_and_issue_nothing(
    admin_client: Client, pg_pool: asyncpg.Pool, body: dict[str, Any], code: str, says: str
) -> None:
    project = await new_project(admin_client)
    response = await admin_client.post(f"/v1/projects/{project['id']}/tokens", json=body)
    error = await error_of(response, 400)
    assert error["code"] == code and says in error["message"]
    assert await pg_pool.fetchval("SELECT count(*) FROM tokens") == 0


async def test_a_description_of_200_characters_is_accepted(admin_client: Client) -> None:
    project = await new_project(admin_client)
    token = await new_token(admin_client, project["id"], description="é" * 200)
    assert token["description"] == "é" * 200


async def test_tokens_for_a_missing_project_are_404(
    admin_client: Client, pg_pool: asyncpg.Pool
) -> None:
    response = await admin_client.post(f"/v1/projects/{MISSING}/tokens", json={})
    assert (await error_of(response, 404))["code"] == "project_not_found"
    await error_of(await admin_client.get(f"/v1/projects/{MISSING}/tokens"), 404)
    assert await pg_pool.fetchval("SELECT count(*) FROM tokens") == 0


async def test_get_and_revoke_a_token(admin_client: Client) -> None:
    project = await new_project(admin_client)
    issued = await new_token(admin_client, project["id"])
    path = f"/v1/projects/{project['id']}/tokens/{issued['id']}"
    shown = await (await admin_client.get(path)).json()
    assert shown == {k: v for k, v in issued.items() if k != "token"}

    response = await admin_client.delete(path)
    assert response.status == 204 and await response.read() == b""
    assert (await error_of(await admin_client.get(path), 404))["code"] == "token_not_found"
    await error_of(await admin_client.delete(path), 404)  # already gone


async def test_a_token_is_only_found_under_its_own_project(admin_client: Client) -> None:
    mine, other = await new_project(admin_client), await new_project(admin_client)
    token = await new_token(admin_client, mine["id"])
    path = f"/v1/projects/{other['id']}/tokens/{token['id']}"
    await error_of(await admin_client.get(path), 404)
    await error_of(await admin_client.delete(path), 404)
    assert (await admin_client.get(f"/v1/projects/{mine['id']}/tokens/{token['id']}")).status == 200


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_tokens_are_immutable(admin_client: Client, method: str) -> None:
    project = await new_project(admin_client)
    token = await new_token(admin_client, project["id"], description="before")
    path = f"/v1/projects/{project['id']}/tokens/{token['id']}"
    response = await admin_client.request(method, path, json={"description": "after"})
    error = await error_of(response, 405)
    assert "immutable" in error["message"]
    assert "create a new one and revoke this one" in error["message"]
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "DELETE"}
    assert (await (await admin_client.get(path)).json())["description"] == "before"


async def test_other_methods_are_405_json(admin_client: Client) -> None:
    response = await admin_client.put("/v1/projects", json={})
    await error_of(response, 405)


async def test_allow_on_a_token_lists_only_what_works(admin_client: Client) -> None:
    """PATCH and PUT on a token are always refused, so a 405 never offers them."""
    project = await new_project(admin_client)
    token = await new_token(admin_client, project["id"])
    path = f"/v1/projects/{project['id']}/tokens/{token['id']}"
    for method in ("POST", "OPTIONS"):
        response = await admin_client.request(method, path, json={})
        error = await error_of(response, 405)
        assert "immutable" not in error["message"]
        assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "DELETE"}


async def test_status_and_last_used_follow_the_database(
    admin_client: Client, pg_pool: asyncpg.Pool, store: Store
) -> None:
    project = await new_project(admin_client)
    token = await new_token(admin_client, project["id"])
    path = f"/v1/projects/{project['id']}/tokens/{token['id']}"
    used = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
    await store.touch_last_used([token["id"]], [used])
    assert (await (await admin_client.get(path)).json())["last_used_at"] == "2026-11-22T10:00:00Z"

    await pg_pool.execute(
        "UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = $1", token["id"]
    )
    shown = await (await admin_client.get(path)).json()
    assert shown["status"] == "expired"
    listed = await (await admin_client.get(f"/v1/projects/{project['id']}/tokens")).json()
    assert listed["tokens"][0]["status"] == "expired"


# ---------------------------------------------------------------- pagination


async def _walk(client: Client, project_id: str, limit: int | None) -> list[list[str]]:
    pages: list[list[str]] = []
    query = "" if limit is None else f"?limit={limit}"
    cursor: str | None = None
    while True:
        suffix = query if cursor is None else f"{query}{'&' if query else '?'}cursor={cursor}"
        response = await client.get(f"/v1/projects/{project_id}/tokens{suffix}")
        assert response.status == 200
        page = await response.json()
        assert set(page) == {"tokens", "next_cursor"}
        pages.append([t["id"] for t in page["tokens"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


async def test_pagination_walks_every_token_newest_first(admin_client: Client) -> None:
    project = await new_project(admin_client)
    issued = [(await new_token(admin_client, project["id"]))["id"] for _ in range(23)]
    newest_first = list(reversed(issued))

    pages = await _walk(admin_client, project["id"], limit=5)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [t for page in pages for t in page] == newest_first

    default = await _walk(admin_client, project["id"], limit=None)
    assert [len(p) for p in default] == [20, 3]
    assert await _walk(admin_client, project["id"], limit=100) == [newest_first]


async def test_tokens_issued_while_paging_do_not_shift_pages(admin_client: Client) -> None:
    project = await new_project(admin_client)
    issued = [(await new_token(admin_client, project["id"]))["id"] for _ in range(4)]
    base = f"/v1/projects/{project['id']}/tokens?limit=2"
    first = await (await admin_client.get(base)).json()
    await new_token(admin_client, project["id"])  # newer than everything listed
    rest = await (await admin_client.get(f"{base}&cursor={first['next_cursor']}")).json()
    assert [t["id"] for t in first["tokens"] + rest["tokens"]] == list(reversed(issued))


async def test_an_empty_project_lists_no_tokens(admin_client: Client) -> None:
    project = await new_project(admin_client)
    page = await (await admin_client.get(f"/v1/projects/{project['id']}/tokens")).json()
    assert page == {"tokens": [], "next_cursor": None}


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", "", "9" * 5000, "٣"])
async def test_bad_limits_are_400(admin_client: Client, limit: str) -> None:
    project = await new_project(admin_client)
    response = await admin_client.get(
        f"/v1/projects/{project['id']}/tokens", params={"limit": limit}
    )
    error = await error_of(response, 400)
    assert error["code"] == "invalid_parameter" and '"limit"' in error["message"]


def _crafted(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


CRAFTED_CURSORS = [
    _crafted(f"2026-01-01T00:00:00+00:00|{MISSING}\x00"),
    _crafted("2026-01-01T00:00:00+00:00|' OR 1=1 --"),
    _crafted(f"2026-01-01T00:00:00|{MISSING}"),  # no time zone
    _crafted(f"9999-12-31T23:59:59-14:00|{MISSING}"),  # past the end of time in UTC
    _crafted(f"0001-01-01T00:00:00+14:00|{MISSING}"),
]


@pytest.mark.parametrize(
    "cursor", ["garbage", "!!!", "MjAyNg", "x" * 300, "%00", "\x00", *CRAFTED_CURSORS]
)
async def test_bad_cursors_are_400(admin_client: Client, cursor: str) -> None:
    project = await new_project(admin_client)
    response = await admin_client.get(
        f"/v1/projects/{project['id']}/tokens", params={"cursor": cursor}
    )
    assert (await error_of(response, 400))["code"] == "invalid_cursor"


# ---------------------------------------------------------------- the secret stays secret


async def test_the_raw_token_appears_in_exactly_one_response(
    admin_client: Client, pg_pool: asyncpg.Pool, settings: Settings
) -> None:
    bodies: list[str] = []

    async def call(method: str, path: str, **kwargs: Any) -> Any:
        response = await admin_client.request(method, path, **kwargs)
        bodies.append(f"{response.headers}\n{await response.text()}")
        return response

    project = await (await call("POST", "/v1/projects", json={"name": "p"})).json()
    base = f"/v1/projects/{project['id']}"
    raw = (await (await call("POST", f"{base}/tokens", json={})).json())["token"]
    parsed = parse(raw, settings.token_prefix)
    assert parsed is not None
    path = f"{base}/tokens/{parsed.id}"
    for method, target in [
        ("GET", f"{base}/tokens"),
        ("GET", path),
        ("GET", base),
        ("GET", "/v1/projects"),
        ("PATCH", path),
        ("PUT", path),
        ("GET", "/metrics"),
        ("GET", "/v1/openapi.json"),
        ("DELETE", path),
        ("GET", path),
    ]:
        await call(method, target)
    assert sum(raw in body for body in bodies) == 1
    assert sum(parsed.secret in body for body in bodies) == 1


async def test_the_database_holds_only_an_argon2id_hash(
    admin_client: Client, pg_pool: asyncpg.Pool, settings: Settings
) -> None:
    project = await new_project(admin_client)
    raw = (await new_token(admin_client, project["id"]))["token"]
    parsed = parse(raw, settings.token_prefix)
    assert parsed is not None
    rows = await pg_pool.fetch("SELECT secret_hash, t::text AS whole FROM tokens t")
    assert len(rows) == 1
    assert rows[0]["secret_hash"].startswith("$argon2id$")
    for text in (rows[0]["whole"], await pg_pool.fetchval("SELECT p::text FROM projects p")):
        assert raw not in text and parsed.secret not in text
        assert parsed.secret[:8] not in text  # no readable piece of it either
    assert Hasher.from_settings(settings).verify(rows[0]["secret_hash"], parsed.secret)


def test_tokens_are_hashed_with_the_owasp_profile_by_default(environ: dict[str, str]) -> None:
    hasher = Hasher.from_settings(Settings.from_env(environ))
    assert hasher.hash("s").startswith("$argon2id$v=19$m=19456,t=2,p=1$")


# ---------------------------------------------------------------- notifications


async def test_revoking_and_deleting_notify_gateways(
    admin_client: Client, pg_pool: asyncpg.Pool, events: asyncio.Queue[dict[str, Any]]
) -> None:
    project = await new_project(admin_client)
    base = f"/v1/projects/{project['id']}"
    first = await new_token(admin_client, project["id"])
    await new_token(admin_client, project["id"])

    assert (await admin_client.delete(f"{base}/tokens/{first['id']}")).status == 204
    event = await asyncio.wait_for(events.get(), 5)
    assert event["kind"] == "token_revoked"
    assert (event["project_id"], event["token_id"]) == (project["id"], first["id"])

    assert (await admin_client.patch(base, json={"rate_limit": "5/second"})).status == 200
    event = await asyncio.wait_for(events.get(), 5)
    assert (event["kind"], event["rate_limit"]) == ("project_updated", "5/second")

    assert (await admin_client.delete(base)).status == 204
    event = await asyncio.wait_for(events.get(), 5)
    assert (event["kind"], event["project_id"]) == ("project_deleted", project["id"])
    assert await pg_pool.fetchval("SELECT count(*) FROM tokens") == 0
    assert events.empty()


async def test_failed_requests_notify_nobody(
    admin_client: Client, events: asyncio.Queue[dict[str, Any]]
) -> None:
    project = await new_project(admin_client)
    base = f"/v1/projects/{project['id']}"
    await error_of(await admin_client.delete(f"{base}/tokens/{MISSING}"), 404)
    await error_of(await admin_client.patch(base, json={"rate_limit": "x"}), 400)
    await error_of(await admin_client.delete(f"/v1/projects/{MISSING}"), 404)
    # A marker event proves the listener is live and nothing came before it.
    assert (await admin_client.patch(base, json={"rate_limit": "1/hour"})).status == 200
    assert (await asyncio.wait_for(events.get(), 5))["rate_limit"] == "1/hour"


# ---------------------------------------------------------------- service routes


async def test_metrics_count_requests_by_route_template(admin_client: Client) -> None:
    project = await new_project(admin_client)
    await admin_client.get(f"/v1/projects/{project['id']}")
    await admin_client.get(f"/v1/projects/{MISSING}")
    await admin_client.get("/nope")
    text = await (await admin_client.get("/metrics")).text()
    assert (
        'admin_requests_total{method="GET",route="/v1/projects/{project_id}",status="200"} 1.0'
        in text
    )
    assert (
        'admin_requests_total{method="GET",route="/v1/projects/{project_id}",status="404"} 1.0'
        in text
    )
    assert 'admin_requests_total{method="POST",route="/v1/projects",status="201"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "admin_request_duration_seconds_bucket" in text
    assert project["id"] not in text and MISSING not in text


async def test_two_apps_keep_separate_metrics(
    admin_client: Client, settings: Settings, aiohttp_client: Any
) -> None:
    from admin.app import create_app

    other = await aiohttp_client(create_app(settings))
    await admin_client.get("/v1/projects")
    assert "/v1/projects" not in await (await other.get("/metrics")).text()


async def test_healthz_is_200_while_the_database_answers(admin_client: Client) -> None:
    response = await admin_client.get("/healthz")
    assert response.status == 200 and await response.json() == {"status": "ok"}


# ---------------------------------------------------------------- the web console


async def test_the_console_is_served_with_strict_headers(admin_client: Client) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for path in ("/", "/static/app.js"):
            async with anonymous.get(admin_client.make_url(path)) as response:
                assert response.status == 200, path
                csp = response.headers["Content-Security-Policy"]
                assert "default-src 'self'" in csp and "unsafe-inline" not in csp
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["Referrer-Policy"] == "no-referrer"
                # Unversioned module URLs: an upgrade must not mix cached old scripts in.
                assert response.headers["Cache-Control"] == "no-cache", path
        async with anonymous.get(admin_client.make_url("/")) as response:
            assert response.content_type == "text/html"
            assert "<html" in (await response.text()).lower()


@pytest.mark.parametrize(
    "path", ["/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapi.py", "/static/nope.js"]
)
async def test_the_console_folder_cannot_be_escaped(admin_client: Client, path: str) -> None:
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(admin_client.make_url(path)) as response,
    ):
        assert response.status in (403, 404)
        assert "create_app" not in await response.text()


# ---------------------------------------------------------------- the database going away


async def test_healthz_is_503_when_the_database_is_gone(
    environ: dict[str, str], database_url: str, aiohttp_client: Any
) -> None:
    from admin.app import create_app

    relay = Relay(database_url)
    await relay.start()
    try:
        settings = Settings.from_env({**environ, "DATABASE_URL": relay.url})
        client = await aiohttp_client(create_app(settings))
        assert (await client.get("/healthz")).status == 200

        await relay.cut()
        error = await error_of(await client.get("/healthz"), 503)
        assert "database" in error["message"]
        listing = await client.get(
            "/v1/projects", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        await error_of(listing, 503)

        await relay.restore()  # the network is back: the pool reconnects by itself
        assert (await client.get("/healthz")).status == 200
    finally:
        await relay.close()


async def test_a_schema_error_is_a_500_with_its_traceback_logged(
    environ: dict[str, str],
    own_database: str,
    aiohttp_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A missing ``tokens`` table is a bug, not an outage: 500, never the 503 to retry."""
    from admin.app import create_app

    settings = Settings.from_env({**environ, "DATABASE_URL": own_database})
    client = await aiohttp_client(create_app(settings), headers=ADMIN_AUTH)
    project = await new_project(client)
    conn = await asyncpg.connect(own_database)
    try:
        await conn.execute("ALTER TABLE tokens RENAME TO tokens_elsewhere")
    finally:
        await conn.close()
    caplog.clear()
    error = await error_of(await client.get(f"/v1/projects/{project['id']}/tokens"), 500)
    assert error["code"] == "internal_error"
    assert "tokens" not in error["message"]  # the detail is in the log, not the answer
    [traceback] = [record for record in caplog.records if record.exc_info]
    assert traceback.exc_info is not None
    assert isinstance(traceback.exc_info[1], asyncpg.UndefinedTableError)
    assert "database unavailable" not in caplog.text
    assert (await client.get("/v1/projects")).status == 200  # the rest still works
    assert (await client.get("/healthz")).status == 200


# ---------------------------------------------------------------- seen by a running gateway


async def test_revoking_and_deleting_through_the_api_stop_a_running_gateway(
    admin_client: Client, gateway_client: GatewayClient
) -> None:
    project = await new_project(admin_client)
    base = f"/v1/projects/{project['id']}"
    revoked = await new_token(admin_client, project["id"])
    orphaned = await new_token(admin_client, project["id"])

    async def status(token: dict[str, Any]) -> int:
        headers = {"Authorization": f"Bearer {token['token']}"}
        async with gateway_client.get("/anything", headers=headers) as response:
            return int(response.status)

    async def until_refused(token: dict[str, Any]) -> None:
        # Well inside TOKEN_CACHE_TTL (30 s): only the notification can make this pass.
        deadline = asyncio.get_running_loop().time() + 10
        while (code := await status(token)) != 401:
            assert code == 200 and asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)

    deadline = asyncio.get_running_loop().time() + 10
    while not gateway_client.gateway.is_ready():
        assert asyncio.get_running_loop().time() < deadline, "gateway never became ready"
        await asyncio.sleep(0.02)
    assert (await status(revoked), await status(orphaned)) == (200, 200)

    assert (await admin_client.delete(f"{base}/tokens/{revoked['id']}")).status == 204
    await until_refused(revoked)
    assert await status(orphaned) == 200
    assert (await admin_client.delete(base)).status == 204
    await until_refused(orphaned)
