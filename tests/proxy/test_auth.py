"""The gateway's answers to credentials (SPEC §5, items 1-3), over real HTTP and Postgres."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from gateway.core import tokens
from gateway.core.config import Settings
from gateway.core.journal import CLI
from gateway.core.store import Store
from gateway.proxy.app import running
from gateway.proxy.metrics import GatewayMetrics
from gateway.proxy.ratelimit.throttle import FailurePacing
from tests.conftest import IssueToken, StartGateway
from tests.helpers import CHEAP_HASHER, Clock, bearer, issue, sample, typo, until
from tests.relay import Relay

REALM = 'Bearer realm="tollgate"'


async def error_of(response: Any) -> tuple[str, str]:
    body = await response.json()
    assert set(body) == {"error"}
    return body["error"]["code"], body["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Token abc"}],
    ids=["missing", "basic", "other-scheme"],
)
async def test_no_bearer_credentials_get_a_bare_challenge(
    gateway_client: Any, headers: dict[str, str]
) -> None:
    response = await gateway_client.get("/anything", headers=headers)
    assert response.status == 401
    # RFC 6750 §3.1: no error code when the client sent no Bearer credentials at all.
    assert response.headers["WWW-Authenticate"] == REALM
    assert (await error_of(response))[0] == "unauthorized"
    assert response.headers["X-Request-Id"]
    assert sample(gateway_client.gateway, "gateway_requests_total", outcome="unauthenticated") == 1


@pytest.mark.parametrize(
    "value",
    ["Bearer", "Bearer ", "Bearer  tg_abc", "Bearer tg_a tg_b", "Bearer\ttg_abc", "Bearer tg,abc"],
    ids=["no-token", "empty", "two-spaces", "two-tokens", "tab", "bad-char"],
)
async def test_malformed_bearer_header_is_invalid_request(gateway_client: Any, value: str) -> None:
    response = await gateway_client.get("/anything", headers={"Authorization": value})
    assert response.status == 400
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(REALM + ', error="invalid_request"')
    assert (await error_of(response))[0] == "invalid_request"
    assert sample(gateway_client.gateway, "gateway_requests_total", outcome="invalid_request") == 1


async def test_two_authorization_headers_are_invalid_request(
    gateway_client: Any, issue_token: IssueToken
) -> None:
    issued = await issue_token()
    response = await gateway_client.get(
        "/anything",
        headers=[("Authorization", f"Bearer {issued.raw}"), ("Authorization", "Bearer other")],
    )
    assert response.status == 400
    assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]


async def test_scheme_is_case_insensitive(gateway_client: Any, issue_token: IssueToken) -> None:
    issued = await issue_token()
    response = await gateway_client.get("/x", headers={"Authorization": f"bEaReR {issued.raw}"})
    assert response.status == 200


async def invalid_tokens(issue_token: IssueToken) -> dict[str, str]:
    genuine = await issue_token()
    wrong_secret = tokens.Token("tg", genuine.token_id, tokens.generate("tg").secret)
    return {
        "garbage": "not-a-token",
        "other-prefix": str(tokens.generate("xx")),
        "bad-checksum": typo(genuine.raw),
        "unknown-id": str(tokens.generate("tg")),
        "wrong-secret": str(wrong_secret),
    }


async def test_invalid_tokens_get_the_same_401(
    gateway_client: Any, issue_token: IssueToken
) -> None:
    for name, raw in (await invalid_tokens(issue_token)).items():
        response = await gateway_client.get("/x", headers=bearer(raw))
        assert response.status == 401, name
        assert response.headers["WWW-Authenticate"] == (
            f'{REALM}, error="invalid_token", error_description="invalid token"'
        ), name
        # One answer for all of them: nothing tells whether the token id exists.
        assert await error_of(response) == ("invalid_token", "invalid token"), name
    gateway = gateway_client.gateway
    assert sample(gateway, "gateway_requests_total", outcome="invalid_token") == 5
    # Only the genuine id with a wrong secret cost an argon2 run.
    assert sample(gateway, "gateway_token_verifications_total", result="invalid") == 1


async def test_wrong_secret_is_cached_negatively(
    gateway_client: Any, issue_token: IssueToken
) -> None:
    genuine = await issue_token()
    wrong = str(tokens.Token("tg", genuine.token_id, tokens.generate("tg").secret))
    for _ in range(3):
        assert (await gateway_client.get("/x", headers=bearer(wrong))).status == 401
    gateway = gateway_client.gateway
    assert sample(gateway, "gateway_token_verifications_total", result="invalid") == 1
    assert sample(gateway, "gateway_token_cache_total", result="negative") == 2


async def test_bad_checksum_needs_no_database(
    gateway_settings: Settings, pg_pool: asyncpg.Pool, start_gateway: StartGateway
) -> None:
    """A typo is refused before any database or hash work: even with no database."""
    relay = Relay(gateway_settings.database_url or "")
    await relay.start()
    try:
        client = await start_gateway(dataclasses.replace(gateway_settings, database_url=relay.url))
        gateway = client.gateway
        genuine = tokens.generate("tg")
        await relay.cut()
        response = await client.get("/x", headers=bearer(typo(str(genuine))))
        assert response.status == 401
        assert sample(gateway, "gateway_requests_total", outcome="invalid_token") == 1
        assert sample(gateway, "gateway_token_verifications_total", result="invalid") == 0
    finally:
        await relay.close()


async def test_a_burst_of_first_uses_is_a_few_queries_and_each_gets_its_answer(
    gateway_client: Any, issue_token: IssueToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    """60 unknown ids and 4 genuine tokens at once: Postgres is asked in a few batched
    queries, not 64, and every request still gets its own answer."""
    queries: list[list[str]] = []
    auth_records = Store.auth_records

    async def recording(store: Store, token_ids: list[str]) -> Any:
        queries.append(token_ids)
        return await auth_records(store, token_ids)

    genuine = [(await issue_token()).raw for _ in range(4)]
    unknown = [str(tokens.generate("tg")) for _ in range(60)]
    monkeypatch.setattr(Store, "auth_records", recording)
    raws = unknown[:30] + genuine + unknown[30:]
    answers = await asyncio.gather(*(gateway_client.get("/x", headers=bearer(r)) for r in raws))
    statuses = {raw: answer.status for raw, answer in zip(raws, answers, strict=True)}
    assert {statuses[raw] for raw in unknown} == {401}
    assert {statuses[raw] for raw in genuine} == {200}
    assert sorted(id for ids in queries for id in ids) == sorted(
        tokens.parse(raw, "tg").id  # type: ignore[union-attr]
        for raw in raws
    )
    assert len(queries) <= 20, [len(ids) for ids in queries]


async def test_frequent_failed_first_uses_wait_and_working_tokens_do_not(
    gateway_client: Any, issue_token: IssueToken
) -> None:
    """Beyond the free failures of a second, a failed first use gets its 401 only after the
    delay; a genuine token's first use and a repeated wrong token (negative cache) do not
    wait meanwhile."""
    # One second that never ends: which failures are free does not depend on the timing.
    gateway_client.gateway.auth.pacing = FailurePacing(free=2, delay=2.0, clock=Clock(5.0))
    genuine = (await issue_token()).raw
    unknown = [str(tokens.generate("tg")) for _ in range(5)]
    for raw in unknown[:2]:  # the free ones: answered at once
        assert (await gateway_client.get("/x", headers=bearer(raw))).status == 401
    finished: list[str] = []

    async def ask(name: str, raw: str) -> int:
        response = await gateway_client.get("/x", headers=bearer(raw))
        finished.append(name)
        return int(response.status)

    started = time.monotonic()
    paced = [asyncio.ensure_future(ask("paced", raw)) for raw in unknown[2:]]
    assert await ask("genuine", genuine) == 200
    assert await ask("repeated", unknown[0]) == 401  # the negative cache: no lookup
    assert [await answer for answer in paced] == [401, 401, 401]
    assert time.monotonic() - started >= 2.0  # the paced ones waited their delay
    assert finished == ["genuine", "repeated", "paced", "paced", "paced"]


async def test_expired_token_says_so(
    gateway_client: Any, issue_token: IssueToken, pg_pool: asyncpg.Pool
) -> None:
    issued = await issue_token()
    await pg_pool.execute(
        "UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
        issued.token_id,
    )
    response = await gateway_client.get("/x", headers=bearer(issued.raw))
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == (
        f'{REALM}, error="invalid_token", error_description="token expired"'
    )
    assert await error_of(response) == ("invalid_token", "token expired")
    assert sample(gateway_client.gateway, "gateway_requests_total", outcome="expired_token") == 1


async def test_expiry_is_checked_on_every_request(
    gateway_client: Any, issue_token: IssueToken, pg_pool: asyncpg.Pool
) -> None:
    """A cached token stops at its expires_at, without waiting for the state to refresh."""
    issued = await issue_token()
    assert (await gateway_client.get("/x", headers=bearer(issued.raw))).status == 200
    state = gateway_client.gateway.auth.states.get(issued.token_id)
    assert state is not None
    state.expires_at = 0.0  # what the cache would hold for a token whose time came
    response = await gateway_client.get("/x", headers=bearer(issued.raw))
    assert response.status == 401
    assert (await error_of(response))[1] == "token expired"


async def test_never_expiring_token_works(gateway_client: Any, issue_token: IssueToken) -> None:
    issued = await issue_token(expires_in_days=None)
    assert (await gateway_client.get("/x", headers=bearer(issued.raw))).status == 200


async def test_revoked_and_deleted_tokens_are_refused(
    gateway_client: Any, issue_token: IssueToken, store: Store
) -> None:
    revoked = await issue_token()
    deleted = await issue_token()
    for issued in (revoked, deleted):
        assert (await gateway_client.get("/x", headers=bearer(issued.raw))).status == 200
    gateway = gateway_client.gateway
    received = sample(gateway, "gateway_revocations_received_total")
    assert await store.revoke_token(revoked.project_id, revoked.token_id, actor=CLI)
    assert await store.delete_project(deleted.project_id, actor=CLI)
    # The events come by NOTIFY, a moment after the commits: once they are in, both
    # tokens are refused (a request sent before they arrive could still be answered).
    await until(lambda: sample(gateway, "gateway_revocations_received_total") >= received + 2)
    for issued in (revoked, deleted):
        response = await gateway_client.get("/x", headers=bearer(issued.raw))
        assert response.status == 401
        assert (await error_of(response))[0] == "invalid_token"


async def test_token_is_proven_once_then_served_from_cache(
    gateway_client: Any, issue_token: IssueToken
) -> None:
    issued = await issue_token()
    for _ in range(5):
        assert (await gateway_client.get("/x", headers=bearer(issued.raw))).status == 200
    gateway = gateway_client.gateway
    assert sample(gateway, "gateway_token_verifications_total", result="valid") == 1
    assert sample(gateway, "gateway_token_cache_total", result="miss") == 1
    assert sample(gateway, "gateway_token_cache_total", result="hit") == 4
    # The cache holds digests, never the token.
    proofs = gateway.auth.proofs
    assert issued.raw not in repr(vars(proofs))
    assert proofs.get(tokens.digest(issued.raw)) == issued.token_id


async def test_gateway_metrics_are_per_app(gateway_settings: Settings, pg_pool: Any) -> None:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    async with running(gateway_settings, metrics=metrics) as gateway:
        assert gateway.metrics is metrics
    async with running(gateway_settings) as other:
        assert other.metrics is not metrics


async def test_a_schema_error_is_a_logged_500_never_an_outage(
    gateway_settings: Settings,
    own_database: str,
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The ``tokens`` table renamed away: lookups are answered 500 ``internal_error`` with
    the traceback logged once, not 503, not the stale state, and never 429 however often
    a token is tried; once the table is back, tokens work again."""
    pool = await asyncpg.create_pool(own_database, min_size=1, max_size=2)
    assert pool is not None
    try:
        store = Store(pool)
        proven = await issue(store, hasher=CHEAP_HASHER)
        unproven = await issue(store, hasher=CHEAP_HASHER)
        now = [1000.0]
        settings = dataclasses.replace(gateway_settings, database_url=own_database)
        client = await start_gateway(settings, clock=lambda: now[0])
        assert (await client.get("/x", headers=bearer(proven.raw))).status == 200
        await pool.execute("ALTER TABLE tokens RENAME TO tokens_elsewhere")
        now[0] += settings.token_cache_ttl + 1  # the proven token's state needs a refresh
        caplog.clear()
        caplog.set_level(logging.INFO, logger="gateway.proxy.auth")
        for raw in [proven.raw] * 2 + [unproven.raw] * 7:
            response = await client.get("/x", headers=bearer(raw))
            assert response.status == 500
            assert (await response.json())["error"]["code"] == "internal_error"
        assert sample(client.gateway, "gateway_requests_total", outcome="unavailable") == 9
        lookups = [record for record in caplog.records if record.name == "gateway.proxy.auth"]
        [traceback] = [record for record in lookups if record.exc_info]
        assert traceback.exc_info is not None
        assert isinstance(traceback.exc_info[1], asyncpg.UndefinedTableError)
        assert "unreachable" not in caplog.text

        await pool.execute("ALTER TABLE tokens_elsewhere RENAME TO tokens")
        for raw in (proven.raw, unproven.raw):
            assert (await client.get("/x", headers=bearer(raw))).status == 200
        assert "token lookups answer again" in caplog.text
    finally:
        await pool.close()
