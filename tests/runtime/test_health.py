"""The metrics port in-process: worker heartbeats, readiness, and metric snapshots summed."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from pytest_aiohttp import AiohttpClient

from gateway.proxy.metrics import GatewayMetrics
from gateway.runtime import health as workerstatus
from gateway.runtime.health import Monitor, exposition, retire, write_metrics
from tests.gatewayproc import sample

NOW = 1_800_000_000.0


class World:
    """What the monitor looks at: live worker pids, their status files, the database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory / "workers"
        self.metrics_dir = directory / "metrics"
        self.directory.mkdir()
        self.metrics_dir.mkdir()
        self.pids = [101, 102]
        self.database_up = True
        self.now = NOW

    async def database(self) -> bool:
        return self.database_up

    def report(self, pid: int, *, ready: bool, age: float = 0.0) -> None:
        workerstatus.write(self.directory, ready=ready, pid=pid, at=self.now - age)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
async def client(world: World, aiohttp_client: AiohttpClient) -> TestClient:
    monitor = Monitor(
        metrics_dir=world.metrics_dir,
        status_dir=world.directory,
        expected=2,
        workers=lambda: world.pids,
        database=world.database,
        clock=lambda: world.now,
    )
    return await aiohttp_client(monitor.app())


async def answer(client: TestClient, path: str) -> tuple[int, object]:
    resp = await client.get(path)
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


async def test_healthy_only_once_every_worker_serves(world: World, client: TestClient) -> None:
    assert await answer(client, "/healthz") == (
        503,
        {"status": "unavailable", "workers": {"expected": 2, "serving": 0}},
    )
    world.report(101, ready=True)
    assert (await answer(client, "/healthz"))[0] == 503
    world.report(102, ready=False)  # serving, though not ready yet
    assert await answer(client, "/healthz") == (
        200,
        {"status": "ok", "workers": {"expected": 2, "serving": 2}},
    )


async def test_a_stuck_worker_stops_counting_as_serving(world: World, client: TestClient) -> None:
    world.report(101, ready=True)
    world.report(102, ready=True, age=workerstatus.STALE_AFTER + 1)  # no heartbeat lately
    status, body = await answer(client, "/healthz")
    assert status == 503 and body == {
        "status": "unavailable",
        "workers": {"expected": 2, "serving": 1},
    }


async def test_status_files_of_dead_workers_do_not_count(world: World, client: TestClient) -> None:
    world.report(101, ready=True)
    world.report(999, ready=True)  # a worker that is gone (not in the live pids)
    assert (await answer(client, "/healthz"))[0] == 503


async def test_ready_needs_the_database_and_every_worker_ready(
    world: World, client: TestClient
) -> None:
    world.report(101, ready=True)
    world.report(102, ready=True)
    assert await answer(client, "/readyz") == (
        200,
        {"status": "ready", "database": True, "workers": {"expected": 2, "serving": 2, "ready": 2}},
    )
    world.report(102, ready=False)
    assert await answer(client, "/readyz") == (
        503,
        {
            "status": "not_ready",
            "database": True,
            "workers": {"expected": 2, "serving": 2, "ready": 1},
        },
    )
    world.report(102, ready=True)
    world.database_up = False
    status, body = await answer(client, "/readyz")
    assert status == 503 and body["database"] is False  # type: ignore[index]


async def ready_gauge(client: TestClient) -> list[str]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    return [line for line in (await resp.text()).splitlines() if line.startswith("gateway_ready")]


async def test_the_ready_gauge_says_what_readyz_says(world: World, client: TestClient) -> None:
    # What the readiness alert reads: /readyz itself is no metric.
    world.report(101, ready=True)
    world.report(102, ready=False)
    assert await ready_gauge(client) == ["gateway_ready 0.0"]
    world.report(102, ready=True)
    assert await ready_gauge(client) == ["gateway_ready 1.0"]
    world.database_up = False
    assert await ready_gauge(client) == ["gateway_ready 0.0"]


class Worker:
    """The metrics of one worker process, as the request path updates them."""

    def __init__(self, directory: Path, pid: int) -> None:
        self.directory, self.pid = directory, pid
        self.metrics = GatewayMetrics(CollectorRegistry())

    def serve(self, proxied: int, duration: float = 0.003) -> None:
        for _ in range(proxied):
            self.metrics.outcome_count["proxied"].inc()
            self.metrics.outcome_duration["proxied"].observe(duration)

    def write(self) -> None:
        write_metrics(self.directory, self.metrics.registry, pid=self.pid)


PROXIED = {"outcome": "proxied"}
BUCKET = {"outcome": "proxied", "le": "0.005"}


def test_snapshots_sum_counters_histograms_and_live_gauges(tmp_path: Path) -> None:
    one, two = Worker(tmp_path, 101), Worker(tmp_path, 102)
    one.serve(3)
    two.serve(4, duration=0.02)
    one.metrics.last_used_pending.set(2)
    two.metrics.last_used_pending.set(5)
    one.write()
    two.write()
    text = exposition(tmp_path, [101, 102]).decode()
    assert sample(text, "gateway_requests_total", PROXIED) == 7
    assert sample(text, "gateway_request_duration_seconds_count", PROXIED) == 7
    assert sample(text, "gateway_request_duration_seconds_bucket", BUCKET) == 3
    assert sample(text, "gateway_request_duration_seconds_sum", PROXIED) == pytest.approx(0.089)
    assert sample(text, "gateway_last_used_pending") == 7
    assert "_created" not in text
    # Each family once, with the label values bound at start though still zero.
    assert text.count("# TYPE gateway_requests_total counter") == 1
    assert 'gateway_requests_total{outcome="unavailable"} 0.0' in text


def test_a_dead_workers_counts_stay_and_its_gauges_go(tmp_path: Path) -> None:
    dead, alive = Worker(tmp_path, 101), Worker(tmp_path, 102)
    dead.serve(3)
    dead.metrics.last_used_pending.set(2)
    dead.write()
    alive.serve(1)
    alive.write()
    retire(tmp_path, 101)
    text = exposition(tmp_path, [102]).decode()
    assert sample(text, "gateway_requests_total", PROXIED) == 4
    assert sample(text, "gateway_last_used_pending") == 0
    # Another one dies: folded into the same file; a scrape reads one per live worker + 1.
    alive.write()
    retire(tmp_path, 102)
    assert sorted(p.name for p in tmp_path.iterdir()) == [workerstatus.RETIRED]
    assert sample(exposition(tmp_path, []).decode(), "gateway_requests_total", PROXIED) == 4
    retire(tmp_path, 103)  # one that never wrote: nothing to fold


def test_a_snapshot_that_cannot_be_read_is_left_out(tmp_path: Path) -> None:
    worker = Worker(tmp_path, 101)
    worker.serve(2)
    worker.write()
    (tmp_path / "102.json").write_text("{not json")
    text = exposition(tmp_path, [101, 102, 103]).decode()
    assert sample(text, "gateway_requests_total", PROXIED) == 2


async def test_the_port_serves_the_live_workers_sum(world: World, client: TestClient) -> None:
    for pid in world.pids:
        worker = Worker(world.metrics_dir, pid)
        worker.serve(pid - 100)
        worker.write()
    Worker(world.metrics_dir, 999).write()  # no live worker's (nor retired yet): not read
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert sample(await resp.text(), "gateway_requests_total", PROXIED) == 3
