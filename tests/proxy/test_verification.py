"""Token verification under load: single-flight, the thread pool, floods and shedding."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import threading
import time
from typing import Any

from gateway.core import tokens
from gateway.core.config import Settings
from gateway.proxy.app import VERIFY_QUEUE_PER_THREAD, VERIFY_THREADS
from tests.conftest import IssueToken, StartGateway
from tests.helpers import bearer, sample, until

# Cheap hashes, for tests that count verifications rather than time them.
FAST = tokens.Hasher(time_cost=1, memory_cost=1024, parallelism=1)


class GatedHasher(tokens.Hasher):
    """A real argon2 hasher that records where it runs and waits for a gate to open."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.gate = threading.Event()
        self.threads: list[int] = []
        self.calls = 0

    def verify(self, secret_hash: str, secret: str) -> bool:
        self.calls += 1
        self.threads.append(threading.get_ident())
        self.gate.wait(timeout=30)
        return super().verify(secret_hash, secret)


async def gated_client(settings: Settings, start_gateway: StartGateway) -> tuple[Any, GatedHasher]:
    hasher = GatedHasher()
    client = await start_gateway(settings, hasher=hasher)
    return client, hasher


async def test_concurrent_first_uses_share_one_verification_off_the_loop(
    gateway_settings: Settings, start_gateway: StartGateway, issue_token: IssueToken
) -> None:
    issued = await issue_token(hasher=FAST)
    client, hasher = await gated_client(gateway_settings, start_gateway)
    requests = [
        asyncio.create_task(client.get("/x", headers=bearer(issued.raw))) for _ in range(64)
    ]
    # All 64 are inside the gateway, waiting on one verification, before it may finish.
    await until(lambda: sample(client.gateway, "gateway_token_cache_total", result="miss") == 64)
    hasher.gate.set()
    responses = await asyncio.gather(*requests)
    assert [r.status for r in responses] == [200] * 64
    assert hasher.calls == 1
    assert sample(client.gateway, "gateway_token_verifications_total", result="valid") == 1
    # argon2 ran on a pool thread, never on the event loop's.
    assert hasher.threads and threading.get_ident() not in hasher.threads


async def test_verifications_beyond_the_queue_are_shed(
    gateway_settings: Settings, start_gateway: StartGateway, issue_token: IssueToken
) -> None:
    limit = VERIFY_THREADS * VERIFY_QUEUE_PER_THREAD
    issued = [await issue_token(hasher=FAST) for _ in range(limit + 3)]
    client, hasher = await gated_client(gateway_settings, start_gateway)
    first = [asyncio.create_task(client.get("/x", headers=bearer(t.raw))) for t in issued[:limit]]
    await until(lambda: hasher.calls == VERIFY_THREADS)
    auth_path = client.gateway.auth
    await until(lambda: auth_path._pending == limit)
    # The queue is full: new first uses are turned away at once instead of queueing.
    for extra in issued[limit:]:
        response = await client.get("/x", headers=bearer(extra.raw))
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"]["code"] == "unavailable"
    hasher.gate.set()
    assert [r.status for r in await asyncio.gather(*first)] == [200] * limit
    assert sample(client.gateway, "gateway_requests_total", outcome="unavailable") == 3
    # Shedding was temporary: the same tokens pass once the queue drained.
    for extra in issued[limit:]:
        assert (await client.get("/x", headers=bearer(extra.raw))).status == 200


async def test_wrong_secret_flood_does_not_slow_the_owner(
    gateway_client: Any, issue_token: IssueToken
) -> None:
    """Hundreds of wrong secrets for one real token id (default argon2 profile)."""
    owner = await issue_token()
    assert (await gateway_client.get("/x", headers=bearer(owner.raw))).status == 200
    wrong = [
        str(tokens.Token("tg", owner.token_id, tokens.generate("tg").secret)) for _ in range(400)
    ]
    statuses: list[int] = []

    async def attacker(batch: list[str]) -> None:
        for raw in batch:
            statuses.append((await gateway_client.get("/x", headers=bearer(raw))).status)

    flood = [asyncio.create_task(attacker(wrong[i::8])) for i in range(8)]
    latencies = []
    while not all(task.done() for task in flood):
        started = time.perf_counter()
        response = await gateway_client.get("/x", headers=bearer(owner.raw))
        latencies.append(time.perf_counter() - started)
        assert response.status == 200  # the proven owner is never throttled
    await asyncio.gather(*flood)
    assert set(statuses) <= {401, 429}
    # The per-id throttle lets a few attempts through, then refuses without argon2.
    runs = sample(gateway_client.gateway, "gateway_token_verifications_total", result="invalid")
    assert 1 <= runs <= 5
    assert statuses.count(429) >= len(wrong) - 5
    assert len(latencies) >= 10
    # Gross bounds: a quiet machine stays under 25 ms; one at load 8 gave a 60 ms median.
    # Without the protections each wrong secret would queue a ~25 ms argon2 run, and the
    # owner would wait behind 400 of them (seconds).
    assert statistics.median(latencies) < 0.25
    assert statistics.quantiles(latencies, n=10)[-1] < 1.0


async def test_throttled_attempts_get_retry_after(
    gateway_client: Any, issue_token: IssueToken
) -> None:
    owner = await issue_token(hasher=FAST)
    for _ in range(5):
        wrong = str(tokens.Token("tg", owner.token_id, tokens.generate("tg").secret))
        assert (await gateway_client.get("/x", headers=bearer(wrong))).status == 401
    wrong = str(tokens.Token("tg", owner.token_id, tokens.generate("tg").secret))
    response = await gateway_client.get("/x", headers=bearer(wrong))
    assert response.status == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert "RateLimit-Limit" not in response.headers  # not an authenticated answer


async def test_state_is_trusted_for_the_cache_ttl_only(
    gateway_settings: Settings,
    start_gateway: StartGateway,
    issue_token: IssueToken,
    pg_pool: Any,
) -> None:
    """Without any notification, a deleted row stops working once the TTL has passed."""
    now = [1000.0]
    settings = dataclasses.replace(gateway_settings, token_cache_ttl=30)
    client = await start_gateway(settings, clock=lambda: now[0])
    issued = await issue_token()
    assert (await client.get("/x", headers=bearer(issued.raw))).status == 200
    # Deleted behind the gateway's back (no NOTIFY): the cached state is still trusted.
    await pg_pool.execute("DELETE FROM tokens WHERE id = $1", issued.token_id)
    now[0] += 29
    assert (await client.get("/x", headers=bearer(issued.raw))).status == 200
    now[0] += 2
    assert (await client.get("/x", headers=bearer(issued.raw))).status == 401
    assert sample(client.gateway, "gateway_token_verifications_total", result="valid") == 1
