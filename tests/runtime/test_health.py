"""The metrics port's health answers, in-process: worker heartbeats and readiness."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.runtime import health as workerstatus
from gateway.runtime.health import Monitor

NOW = 1_800_000_000.0


class World:
    """What the monitor looks at: live worker pids, their status files, the database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
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
        metrics_dir=world.directory,
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
