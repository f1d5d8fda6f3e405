"""Delivering the outbox to a real receiver: signatures, retries, timeouts, two instances.

Each test runs its own deliverers on the test database with a shortened schedule (the
real one waits minutes), against receivers on real sockets (tests/receiver.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from standardwebhooks import Webhook as Verifier

from admin import signing
from admin.delivery import Deliverer, DeliveryOptions, Schedule
from admin.metrics import AdminMetrics
from admin.ssrf import Guard, Lookup
from gateway.core.journal import CLI
from gateway.core.store import Store
from gateway.core.store_webhooks import WebhookStore
from tests.helpers import CHEAP_HASHER, issue, until
from tests.receiver import Receiver

FAST = DeliveryOptions(
    schedule=Schedule(first=0.05, factor=2.0, longest=0.4, give_up_after=60.0, jitter=0.2),
    attempt_timeout=2.0,
    poll_interval=0.02,
    lease=10.0,
)

# One attempt within a test: the next would come after it ended.
NO_SECOND_TRY = replace(FAST.schedule, first=60.0, longest=60.0, give_up_after=3600.0)


@contextlib.asynccontextmanager
async def delivering(
    webhooks: WebhookStore,
    options: DeliveryOptions = FAST,
    *,
    allow_private: bool = True,
    lookup: Lookup | None = None,
) -> AsyncIterator[tuple[Deliverer, AdminMetrics]]:
    guard = Guard(allow_private=allow_private, **({"lookup": lookup} if lookup else {}))
    metrics = AdminMetrics(CollectorRegistry())
    async with Deliverer(webhooks, guard, metrics, options).running() as deliverer:
        yield deliverer, metrics


def counted(metrics: AdminMetrics, result: str) -> float:
    value = metrics.registry.get_sample_value("admin_webhook_deliveries_total", {"result": result})
    return value or 0.0


async def subscribed(
    store: Store, webhooks: WebhookStore, url: str, events: list[str] | None = None
) -> tuple[str, str, str]:
    """A project with one webhook at ``url``: (project id, webhook id, secret)."""
    project = await store.create_project("hooked", None, actor=CLI)
    secret = signing.new_secret()
    webhook = await webhooks.create(
        project.id, url=url, events=events or [], secret=secret, actor=CLI
    )
    assert webhook is not None
    return project.id, webhook.id, secret


async def states(pool: asyncpg.Pool) -> list[tuple[str, int]]:
    rows = await pool.fetch("SELECT state, attempts FROM webhook_deliveries ORDER BY id")
    return [(row["state"], row["attempts"]) for row in rows]


# ---------------------------------------------------------------- what is sent


async def test_changes_arrive_signed_per_standard_webhooks(
    store: Store, webhooks: WebhookStore, receiver: Receiver
) -> None:
    project_id, _, secret = await subscribed(store, webhooks, receiver.url())
    issued = await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    await store.update_project(project_id, name="renamed", rate_limit="5/second", actor=CLI)
    await store.revoke_token(project_id, issued.token_id, actor=CLI)
    async with delivering(webhooks):
        await until(lambda: len(receiver.received) == 3, what="three events")
    verifier = Verifier(secret)
    bodies = [verifier.verify(item.body, item.headers) for item in receiver.received]
    assert sorted(body["type"] for body in bodies) == [
        "project.updated",
        "token.created",
        "token.revoked",
    ]
    by_type = {body["type"]: body for body in bodies}
    token = by_type["token.created"]["data"]["token"]
    assert token["id"] == issued.token_id and token["project_id"] == project_id
    assert by_type["token.revoked"]["data"]["token"]["id"] == issued.token_id
    project = by_type["project.updated"]["data"]["project"]
    assert (project["name"], project["rate_limit"]) == ("renamed", "5/second")
    for item, body in zip(receiver.received, bodies, strict=True):
        assert set(body) == {"type", "timestamp", "data"}
        assert item.headers["content-type"] == "application/json"
        assert item.event_id.startswith("evt_")
        at = datetime.fromisoformat(body["timestamp"])
        assert abs(at - datetime.now(UTC)) < timedelta(minutes=1)
        assert issued.raw.rsplit("_", 1)[1] not in item.body.decode()  # never the secret
        assert secret not in item.body.decode()


async def test_a_forged_or_altered_request_fails_verification(
    store: Store, webhooks: WebhookStore, receiver: Receiver
) -> None:
    project_id, _, secret = await subscribed(store, webhooks, receiver.url())
    await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    async with delivering(webhooks):
        await until(lambda: receiver.received, what="the event")
    item = receiver.received[0]
    Verifier(secret).verify(item.body, item.headers)
    altered = item.body.replace(b"token.created", b"token.revoked")
    with pytest.raises(Exception, match="signature"):
        Verifier(secret).verify(altered, item.headers)
    with pytest.raises(Exception, match="signature"):
        Verifier(signing.new_secret()).verify(item.body, item.headers)


def test_our_signature_is_the_reference_one() -> None:
    """The signing code against the reference package, on a fixed input."""
    secret, body = signing.new_secret(), b'{"type":"webhook.test"}'
    when = datetime.now(UTC).replace(microsecond=0)
    ours = signing.signature(secret, "evt_1", int(when.timestamp()), body)
    assert ours == Verifier(secret).sign("evt_1", when, body.decode())
    assert secret.startswith("whsec_") and len(signing._key(secret)) == 32


async def test_only_subscribed_types_are_sent(
    store: Store, webhooks: WebhookStore, receiver: Receiver
) -> None:
    project_id, _, _ = await subscribed(store, webhooks, receiver.url(), ["token.revoked"])
    issued = await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    await store.revoke_token(project_id, issued.token_id, actor=CLI)
    async with delivering(webhooks):
        await until(lambda: receiver.received, what="the revocation")
    assert receiver.types() == ["token.revoked"]


async def test_events_are_written_with_their_change_and_only_then(
    store: Store, webhooks: WebhookStore, receiver: Receiver, pg_pool: asyncpg.Pool
) -> None:
    project_id, _, _ = await subscribed(store, webhooks, receiver.url())
    issued = await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    # Changes that do not happen leave no event: a revoke of a missing token, a token for
    # a deleted project, an empty update.
    assert not await store.revoke_token(project_id, "0" * 17, actor=CLI)
    assert await store.update_project(project_id, actor=CLI) is not None
    other = await store.create_project("gone", None, actor=CLI)
    await store.delete_project(other.id, actor=CLI)
    assert (
        await store.create_token(
            other.id,
            "1" * 17,
            secret_hash=CHEAP_HASHER.hash("x"),
            description="",
            expires_in_days=None,
            actor=CLI,
        )
        is None
    )
    rows = await pg_pool.fetch("SELECT type, data FROM outbox_events")
    assert [(row["type"], json.loads(row["data"])["token"]["id"]) for row in rows] == [
        ("token.created", issued.token_id)
    ]


# ---------------------------------------------------------------- retries


async def test_a_failing_receiver_is_retried_with_the_same_id_until_it_recovers(
    store: Store, webhooks: WebhookStore, receiver: Receiver, pg_pool: asyncpg.Pool
) -> None:
    receiver.answer = lambda number, event_id: 503 if number <= 2 else 204
    project_id, webhook_id, secret = await subscribed(store, webhooks, receiver.url())
    await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    async with delivering(webhooks) as (_, metrics):
        await until(lambda: counted(metrics, "delivered") == 1, what="delivered at last")
    assert len(receiver.received) == 3
    assert len({item.event_id for item in receiver.received}) == 1
    for item in receiver.received:  # each attempt signed anew, each verifiable
        Verifier(secret).verify(item.body, item.headers)
    assert len({item.body for item in receiver.received}) == 1
    assert counted(metrics, "retried") == 2 and counted(metrics, "failed") == 0
    (delivery,) = await webhooks.deliveries(project_id, webhook_id, limit=5)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 3, 204)
    assert delivery.next_attempt_at is None and delivery.last_error is None


async def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    store: Store, webhooks: WebhookStore, receiver: Receiver
) -> None:
    receiver.hang()
    project_id, webhook_id, _ = await subscribed(store, webhooks, receiver.url())
    await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    options = replace(FAST, attempt_timeout=0.2, schedule=NO_SECOND_TRY)
    async with delivering(webhooks, options) as (_, metrics):
        await until(lambda: counted(metrics, "retried") == 1, what="a timed-out attempt")
    (delivery,) = await webhooks.deliveries(project_id, webhook_id, limit=5)
    assert delivery.state == "pending" and delivery.last_status is None
    assert delivery.last_error == "timed out after 0.2 s"
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at - datetime.now(UTC) > timedelta(seconds=15)


async def test_a_connection_refused_is_retried_then_given_up_after_the_window(
    store: Store, webhooks: WebhookStore, receiver: Receiver
) -> None:
    url = receiver.url()
    await receiver.close()  # nothing listens there any more
    project_id, webhook_id, _ = await subscribed(store, webhooks, url)
    await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    options = replace(FAST, schedule=replace(FAST.schedule, give_up_after=0.5))
    async with delivering(webhooks, options) as (_, metrics):
        await until(lambda: counted(metrics, "failed") == 1, what="given up")
        assert counted(metrics, "retried") >= 1
    (delivery,) = await webhooks.deliveries(project_id, webhook_id, limit=5)
    assert delivery.state == "failed" and delivery.next_attempt_at is None
    assert delivery.last_error is not None and "Connect" in delivery.last_error


def test_the_schedule_retries_within_seconds_and_gives_up_after_a_day() -> None:
    schedule = Schedule()
    for jitter in (0.0, 0.5, 1.0):  # the jitter's extremes and middle
        delays = [schedule.delay(n, lambda value=jitter: value) for n in range(1, 20)]
        times = [sum(delays[:n]) for n in range(len(delays) + 1)]  # attempt n+1 at times[n]
        assert times[1] < 10  # the second attempt within seconds
        assert times[2] < 6 * 60  # the third within 6 minutes
        assert all(b > a * 1.5 for a, b in itertools.pairwise(delays[:5]))  # exponential
        last = max(n for n, at in enumerate(times) if at <= schedule.give_up_after)
        # Tried while the next try stays within the day: then given up (failed).
        assert times[last] <= 24 * 3600 < times[last + 1] and times[last] > 18 * 3600
        assert len({round(d) for d in delays[:3]}) == 3
    jittered = {Schedule().delay(1) for _ in range(20)}
    assert len(jittered) > 1 and all(4 <= d <= 6 for d in jittered)


# ---------------------------------------------------------------- instances, restarts, load


async def test_two_deliverers_never_send_the_same_attempt(
    store: Store, webhooks: WebhookStore, receiver: Receiver, pg_pool: asyncpg.Pool
) -> None:
    seen: set[str] = set()

    def first_attempt_fails(number: int, event_id: str) -> int:
        if event_id in seen:
            return 200
        seen.add(event_id)
        return 500

    receiver.answer = first_attempt_fails
    receiver.hang()
    project_id, _, _ = await subscribed(store, webhooks, receiver.url())
    for _ in range(30):
        await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    options = replace(FAST, concurrency=10)
    async with (
        delivering(webhooks, options) as (_, first),
        delivering(webhooks, options) as (
            _,
            second,
        ),
    ):
        # 20 in flight at once: each instance holds as many as it may, at the same time.
        await until(lambda: receiver.waiting == 20, what="both instances sending")
        receiver.release()
        await until(
            lambda: counted(first, "delivered") + counted(second, "delivered") == 30,
            what="every event delivered",
        )
    assert set(receiver.count().values()) == {2}  # each event: one failure, one success
    assert counted(first, "retried") >= 10 and counted(second, "retried") >= 10
    assert await states(pg_pool) == [("delivered", 2)] * 30


async def test_a_stop_hands_back_what_it_was_sending_and_the_next_one_sends_it(
    store: Store, webhooks: WebhookStore, receiver: Receiver, pg_pool: asyncpg.Pool
) -> None:
    receiver.hang()
    project_id, _, _ = await subscribed(store, webhooks, receiver.url())
    await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    async with delivering(webhooks):
        await until(lambda: receiver.waiting == 1, what="an attempt in flight")
    row = await pg_pool.fetchrow("SELECT leased_until, last_error FROM webhook_deliveries")
    assert row["leased_until"] is None and "interrupted" in row["last_error"]
    receiver.release()
    async with delivering(webhooks) as (_, metrics):
        await until(lambda: counted(metrics, "delivered") == 1, what="sent after the restart")
    assert await states(pg_pool) == [("delivered", 2)]


async def test_a_crashed_instances_lease_runs_out_and_another_sends_it(
    store: Store, webhooks: WebhookStore, receiver: Receiver, pg_pool: asyncpg.Pool
) -> None:
    project_id, _, _ = await subscribed(store, webhooks, receiver.url())
    await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    # An instance that claimed the delivery and stalled: it records nothing in time.
    (claimed,) = await webhooks.claim(10, lease=0.5)
    receiver.hang()
    async with delivering(webhooks) as (_, metrics):
        await until(lambda: receiver.waiting == 1, what="sent again once the lease ran out")
        # The stalled instance's late outcome no longer counts: that attempt is not its own,
        # and the attempt in flight keeps its lease (no third instance may take it).
        late = {"status": None, "error": "late", "duration_ms": 1.0}
        assert await webhooks.failed(claimed, **late, retry_in=0, give_up_after=60) is None
        assert not await webhooks.delivered(claimed, status=200, duration_ms=1.0)
        assert await pg_pool.fetchval("SELECT leased_until > now() FROM webhook_deliveries")
        assert await webhooks.claim(10, lease=0.5) == []
        receiver.release()
        await until(lambda: counted(metrics, "delivered") == 1, what="delivered by the second")
    assert receiver.count() == {claimed.event_id: 1}
    assert await states(pg_pool) == [("delivered", 2)]


async def test_a_hanging_receiver_neither_blocks_other_webhooks_nor_the_admin_api(
    store: Store, webhooks: WebhookStore, receiver: Receiver, admin_client: Any
) -> None:
    slow = receiver
    slow.hang()
    fast = await Receiver().start()
    try:
        slow_project, _, _ = await subscribed(store, webhooks, slow.url())
        fast_project, _, _ = await subscribed(store, webhooks, fast.url())
        for _ in range(4):
            await issue(store, project_id=slow_project, hasher=CHEAP_HASHER)
        options = replace(FAST, attempt_timeout=30.0, concurrency=6)
        async with delivering(webhooks, options):
            await until(lambda: slow.waiting == 4, what="four attempts hanging")
            await issue(store, project_id=fast_project, hasher=CHEAP_HASHER)
            await until(lambda: fast.received, what="the other webhook's event")
            started = time.monotonic()
            for _ in range(10):
                assert (await admin_client.get(f"/v1/projects/{slow_project}")).status == 200
            assert time.monotonic() - started < 5.0  # gross: about 20 ms here
            assert slow.waiting == 4
    finally:
        await fast.close()


async def test_at_most_so_many_attempts_are_in_flight(
    store: Store, webhooks: WebhookStore, receiver: Receiver, pg_pool: asyncpg.Pool
) -> None:
    receiver.hang()
    project_id, _, _ = await subscribed(store, webhooks, receiver.url())
    for _ in range(5):
        await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    async with delivering(webhooks, replace(FAST, concurrency=2)) as (_, metrics):
        await until(lambda: receiver.waiting == 2, what="two attempts in flight")
        claimed = await pg_pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE attempts > 0"
        )
        assert claimed == 2  # the others wait in the outbox, for this or another instance
        receiver.release()
        await until(lambda: counted(metrics, "delivered") == 5, what="all delivered")
    assert receiver.peak == 2


async def test_outbox_pending_is_on_the_admin_metrics(
    store: Store, webhooks: WebhookStore, admin_client: Any
) -> None:
    project_id, _, _ = await subscribed(store, webhooks, "http://127.0.0.1:9/hook")
    for _ in range(3):
        await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    text = await (await admin_client.get("/metrics")).text()
    pending = [
        line for line in text.splitlines() if line.startswith("admin_webhook_outbox_pending")
    ]
    assert pending == ["admin_webhook_outbox_pending 3.0"]
    for result in ("delivered", "retried", "failed"):
        assert f'admin_webhook_deliveries_total{{result="{result}"}} 0.0' in text


# ---------------------------------------------------------------- where it may connect


def fixed(addresses: dict[str, list[str]]) -> Lookup:
    """A resolver answering from ``addresses`` (a name can be re-pointed between calls)."""

    async def lookup(host: str, port: int) -> list[str]:
        if host not in addresses:
            raise OSError(f"{host} not found")
        return addresses[host]

    return lookup


async def test_delivery_connects_to_the_address_the_guard_checked(
    store: Store, webhooks: WebhookStore, receiver: Receiver
) -> None:
    # The name exists nowhere but in the guard's resolver: the connection goes where it said.
    port = receiver.url().rsplit(":", 1)[1].split("/")[0]
    await subscribed(store, webhooks, f"http://receiver.invalid:{port}/hook")
    project_id = await store.list_projects()
    await issue(store, project_id=project_id[0].id, hasher=CHEAP_HASHER)
    async with delivering(webhooks, lookup=fixed({"receiver.invalid": ["127.0.0.1"]})) as (_, m):
        await until(lambda: counted(m, "delivered") == 1, what="delivered by the checked address")
    assert receiver.types() == ["token.created"]


async def test_a_name_rebound_to_a_private_address_is_not_sent_to(
    store: Store, webhooks: WebhookStore, receiver: Receiver
) -> None:
    port = receiver.url().rsplit(":", 1)[1].split("/")[0]
    addresses = {"hooks.example.com": ["93.184.215.14"]}  # public when the webhook was made
    project_id, webhook_id, _ = await subscribed(
        store, webhooks, f"http://hooks.example.com:{port}/hook"
    )
    addresses["hooks.example.com"] = ["93.184.215.15", "127.0.0.1"]  # then one goes private
    await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    options = replace(FAST, schedule=NO_SECOND_TRY)
    async with delivering(webhooks, options, allow_private=False, lookup=fixed(addresses)) as (
        _,
        metrics,
    ):
        await until(lambda: counted(metrics, "retried") == 1, what="an attempt refused")
    (delivery,) = await webhooks.deliveries(project_id, webhook_id, limit=5)
    assert delivery.last_error is not None
    assert "not sent" in delivery.last_error and "loopback" in delivery.last_error
    assert receiver.received == []


async def test_an_address_in_the_url_is_checked_at_delivery_too(
    store: Store, webhooks: WebhookStore, receiver: Receiver
) -> None:
    # Made while private addresses were allowed; delivered by an instance where they are not.
    project_id, webhook_id, _ = await subscribed(store, webhooks, receiver.url())
    await issue(store, project_id=project_id, hasher=CHEAP_HASHER)
    options = replace(FAST, schedule=NO_SECOND_TRY)
    async with delivering(webhooks, options, allow_private=False) as (_, metrics):
        await until(lambda: counted(metrics, "retried") == 1, what="an attempt refused")
    (delivery,) = await webhooks.deliveries(project_id, webhook_id, limit=5)
    assert delivery.last_error == "not sent: 127.0.0.1 is a loopback address"
    assert receiver.received == []


async def test_a_stop_just_after_a_wake_up_still_stops(webhooks: WebhookStore) -> None:
    # An event queued as the admin stops: the idle wait ends in the same turn of the loop
    # as the stop's cancellation, which must still win (else the stop hangs for ever).
    deliverer = Deliverer(
        webhooks, Guard(allow_private=True), AdminMetrics(CollectorRegistry()), FAST
    )
    idle = asyncio.create_task(deliverer._idle())
    await asyncio.sleep(0)  # one turn of the loop: the task is now in its wait
    deliverer.wake()
    idle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await idle
