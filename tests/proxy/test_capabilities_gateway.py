"""Scopes, allowed addresses and TRUSTED_PROXIES through a real gateway (SPEC §10): the 403s,
decided after the proof and before the rate limit, and the X-Forwarded-For sent upstream."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway.core.capabilities import parse_network
from gateway.core.config import Settings
from gateway.core.store import Store
from gateway.proxy.app import running, serve
from tests.conftest import IssueToken, StartGateway
from tests.helpers import CHEAP_HASHER, Issued, bearer, issue, sample

SCOPES = ("GET /v1/validate", "* /v1/status", "POST /v1/items/")


def exact(port: int, target: str, host: str = "127.0.0.1") -> URL:
    """The target byte for byte: the test client would re-encode a relative one."""
    return URL(f"http://{host}:{port}{target}", encoded=True)


async def call(client: Any, issued: Issued, method: str, target: str, **headers: str) -> Any:
    async with client.session.request(
        method, exact(client.port, target), headers=bearer(issued.raw, **headers)
    ) as response:
        body = await response.json()
        return response.status, response.headers, body


def forwarded_for(echo: dict[str, Any]) -> list[str]:
    return [value for name, value in echo["headers"] if name.lower() == "x-forwarded-for"]


@pytest.mark.parametrize(
    ("method", "target", "allowed"),
    [
        ("GET", "/v1/validate", True),
        ("GET", "/v1/validate?email=a%40b.c", True),
        ("GET", "/v1/validate/deep/er", True),
        ("GET", "/v1/validated", False),
        ("GET", "/v1/valid", False),
        ("POST", "/v1/validate", False),
        ("HEAD", "/v1/validate", False),
        ("DELETE", "/v1/status", True),
        ("PUT", "/v1/status/7", True),
        ("GET", "/v1/statuses", False),
        ("POST", "/v1/items/9", True),
        ("POST", "/v1/items", False),
        ("GET", "/v1/%76alidate", True),
        ("GET", "/v1/%76alidated", False),
        # UPSTREAM_URL's own path is not part of what scopes match.
        ("GET", "/base/v1/validate", False),
        ("GET", "/", False),
    ],
)
async def test_scopes_cover_methods_and_path_prefixes(
    gateway_client: Any, issue_token: IssueToken, method: str, target: str, allowed: bool
) -> None:
    issued = await issue_token(scopes=SCOPES)
    async with gateway_client.session.request(
        method, exact(gateway_client.port, target), headers=bearer(issued.raw)
    ) as response:
        if allowed:
            assert response.status == 200
            if method != "HEAD":
                echo = await response.json()
                assert echo["raw_path"] == "/base" + target.partition("?")[0]
            return
        assert response.status == 403
        assert response.headers["WWW-Authenticate"] == (
            'Bearer realm="tollgate", error="insufficient_scope"'
        )
        if method != "HEAD":
            assert (await response.json())["error"]["code"] == "insufficient_scope"
        assert response.headers["X-Request-Id"]
    gateway = gateway_client.gateway
    assert sample(gateway, "gateway_requests_total", outcome="forbidden") == 1


async def test_a_refused_request_uses_none_of_the_rate_limit(
    gateway_client: Any, issue_token: IssueToken
) -> None:
    issued = await issue_token(rate_limit="2/minute", scopes=("GET /v1/validate",))
    for _ in range(5):
        status, headers, body = await call(gateway_client, issued, "GET", "/v1/other")
        assert (status, body["error"]["code"]) == (403, "insufficient_scope")
        assert "RateLimit-Remaining" not in headers
    remaining = []
    for _ in range(3):
        status, headers, _ = await call(gateway_client, issued, "GET", "/v1/validate")
        remaining.append((status, headers.get("RateLimit-Remaining")))
    assert remaining == [(200, "1"), (200, "0"), (429, "0")]
    gateway = gateway_client.gateway
    assert sample(gateway, "gateway_requests_total", outcome="forbidden") == 5
    assert sample(gateway, "gateway_requests_total", outcome="proxied") == 2


async def test_unknown_tokens_get_401_before_any_scope_is_considered(
    gateway_client: Any, issue_token: IssueToken
) -> None:
    issued = await issue_token(scopes=("GET /v1/validate",))
    wrong = Issued(issued.raw[:-8] + "AAAAAAAA", issued.token_id, issued.project_id)
    status, _, body = await call(gateway_client, wrong, "GET", "/v1/other")
    assert (status, body["error"]["code"]) == (401, "invalid_token")


async def test_rules_are_compiled_once_with_the_cached_state(
    gateway_client: Any, issue_token: IssueToken
) -> None:
    issued = await issue_token(scopes=SCOPES, allowed_ips=("127.0.0.0/8",))
    await call(gateway_client, issued, "GET", "/v1/validate")
    states = gateway_client.gateway.auth.states
    rules = states.get(issued.token_id).rules
    assert rules is not None
    for target in ("/v1/validate", "/v1/status", "/v1/nope"):
        await call(gateway_client, issued, "GET", target)
    assert states.get(issued.token_id).rules is rules
    plain = await issue_token()
    await call(gateway_client, plain, "GET", "/v1/anything")
    assert states.get(plain.token_id).rules is None


# ---------------------------------------------------------------- addresses


async def test_an_allowlist_admits_its_addresses_only(
    gateway_client: Any, issue_token: IssueToken
) -> None:
    inside = await issue_token(allowed_ips=("203.0.113.0/24", "127.0.0.1"))
    outside = await issue_token(allowed_ips=("203.0.113.0/24", "2001:db8::/48"))
    status, _, _ = await call(gateway_client, inside, "GET", "/v1/x")
    assert status == 200
    status, headers, body = await call(gateway_client, outside, "GET", "/v1/x")
    assert (status, body["error"]["code"]) == (403, "ip_not_allowed")
    assert "WWW-Authenticate" not in headers
    assert sample(gateway_client.gateway, "gateway_requests_total", outcome="forbidden") == 1


async def test_without_trusted_proxies_x_forwarded_for_cannot_smuggle_an_address(
    gateway_client: Any, issue_token: IssueToken
) -> None:
    issued = await issue_token(allowed_ips=("203.0.113.0/24",))
    forged = {"X-Forwarded-For": "203.0.113.9"}
    status, _, body = await call(gateway_client, issued, "GET", "/v1/x", **forged)
    assert (status, body["error"]["code"]) == (403, "ip_not_allowed")
    anyone = await issue_token()
    status, _, echo = await call(gateway_client, anyone, "GET", "/v1/x", **forged)
    assert status == 200
    assert forwarded_for(echo) == ["127.0.0.1"]


@pytest.fixture
def behind_proxies(gateway_settings: Settings) -> Settings:
    """This host (the test client) is a trusted load balancer, and so is 10.0.0.0/8."""
    trusted = tuple(parse_network(n) for n in ("127.0.0.1", "10.0.0.0/8"))
    return dataclasses.replace(gateway_settings, trusted_proxies=trusted)


@pytest.mark.parametrize(
    ("xff", "allowed", "sent"),
    [
        ("203.0.113.9", True, "203.0.113.9, 127.0.0.1"),
        ("203.0.113.9, 10.1.1.1, 10.2.2.2", True, "203.0.113.9, 10.1.1.1, 10.2.2.2, 127.0.0.1"),
        ("203.0.114.9, 10.1.1.1", False, None),
        # A client claiming an allowed address left of its own is not believed.
        ("203.0.113.9, 198.51.100.1, 10.1.1.1", False, None),
        ("2001:db8:0:1::5, 10.1.1.1", True, "2001:db8:0:1::5, 10.1.1.1, 127.0.0.1"),
        ("2001:db8:1::5, 10.1.1.1", False, None),
        # Only proxies in the chain, or none: no client address to allow.
        ("10.9.9.9", False, None),
        ("", False, None),
    ],
)
async def test_behind_trusted_proxies_the_right_most_untrusted_address_is_the_client(
    behind_proxies: Settings,
    start_gateway: StartGateway,
    issue_token: IssueToken,
    xff: str,
    allowed: bool,
    sent: str | None,
) -> None:
    client = await start_gateway(behind_proxies)
    issued = await issue_token(allowed_ips=("203.0.113.0/24", "2001:db8::/48"))
    headers = {"X-Forwarded-For": xff} if xff else {}
    status, _, body = await call(client, issued, "GET", "/v1/x", **headers)
    if not allowed:
        assert (status, body["error"]["code"]) == (403, "ip_not_allowed")
        return
    assert status == 200
    assert forwarded_for(body) == [sent]


async def test_behind_trusted_proxies_the_chain_reaches_the_upstream_without_forgeries(
    behind_proxies: Settings, start_gateway: StartGateway, issue_token: IssueToken
) -> None:
    client = await start_gateway(behind_proxies)
    anyone = await issue_token()
    # Two header lines, as when each proxy adds its own instead of appending.
    async with client.session.get(
        client.make_url("/v1/x"),
        headers=[
            ("Authorization", f"Bearer {anyone.raw}"),
            ("X-Forwarded-For", "6.6.6.6, 203.0.113.9"),
            ("X-Forwarded-For", "10.1.1.1"),
        ],
    ) as response:
        echo = await response.json()
    assert forwarded_for(echo) == ["203.0.113.9, 10.1.1.1, 127.0.0.1"]


# ---------------------------------------------------------------- over IPv6


@contextlib.asynccontextmanager
async def on_ipv6(settings: Settings) -> AsyncIterator[tuple[int, aiohttp.ClientSession]]:
    async with (
        running(settings) as gateway,
        serve(gateway, "::1", 0, shutdown_timeout=1.0) as server,
        aiohttp.ClientSession() as session,
    ):
        yield server.port, session


async def test_ipv6_clients_are_matched_against_ipv6_blocks(
    gateway_settings: Settings, store: Store
) -> None:
    loopback = await issue(store, allowed_ips=("::1",), hasher=CHEAP_HASHER)
    block = await issue(store, allowed_ips=("::/127", "127.0.0.1"), hasher=CHEAP_HASHER)
    elsewhere = await issue(store, allowed_ips=("2001:db8::/48", "127.0.0.1"), hasher=CHEAP_HASHER)
    async with on_ipv6(gateway_settings) as (port, session):
        seen = {}
        for name, issued in {"loopback": loopback, "block": block, "else": elsewhere}.items():
            url = exact(port, "/v1/x", host="[::1]")
            async with session.get(url, headers=bearer(issued.raw)) as response:
                body = await response.json()
                seen[name] = response.status
                if response.status == 200:
                    assert forwarded_for(body) == ["::1"]
                else:
                    assert body["error"]["code"] == "ip_not_allowed"
    assert seen == {"loopback": 200, "block": 200, "else": 403}
