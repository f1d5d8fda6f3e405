"""Instant revocation over LISTEN/NOTIFY, and life with Postgres unreachable.

Faults are injected at the network: each gateway here reaches Postgres through a
TCP relay (tests/relay.py) that the test cuts and restores; the shared server is
never stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.core.config import Settings
from gateway.core.journal import CLI
from gateway.core.rates import Rate
from gateway.core.store import Store
from gateway.core.tokens import Hasher
from gateway.proxy.auth import Authenticator
from gateway.proxy.caches import TokenState
from gateway.proxy.listener import Listener
from gateway.proxy.metrics import GatewayMetrics
from tests.conftest import Issued, IssueToken, StartGateway
from tests.helpers import bearer, sample, typo, until
from tests.relay import Relay

Condition = Callable[[], Awaitable[bool]]


async def refused(client: Any, issued: Issued) -> bool:
    return (await client.get("/x", headers=bearer(issued.raw))).status == 401


@pytest.fixture
async def relay(database_url: str) -> AsyncIterator[Relay]:
    relay = Relay(database_url)
    await relay.start()
    yield relay
    await relay.close()


@pytest.fixture
def relayed_settings(gateway_settings: Settings, relay: Relay) -> Settings:
    return dataclasses.replace(gateway_settings, database_url=relay.url)


async def test_revocation_reaches_two_gateways_within_100_ms(
    gateway_settings: Settings, start_gateway: StartGateway, issue_token: IssueToken, store: Store
) -> None:
    gateways = [await start_gateway(gateway_settings) for _ in range(2)]
    assert all(client.gateway.is_ready() for client in gateways)
    elapsed = []
    # Three revocations: the median says what the design does; a single one would
    # mostly measure how busy the machine was at that moment.
    for _ in range(3):
        issued = await issue_token()
        for client in gateways:
            assert (await client.get("/x", headers=bearer(issued.raw))).status == 200
        assert await store.revoke_token(issued.project_id, issued.token_id, actor=CLI)
        committed = time.monotonic()
        for client in gateways:
            await until(lambda c=client, t=issued: refused(c, t), timeout=2)
            elapsed.append(time.monotonic() - committed)
    assert statistics.median(elapsed) < 0.1
    assert max(elapsed) < 1  # far below TOKEN_CACHE_TTL (30 s): it was the notification
    for client in gateways:
        gateway = client.gateway
        assert sample(gateway, "gateway_revocations_received_total") == 3
        # Commit to eviction, from the payload's timestamp.
        assert sample(gateway, "gateway_revocation_propagation_seconds_count") == 3
        assert sample(gateway, "gateway_revocation_propagation_seconds_bucket", le="0.1") >= 2


async def test_deleting_a_project_stops_its_tokens_at_once(
    gateway_client: Any, issue_token: IssueToken, store: Store
) -> None:
    first = await issue_token()
    second = await issue_token(project_id=first.project_id)
    other = await issue_token()
    for issued in (first, second, other):
        assert (await gateway_client.get("/x", headers=bearer(issued.raw))).status == 200
    assert await store.delete_project(first.project_id, actor=CLI)
    await until(lambda: refused(gateway_client, first), timeout=1)
    assert await refused(gateway_client, second)
    assert (await gateway_client.get("/x", headers=bearer(other.raw))).status == 200


async def test_new_rate_limit_applies_at_once(
    gateway_client: Any, issue_token: IssueToken, store: Store
) -> None:
    issued = await issue_token()
    response = await gateway_client.get("/x", headers=bearer(issued.raw))
    assert response.headers["RateLimit-Limit"] == "600"
    await store.update_project(issued.project_id, rate_limit="2/minute", actor=CLI)

    async def limited() -> bool:
        response = await gateway_client.get("/x", headers=bearer(issued.raw))
        return response.headers.get("RateLimit-Limit") == "2"

    assert await until(limited, timeout=1) < 0.1
    # Over the new limit: 429 with Retry-After and the RateLimit headers.
    statuses = []
    for _ in range(3):
        response = await gateway_client.get("/x", headers=bearer(issued.raw))
        statuses.append(response.status)
    assert statuses[-1] == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["RateLimit-Remaining"] == "0"
    assert response.headers["X-Request-Id"]
    assert (await response.json())["error"]["code"] == "rate_limited"
    assert sample(gateway_client.gateway, "gateway_requests_total", outcome="rate_limited") >= 1


async def test_caught_up_applies_what_was_committed_before(
    relayed_settings: Settings,
    start_gateway: StartGateway,
    issue_token: IssueToken,
    relay: Relay,
    store: Store,
) -> None:
    # What `gateway up` waits for before the admin answers a change: one round trip on
    # the LISTEN connection brings the notifications committed before it.
    client = await start_gateway(relayed_settings)
    issued = await issue_token()
    assert (await client.get("/x", headers=bearer(issued.raw))).status == 200
    relay.answer_delay = 0.5  # Postgres's messages to the gateway now take half a second
    assert await store.revoke_token(issued.project_id, issued.token_id, actor=CLI)
    # Served from the cache: the notification is still on its way.
    assert (await client.get("/x", headers=bearer(issued.raw))).status == 200
    await client.gateway.listener.caught_up()
    assert (await client.get("/x", headers=bearer(issued.raw))).status == 401
    relay.answer_delay = 0.0  # the gateway's shutdown flush need not wait


async def test_proven_tokens_keep_working_without_postgres(
    relayed_settings: Settings, start_gateway: StartGateway, issue_token: IssueToken, relay: Relay
) -> None:
    now = [1000.0]
    client = await start_gateway(relayed_settings, clock=lambda: now[0])
    proven = await issue_token()
    unproven = await issue_token()
    assert (await client.get("/x", headers=bearer(proven.raw))).status == 200
    await relay.cut()
    await until(lambda: not client.gateway.is_ready(), timeout=5)
    # Cached and fresh: served with no database at all.
    assert (await client.get("/x", headers=bearer(proven.raw))).status == 200
    # Past TOKEN_CACHE_TTL the refresh fails: the stale state is served.
    now[0] += relayed_settings.token_cache_ttl + 1
    assert (await client.get("/x", headers=bearer(proven.raw))).status == 200
    assert (await client.get("/x", headers=bearer(proven.raw))).status == 200
    # A genuine token never proven here cannot be checked: 503, never 401 (and
    # retrying is not held against it as failed attempts: never 429 either).
    for _ in range(7):
        response = await client.get("/x", headers=bearer(unproven.raw))
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"]["code"] == "unavailable"
    # Garbage still gets its 401: the checksum needs no database.
    assert (await client.get("/x", headers=bearer(typo(unproven.raw)))).status == 401
    assert sample(client.gateway, "gateway_requests_total", outcome="unavailable") == 7
    await relay.restore()
    await until(lambda: client.gateway.is_ready(), timeout=10)
    assert (await client.get("/x", headers=bearer(unproven.raw))).status == 200


async def test_listen_connection_cut_and_restored(
    relayed_settings: Settings,
    start_gateway: StartGateway,
    issue_token: IssueToken,
    relay: Relay,
    store: Store,
) -> None:
    client = await start_gateway(relayed_settings)
    listener = client.gateway.listener
    kept = await issue_token()
    lost = await issue_token()
    for issued in (kept, lost):
        assert (await client.get("/x", headers=bearer(issued.raw))).status == 200
    assert listener.connected
    await relay.cut()
    await until(lambda: not listener.connected, timeout=5)
    # Revoked while the gateway could not hear it: the notification is lost.
    assert await store.revoke_token(lost.project_id, lost.token_id, actor=CLI)
    await relay.restore()
    await until(lambda: listener.connected, timeout=10)
    assert listener.connections == 2
    # After the reconnect every cached state is stale: the missed revocation shows...
    assert await refused(client, lost)
    assert (await client.get("/x", headers=bearer(kept.raw))).status == 200
    # ...and revocation is instant again (commit to eviction, from the payload's time).
    assert sample(client.gateway, "gateway_revocation_propagation_seconds_count") == 0
    assert await store.revoke_token(kept.project_id, kept.token_id, actor=CLI)
    assert await until(lambda: refused(client, kept), timeout=2) < 1
    assert sample(client.gateway, "gateway_revocation_propagation_seconds_count") == 1
    assert sample(client.gateway, "gateway_revocation_propagation_seconds_sum") < 0.1
    # The proof survived the reconnect: no argon2 run was needed again.
    assert sample(client.gateway, "gateway_token_verifications_total", result="valid") == 2


async def test_listen_connects_to_database_listen_url(
    gateway_settings: Settings,
    start_gateway: StartGateway,
    issue_token: IssueToken,
    relay: Relay,
) -> None:
    # Queries straight to Postgres, LISTEN through the relay: cutting it ends only LISTEN.
    settings = dataclasses.replace(gateway_settings, database_listen_url=relay.url)
    client = await start_gateway(settings)
    listener = client.gateway.listener
    assert listener.connected
    await relay.cut()
    await until(lambda: not listener.connected, timeout=5)
    assert not client.gateway.is_ready()
    # The pool on DATABASE_URL still answers: a token never seen before is verified.
    async with client.get("/x", headers=bearer((await issue_token()).raw)) as response:
        assert response.status == 200
    await relay.restore()
    await until(lambda: listener.connected, timeout=10)


class FreezingRelay(Relay):
    """A relay that can go silent without closing anything (a network partition)."""

    frozen = False

    async def _pipe(self, reader: Any, *rest: Any) -> None:
        await super()._pipe(_Held(reader, self), *rest)


class _Held:
    """A stream reader whose data waits while its relay is frozen."""

    def __init__(self, reader: asyncio.StreamReader, relay: FreezingRelay) -> None:
        self._reader = reader
        self._relay = relay

    async def read(self, n: int) -> bytes:
        data = await self._reader.read(n)
        while self._relay.frozen:
            await asyncio.sleep(0.01)
        return data


async def test_silent_network_is_noticed_by_the_ping(
    database_url: str, store: Store, pg_pool: Any
) -> None:
    relay = FreezingRelay(database_url)
    await relay.start()
    metrics = GatewayMetrics(CollectorRegistry())
    executor = ThreadPoolExecutor(1)
    auth = Authenticator(
        store,
        Hasher(),
        executor,
        metrics,
        prefix="tg",
        ttl=30,
        default_rate=Rate(10, 60),
        max_pending=1,
    )
    listener = Listener(relay.url, auth, metrics, ping_interval=0.1, ping_timeout=0.3)
    try:
        await listener.start()
        assert listener.connected
        auth.states.put(TokenState("t1", "p1", None, Rate(10, 60)))
        relay.frozen = True  # no reset, no FIN: only the ping can tell
        await until(lambda: not listener.connected, timeout=5)
        relay.frozen = False
        await until(lambda: listener.connected, timeout=15)
        assert listener.connections == 2
        # Whatever was missed meanwhile: the cached state is stale (kept as a fallback).
        assert auth.states.get("t1") is None
        assert auth.states.stale("t1") is not None
    finally:
        await listener.close()
        await relay.close()
        executor.shutdown()
