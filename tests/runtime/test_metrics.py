"""``/metrics`` of a real ``gateway serve``: summed over workers, labels as SPEC §6 says."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.multiprocess import MultiProcessCollector
from pytest_aiohttp import AiohttpServer

from gateway.core.store import Store
from gateway.core.tokens import Token, generate, parse
from gateway.runtime.health import exposition
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

# SPEC §6, written out here so the test checks the contract, not the code; plus the
# client's own failures the README adds (the client left; it was too slow).
OUTCOMES = {
    "proxied",
    "unauthenticated",
    "invalid_request",
    "invalid_token",
    "expired_token",
    "rate_limited",
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
}


@pytest.fixture
async def serve_env(environ: dict[str, str], aiohttp_server: AiohttpServer) -> dict[str, str]:
    upstream: TestServer = await aiohttp_server(echo_app())
    return {**environ, "UPSTREAM_URL": str(upstream.make_url("/")), "GATEWAY_WORKERS": "2"}


def proxied_per_worker(gateway: GatewayProcess) -> list[float]:
    """Each worker's own count, read from its multiprocess file."""
    [run_dir] = gateway.runtime_dirs()
    counts = []
    for path in sorted((run_dir / "metrics").glob("counter_*.db")):
        merged = MultiProcessCollector.merge([str(path)])
        counts.append(
            sum(
                s.value
                for metric in merged
                for s in metric.samples
                if s.name == "gateway_requests_total" and s.labels == PROXIED
            )
        )
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


async def test_a_scrape_counts_every_answer_already_sent(
    serve_env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    """No waiting for the workers' once-a-second flush: a script that scrapes right after
    its requests sees them all (the parent asks the workers to flush before answering)."""
    raw, _ = await issue_token(store)
    async with running_gateway(serve_env, tmp_path) as (gateway, session):
        for _ in range(3):
            before = await scrape(session, gateway)
            assert await send(gateway, 4, f"Bearer {raw}") == [200] * 4
            assert await send(gateway, 1, None) == [401]
            after = await scrape(session, gateway)
            for outcome, sent in (("proxied", 4), ("unauthenticated", 1)):
                labels = {"outcome": outcome}
                delta = sample(after, "gateway_requests_total", labels) - sample(
                    before, "gateway_requests_total", labels
                )
                assert delta == sent, outcome


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


FLUSH_SCRIPT = """
from gateway.runtime.metricfiles import install
flush = install()
from prometheus_client import CollectorRegistry
from gateway.proxy.metrics import GatewayMetrics
m = GatewayMetrics(CollectorRegistry())
m.outcome_count["proxied"].inc()
m.outcome_duration["proxied"].observe(0.003)
m.last_used_pending.set(4)
print("before", flush=True)
input()  # the test reads the files here, before the flush
flush()
print("after", flush=True)
input()
"""


def test_worker_values_reach_the_shared_files_when_flushed(tmp_path: Path) -> None:
    """Each worker updates memory only; ``flush`` (every second, and at exit) publishes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", FLUSH_SCRIPT],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().startswith("before")
        before = exposition(tmp_path).decode()
        assert sample(before, "gateway_requests_total", PROXIED) == 0
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().startswith("after")
        after = exposition(tmp_path).decode()
        assert sample(after, "gateway_requests_total", PROXIED) == 1
        bucket = {"outcome": "proxied", "le": "0.005"}
        assert sample(after, "gateway_request_duration_seconds_bucket", bucket) == 1
        assert sample(after, "gateway_request_duration_seconds_sum", PROXIED) == 0.003
        assert sample(after, "gateway_last_used_pending") == 4
    finally:
        proc.kill()
        proc.wait()
