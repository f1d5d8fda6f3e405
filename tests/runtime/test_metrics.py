"""``/metrics`` of a real ``gateway serve``: summed over workers, labels as SPEC §6 says."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry, generate_latest
from pytest_aiohttp import AiohttpServer

from gateway.core.store import Store
from gateway.core.tokens import Token, generate, parse
from gateway.runtime.health import RETIRED, MetricsSum
from tests.gatewayproc import (
    GatewayProcess,
    echo_app,
    families_and_labels,
    issue_token,
    running_gateway,
    sample,
    scrape,
    send,
    settled_count,
)

PROXIED = {"outcome": "proxied"}

# SPEC §6 and §15, written out here so the test checks the contract, not the code; plus
# the client's own failures the README adds (the client left; it was too slow).
OUTCOMES = {
    "proxied",
    "unauthenticated",
    "invalid_request",
    "invalid_token",
    "expired_token",
    "rate_limited",
    "forbidden",  # SPEC §15
    "quota_exceeded",  # SPEC §15
    "upstream_error",
    "upstream_timeout",
    "unavailable",
    "client_closed",
    "client_timeout",
}
ALLOWED_LABELS: dict[str, dict[str, set[str]]] = {
    "gateway_requests": {"outcome": OUTCOMES},
    "gateway_request_duration_seconds": {"outcome": OUTCOMES},
    "gateway_token_cache": {"result": {"hit", "miss", "negative"}},
    "gateway_token_verifications": {"result": {"valid", "invalid"}},
    "gateway_last_used_flushes": {"result": {"ok", "error"}},
    "gateway_usage_flushes": {"result": {"ok", "error"}},
}


@pytest.fixture
async def serve_env(environ: dict[str, str], aiohttp_server: AiohttpServer) -> dict[str, str]:
    upstream: TestServer = await aiohttp_server(echo_app())
    return {**environ, "UPSTREAM_URL": str(upstream.make_url("/")), "GATEWAY_WORKERS": "2"}


def proxied_per_worker(gateway: GatewayProcess) -> list[float]:
    """Each live worker's own count, read from its metrics snapshot."""
    [run_dir] = gateway.runtime_dirs()
    counts = []
    for pid in gateway.worker_pids():
        worker = MetricsSum()
        worker.read(run_dir / "metrics" / f"{pid}.json", gauges=True)
        registry = CollectorRegistry()
        registry.register(worker)
        counts.append(sample(generate_latest(registry).decode(), "gateway_requests_total", PROXIED))
    return counts


async def test_two_workers_sum_to_exactly_the_requests_sent(
    serve_env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    raw, _ = await issue_token(store)
    async with running_gateway(serve_env, tmp_path) as (gateway, session):
        before = sample(await scrape(session, gateway), "gateway_requests_total", PROXIED)
        statuses = await send(gateway, 60, f"Bearer {raw}")
        assert statuses == [200] * 60

        after = await settled_count(session, gateway, "proxied", before + 60)
        assert after - before == 60
        per_worker = proxied_per_worker(gateway)
        assert len(per_worker) == 2 and all(n > 0 for n in per_worker), per_worker


async def counted(
    session: aiohttp.ClientSession, gateway: GatewayProcess, expected: dict[str, float]
) -> dict[str, float]:
    """``gateway_requests_total`` per outcome once each reaches its expected value, or at
    a deadline: a worker's answers reach ``/metrics`` with its next snapshot (within a
    second), and the exact comparison afterwards still catches a request counted twice
    or by no one."""
    deadline = time.monotonic() + 10
    while True:
        exposition = await scrape(session, gateway)
        found = {o: sample(exposition, "gateway_requests_total", {"outcome": o}) for o in expected}
        if all(found[o] >= n for o, n in expected.items()) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.02)


async def test_a_scrape_counts_every_answer_already_sent(
    serve_env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    """A script that scrapes a moment after its requests sees them all (each worker
    writes its snapshot every second), round after round, none counted twice."""
    raw, _ = await issue_token(store)
    async with running_gateway(serve_env, tmp_path) as (gateway, session):
        totals = {"proxied": 0.0, "unauthenticated": 0.0}
        for _ in range(3):
            assert await send(gateway, 4, f"Bearer {raw}") == [200] * 4
            assert await send(gateway, 1, None) == [401]
            totals = {
                "proxied": totals["proxied"] + 4,
                "unauthenticated": totals["unauthenticated"] + 1,
            }
            assert await counted(session, gateway, totals) == totals


async def test_counts_of_killed_workers_stay_in_the_sum(
    serve_env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    """Workers killed (-9) and replaced: what they had counted is still in ``/metrics``
    (no counter goes back), and a scrape reads one file per live worker plus one."""
    raw, _ = await issue_token(store)
    async with running_gateway(serve_env, tmp_path) as (gateway, session):
        assert await send(gateway, 10, f"Bearer {raw}") == [200] * 10
        assert await counted(session, gateway, {"proxied": 10}) == {"proxied": 10}
        dead = gateway.worker_pids()
        for pid in dead:
            os.kill(pid, signal.SIGKILL)
        await until_replaced(gateway, session, dead)
        assert await counted(session, gateway, {"proxied": 10}) == {"proxied": 10}
        assert await send(gateway, 5, f"Bearer {raw}") == [200] * 5
        assert await counted(session, gateway, {"proxied": 15}) == {"proxied": 15}
        [run_dir] = gateway.runtime_dirs()
        # (not counting a snapshot being written: .<pid>.json.tmp until its rename)
        files = {p.name for p in (run_dir / "metrics").iterdir() if not p.name.startswith(".")}
        assert files == {RETIRED} | {f"{pid}.json" for pid in gateway.worker_pids()}


async def until_replaced(
    gateway: GatewayProcess, session: aiohttp.ClientSession, dead: set[int]
) -> None:
    """Wait until two new workers replaced ``dead`` and serve."""
    deadline = time.monotonic() + 30
    while not (len(gateway.worker_pids()) == 2 and not gateway.worker_pids() & dead):
        assert time.monotonic() < deadline, "the killed workers were not replaced"
        await asyncio.sleep(0.05)
    await gateway.wait_healthy(session)


EXPECTED = {"proxied": 3, "invalid_token": 4, "invalid_request": 1, "unauthenticated": 1}


async def test_no_label_carries_a_token_token_id_or_project_id(
    serve_env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    raw, token_id = await issue_token(store)
    valid = parse(raw, "tg")
    assert valid is not None
    wrong_secret = str(Token(valid.prefix, valid.id, generate("tg").secret))
    unknown = str(generate("tg"))
    project_id = (await store.list_projects())[0].id

    async with running_gateway(serve_env, tmp_path) as (gateway, session):
        await send(gateway, 3, f"Bearer {raw}")
        await send(gateway, 2, f"Bearer {wrong_secret}")
        await send(gateway, 2, f"Bearer {unknown}")
        await send(gateway, 1, "Bearer")
        await send(gateway, 1, None)
        # Workers copy their counts to the shared files every second, each on its own.
        for outcome, sent in EXPECTED.items():
            await settled_count(session, gateway, outcome, sent)
        exposition = await until_flushed(session, gateway)

    for secret in (raw, valid.secret, wrong_secret, unknown, token_id, project_id):
        assert secret not in exposition
    for family_name, labels in families_and_labels(exposition).items():
        allowed = ALLOWED_LABELS.get(family_name, {})
        for name, values in labels.items():
            assert name in allowed, f"{family_name} has an unexpected label {name}"
            assert values <= allowed[name], f"{family_name}{{{name}}}: {values - allowed[name]}"
    # The traffic above really was counted, under the SPEC's outcome names.
    for outcome, sent in EXPECTED.items():
        assert sample(exposition, "gateway_requests_total", {"outcome": outcome}) == sent


async def until_flushed(session: aiohttp.ClientSession, gateway: GatewayProcess) -> str:
    """The exposition once last-used times were written (a flush every 0.05 s here)."""
    deadline = time.monotonic() + 30
    while True:
        exposition = await scrape(session, gateway)
        flushed = sample(exposition, "gateway_last_used_flushes_total", {"result": "ok"})
        pending = sample(exposition, "gateway_last_used_pending")
        if flushed >= 1 and pending == 0:
            return exposition
        assert time.monotonic() < deadline, "last-used times never flushed"
        await asyncio.sleep(0.05)
