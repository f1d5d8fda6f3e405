"""Webhooks through the admin API (SPEC §12): create with a secret shown once, list, delete,
send a test event and read its delivery; the SSRF rule at creation; the audit events."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
from typing import Any

import asyncpg
import pytest
from standardwebhooks import Webhook as Verifier

from admin.app import create_app
from admin.delivery import DeliveryOptions
from admin.ssrf import Guard, NotAllowed, refusal
from gateway.core.config import Settings
from gateway.core.store_webhooks import WEBHOOKS_MAX
from tests.admin.test_api import error_of, new_project
from tests.conftest import ADMIN_AUTH
from tests.helpers import MISSING_ID, until
from tests.receiver import Receiver

Client = Any
MISSING = MISSING_ID


@pytest.fixture
async def guarded_client(settings: Settings, pg_pool: asyncpg.Pool, aiohttp_client: Any) -> Any:
    """The admin API as deployed: private addresses are not allowed."""
    strict = dataclasses.replace(settings, webhook_allow_private=False)
    app = create_app(strict, delivery=DeliveryOptions(run=False))
    return await aiohttp_client(app, headers=ADMIN_AUTH)


async def new_webhook(client: Client, project_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/projects/{project_id}/webhooks", json=body)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


# ---------------------------------------------------------------- create, list, delete


async def test_create_list_and_delete_a_webhook(
    admin_client: Client, receiver: Receiver, pg_pool: asyncpg.Pool
) -> None:
    project = await new_project(admin_client)
    base = f"/v1/projects/{project['id']}/webhooks"
    response = await admin_client.post(base, json={"url": receiver.url()})
    assert response.status == 201
    assert response.headers["Cache-Control"] == "no-store"
    created = await response.json()
    assert response.headers["Location"] == f"{base}/{created['id']}"
    assert set(created) == {"id", "project_id", "url", "events", "created_at", "secret"}
    assert (created["url"], created["events"]) == (receiver.url(), [])
    secret = created.pop("secret")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32

    listing = await (await admin_client.get(base)).json()
    assert listing == {"webhooks": [created]}
    assert secret not in await (await admin_client.get(base)).text()

    assert (await admin_client.delete(f"{base}/{created['id']}")).status == 204
    assert await (await admin_client.get(base)).json() == {"webhooks": []}
    error = await error_of(await admin_client.delete(f"{base}/{created['id']}"), 404)
    assert error["code"] == "webhook_not_found"
    audit = await pg_pool.fetch(
        "SELECT action, actor_type, target_id FROM audit_events WHERE project_id = $1 "
        "AND action LIKE 'webhook.%' ORDER BY id",
        project["id"],
    )
    assert [tuple(row) for row in audit] == [
        ("webhook.created", "bootstrap", created["id"]),
        ("webhook.deleted", "bootstrap", created["id"]),
    ]


async def test_events_are_checked_and_stored_once_each(admin_client: Client) -> None:
    project = await new_project(admin_client)
    hook = await new_webhook(
        admin_client,
        project["id"],
        url="http://127.0.0.1:9/x",
        events=["token.revoked", "token.created", "token.revoked"],
    )
    assert hook["events"] == ["token.created", "token.revoked"]
    response = await admin_client.post(
        f"/v1/projects/{project['id']}/webhooks",
        json={"url": "http://127.0.0.1:9/x", "events": ["webhook.test"]},
    )
    assert (await error_of(response, 400))["code"] == "invalid_value"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/x", "invalid_value"),
        ("http://", "invalid_value"),
        ("https://user:secret@example.com/hook", "invalid_value"),
        ("https://example.com/hook#part", "invalid_value"),
        ("https://example.com:99999/hook", "invalid_value"),
        ("https://exa mple.com/hook", "invalid_value"),
        ("https://no-such-host.invalid/hook", "webhook_url_unresolvable"),
    ],
)
async def test_urls_that_cannot_be_used_are_refused(
    admin_client: Client, url: str, code: str, pg_pool: asyncpg.Pool
) -> None:
    project = await new_project(admin_client)
    response = await admin_client.post(f"/v1/projects/{project['id']}/webhooks", json={"url": url})
    error = await error_of(response, 400)
    assert error["code"] == code and '"url"' in error["message"]
    assert "secret" not in error["message"]
    assert await pg_pool.fetchval("SELECT count(*) FROM webhooks") == 0


async def test_a_project_has_at_most_so_many_webhooks(admin_client: Client) -> None:
    project = await new_project(admin_client)
    for _ in range(WEBHOOKS_MAX):
        await new_webhook(admin_client, project["id"], url="http://127.0.0.1:9/x")
    response = await admin_client.post(
        f"/v1/projects/{project['id']}/webhooks", json={"url": "http://127.0.0.1:9/x"}
    )
    assert (await error_of(response, 409))["code"] == "too_many_webhooks"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/projects/{missing}/webhooks",
        "/v1/projects/{project}/webhooks/{missing}",
        "/v1/projects/{project}/webhooks/{missing}/deliveries",
        "/v1/projects/{project}/webhooks/%00/deliveries",
    ],
)
async def test_missing_projects_and_webhooks_are_404(admin_client: Client, path: str) -> None:
    project = await new_project(admin_client)
    url = path.format(missing=MISSING, project=project["id"])
    method = "DELETE" if url.endswith(MISSING) and "webhooks/" in url else "GET"
    response = await admin_client.request(method, url)
    assert response.status == 404
    response = await admin_client.post(f"/v1/projects/{project['id']}/webhooks/{MISSING}/test")
    assert (await error_of(response, 404))["code"] == "webhook_not_found"


async def test_another_projects_webhook_is_not_found(admin_client: Client) -> None:
    mine, theirs = await new_project(admin_client), await new_project(admin_client)
    hook = await new_webhook(admin_client, theirs["id"], url="http://127.0.0.1:9/x")
    for method, tail in [("DELETE", ""), ("POST", "/test"), ("GET", "/deliveries")]:
        url = f"/v1/projects/{mine['id']}/webhooks/{hook['id']}{tail}"
        assert (await admin_client.request(method, url)).status == 404, (method, tail)


# ---------------------------------------------------------------- test events and deliveries


async def test_send_a_test_event_and_read_its_delivery(
    admin_client: Client, receiver: Receiver
) -> None:
    project = await new_project(admin_client)
    hook = await new_webhook(
        admin_client, project["id"], url=receiver.url(), events=["quota.warning"]
    )
    base = f"/v1/projects/{project['id']}/webhooks/{hook['id']}"
    response = await admin_client.post(f"{base}/test")
    assert response.status == 202
    event_id = (await response.json())["event_id"]
    # The test event goes to this webhook, whatever it subscribes to, and at once.
    await until(lambda: receiver.received, what="the test event")
    (item,) = receiver.received
    body = Verifier(hook["secret"]).verify(item.body, item.headers)
    assert item.event_id == event_id and body["type"] == "webhook.test"
    assert body["data"]["webhook"] == {
        "id": hook["id"],
        "project_id": project["id"],
        "url": receiver.url(),
    }

    async def delivered() -> list[dict[str, Any]]:
        answer = await (await admin_client.get(f"{base}/deliveries")).json()
        found: list[dict[str, Any]] = answer["deliveries"]
        return found if found and found[0]["state"] == "delivered" else []

    await until(delivered, what="the delivery recorded")
    (delivery,) = await delivered()
    assert delivery["event_id"] == event_id and delivery["type"] == "webhook.test"
    assert (delivery["attempt"], delivery["status_code"], delivery["error"]) == (1, 200, None)
    assert delivery["next_attempt_at"] is None and delivery["duration_ms"] >= 0
    assert delivery["attempted_at"] is not None


async def test_a_test_event_goes_out_at_once_not_at_the_next_look(
    settings: Settings, pg_pool: asyncpg.Pool, aiohttp_client: Any, receiver: Receiver
) -> None:
    # The outbox is looked at every minute here: only the test itself can make it go now.
    sleepy = dataclasses.replace(DeliveryOptions(), poll_interval=60.0)
    client = await aiohttp_client(create_app(settings, delivery=sleepy), headers=ADMIN_AUTH)
    project = await new_project(client)
    hook = await new_webhook(client, project["id"], url=receiver.url())
    await client.post(f"/v1/projects/{project['id']}/webhooks/{hook['id']}/test")
    await until(lambda: receiver.received, what="the test event, without waiting a minute")


async def test_deliveries_are_listed_newest_first_with_a_limit(admin_client: Client) -> None:
    project = await new_project(admin_client)
    hook = await new_webhook(admin_client, project["id"], url="http://127.0.0.1:9/x")
    base = f"/v1/projects/{project['id']}/webhooks/{hook['id']}"
    sent = [(await (await admin_client.post(f"{base}/test")).json())["event_id"] for _ in range(3)]
    answer = await (await admin_client.get(f"{base}/deliveries", params={"limit": "2"})).json()
    assert [d["event_id"] for d in answer["deliveries"]] == sent[::-1][:2]
    response = await admin_client.get(f"{base}/deliveries", params={"limit": "0"})
    assert (await error_of(response, 400))["code"] == "invalid_parameter"


# ---------------------------------------------------------------- the SSRF rule at creation


REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "[::1]",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "[fd00:ec2::254]",
    "[fc00::1]",
    "[fe80::1]",
    "100.64.0.1",
    "100.100.100.200",
    "224.0.0.1",
    "[ff02::1]",
    "0.0.0.0",  # noqa: S104 - an address refused, not bound
    "240.0.0.1",
    "192.0.2.1",
    "[::ffff:127.0.0.1]",
    "[::ffff:169.254.169.254]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]",
    "localhost",
]


@pytest.mark.parametrize("host", REFUSED)
async def test_urls_reaching_non_public_addresses_are_refused(
    guarded_client: Client, host: str, pg_pool: asyncpg.Pool
) -> None:
    project = await new_project(guarded_client)
    response = await guarded_client.post(
        f"/v1/projects/{project['id']}/webhooks", json={"url": f"https://{host}/hook"}
    )
    error = await error_of(response, 400)
    assert error["code"] == "webhook_url_not_allowed"
    assert await pg_pool.fetchval("SELECT count(*) FROM webhooks") == 0


@pytest.mark.parametrize("host", ["93.184.215.14", "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]"])
async def test_public_addresses_are_accepted(guarded_client: Client, host: str) -> None:
    project = await new_project(guarded_client)
    await new_webhook(guarded_client, project["id"], url=f"https://{host}/hook")


def test_every_refused_category_and_metadata_address_says_what_it_is() -> None:
    says = {
        "169.254.169.254": "a cloud metadata address",
        "fd00:ec2::254": "a cloud metadata address",
        "127.0.0.1": "a loopback address",
        "::1": "a loopback address",
        "fe80::1": "a link-local address",
        "10.0.0.1": "a private address",
        "fc00::1": "a private address",
        "100.64.0.1": "a CGNAT address",
        "224.0.0.1": "a multicast address",
        "::": "the unspecified address",
        "240.0.0.1": "a reserved address",
        "::ffff:10.0.0.1": "a private address",
        "8.8.8.8": None,
        "2001:4860:4860::8888": None,
    }
    assert {text: refusal(ipaddress.ip_address(text)) for text in says} == says


async def test_every_address_of_a_name_must_be_public() -> None:
    async def lookup(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.0.0.7"]

    with pytest.raises(NotAllowed, match=r"hooks\.example\.com resolves to a private address"):
        await Guard(allow_private=False, lookup=lookup).addresses("hooks.example.com", 443)
    allowed = await Guard(allow_private=True, lookup=lookup).addresses("hooks.example.com", 443)
    assert [str(a) for a in allowed] == ["93.184.215.14", "10.0.0.7"]
