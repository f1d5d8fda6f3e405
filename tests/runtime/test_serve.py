"""``gateway serve`` as users run it: the real console script in a subprocess."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from gateway.core import events
from gateway.core.store import Store
from tests.gatewayproc import (
    GatewayProcess,
    echo_app,
    free_port,
    gateway_command,
    issue_token,
    running_gateway,
    send,
    settled_count,
)
from tests.relay import Relay


@pytest.fixture
async def echo_upstream(aiohttp_server: AiohttpServer) -> TestServer:
    return await aiohttp_server(echo_app())


@pytest.fixture
def serve_env(environ: dict[str, str], echo_upstream: TestServer) -> dict[str, str]:
    return {**environ, "UPSTREAM_URL": str(echo_upstream.make_url("/"))}


def run_serve(
    env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``gateway serve`` expected to stop at once (configuration mistakes)."""
    return subprocess.run(
        [*gateway_command(), "serve"],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_sigterm_writes_pending_last_used_and_exits_0(
    serve_env: dict[str, str], store: Store, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    raw, token_id = await issue_token(store)
    before = datetime.now(UTC)
    # A flush interval far beyond the test: only the shutdown flush can write.
    env = {**serve_env, "LAST_USED_FLUSH_INTERVAL": "3600", "GATEWAY_WORKERS": "2"}
    gateway = GatewayProcess(env, tmp_path)
    async with aiohttp.ClientSession() as session:
        gateway.start()
        try:
            await gateway.wait_healthy(session)
            async with session.get(
                gateway.url + "/x", headers={"Authorization": f"Bearer {raw}"}
            ) as resp:
                assert resp.status == 200
            assert await last_used_at(pg_pool, token_id) is None
            assert await gateway.stop(signal.SIGTERM) == 0
        finally:
            gateway.kill()

    written = await last_used_at(pg_pool, token_id)
    assert written is not None and written >= before.replace(microsecond=0)
    assert gateway.runtime_dirs() == []  # the metrics directory is cleaned at exit


async def test_sigint_stops_every_worker_and_exits_0(
    serve_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**serve_env, "GATEWAY_WORKERS": "2"}
    async with running_gateway(env, tmp_path) as (gateway, _):
        workers = gateway.worker_pids()
        assert len(workers) == 2
        assert len(gateway.runtime_dirs()) == 1
        assert await gateway.stop(signal.SIGINT) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert gateway.runtime_dirs() == []


LISTEN = f'LISTEN "{events.CHANNEL}"'.encode()  # what asyncpg sends to start listening


async def test_health_and_readiness_follow_the_database_and_listeners(
    serve_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    relay = Relay(database_url)
    await relay.start()
    env = {**serve_env, "DATABASE_URL": relay.url, "GATEWAY_WORKERS": "2"}
    try:
        async with running_gateway(env, tmp_path, "--no-migrate") as (gateway, session):
            assert await probe(session, gateway, "/healthz") == (
                200,
                {"status": "ok", "workers": {"expected": 2, "serving": 2}},
            )
            await until(session, gateway, "/readyz", 200)

            # Only the workers' LISTEN connections fail: Postgres answers, yet not ready.
            relay.drop(LISTEN)
            not_listening = {
                "status": "not_ready",
                "database": True,
                "workers": {"expected": 2, "serving": 2, "ready": 0},
            }
            await until(session, gateway, "/readyz", 503, not_listening)
            relay.allow()
            await until(session, gateway, "/readyz", 200)

            await relay.cut()
            _, body = await until(session, gateway, "/readyz", 503)
            assert body["status"] == "not_ready" and body["database"] is False
            assert (await probe(session, gateway, "/healthz"))[0] == 200  # still serving

            await relay.restore()
            _, body = await until(session, gateway, "/readyz", 200)
            assert body == {
                "status": "ready",
                "database": True,
                "workers": {"expected": 2, "serving": 2, "ready": 2},
            }
    finally:
        await relay.close()


async def test_a_crashed_worker_is_replaced_and_counts_survive_it(
    serve_env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    raw, _ = await issue_token(store)
    env = {**serve_env, "GATEWAY_WORKERS": "2"}
    async with running_gateway(env, tmp_path) as (gateway, session):
        assert await send(gateway, 30, f"Bearer {raw}") == [200] * 30
        assert await settled_count(session, gateway, "proxied", 30) == 30
        first = gateway.worker_pids()
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = gateway.worker_pids()
            if len(now) == 2 and victim not in now:
                status, _ = await probe(session, gateway, "/healthz")
                if status == 200:
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"no replacement worker:\n{gateway.stderr}")
        assert "exited unexpectedly" in gateway.stderr
        # Counters never go backwards: the dead worker's counts are still in the sum.
        assert await send(gateway, 10, f"Bearer {raw}") == [200] * 10
        assert await settled_count(session, gateway, "proxied", 40) == 40


async def test_a_slowloris_flood_under_a_1024_descriptor_limit_locks_no_client_out(
    serve_env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    """Issue 12's attack: 1,100 connections that never finish their head, against a
    gateway limited to 1,024 descriptors. The connection cap (derived from that limit)
    closes the longest-idle ones, so a legitimate client still gets in."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip("this test needs 1,100 client sockets of its own")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    raw, _ = await issue_token(store)
    env = {**serve_env, "GATEWAY_WORKERS": "1"}
    slow = []
    async with running_gateway(env, tmp_path, open_files=1024) as (gateway, session):
        try:
            for _ in range(1100):
                _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
                writer.write(b"GET /x HTTP/1.1\r\nX-Slow: a")
                slow.append(writer)
            async with session.get(
                gateway.url + "/x",
                headers={"Authorization": f"Bearer {raw}"},
                timeout=aiohttp.ClientTimeout(total=20),
            ) as resp:
                assert resp.status == 200
        finally:
            for writer in slow:
                writer.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_workers_stop_when_the_parent_is_killed(
    serve_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**serve_env, "GATEWAY_WORKERS": "2"}
    async with running_gateway(env, tmp_path) as (gateway, _):
        workers = gateway.worker_pids()
        gateway.kill()  # SIGKILL: no chance to stop them
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "orphaned workers keep running"
            await asyncio.sleep(0.05)
    # ...and the port is free again for the next gateway.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", gateway.port))


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as stopped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_missing_upstream_is_one_line_and_exit_2(environ: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in environ.items() if k != "UPSTREAM_URL"}
    result = run_serve(env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "UPSTREAM_URL" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_database_is_one_line_and_exit_2(
    environ: dict[str, str], tmp_path: Path
) -> None:
    env = {**environ, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/x"}
    result = run_serve(env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("gateway: DATABASE_URL: cannot connect")
    assert result.stderr.strip().count("\n") == 0


def test_a_taken_port_is_one_line_and_exit_2(environ: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**environ, "GATEWAY_PORT": str(port), "GATEWAY_METRICS_PORT": str(free_port())}
        result = run_serve(env, tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"gateway: GATEWAY_PORT: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr


def test_a_port_another_gateway_serves_is_one_line_and_exit_2(
    environ: dict[str, str], tmp_path: Path
) -> None:
    # Held as a running `gateway serve`'s workers hold it: with SO_REUSEPORT, which would
    # let this one's workers share it silently.
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**environ, "GATEWAY_PORT": str(port), "GATEWAY_METRICS_PORT": str(free_port())}
        result = run_serve(env, tmp_path, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"gateway: GATEWAY_PORT: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


async def probe(
    session: aiohttp.ClientSession, gateway: GatewayProcess, path: str
) -> tuple[int, dict[str, object]]:
    async with session.get(gateway.metrics_url + path) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def until(
    session: aiohttp.ClientSession,
    gateway: GatewayProcess,
    path: str,
    status: int,
    body: dict[str, object] | None = None,
) -> tuple[int, dict[str, object]]:
    """Poll ``path`` until it answers ``status`` (and ``body`` if given), deadline 30 s."""
    deadline = time.monotonic() + 30
    while True:
        got = await probe(session, gateway, path)
        if got[0] == status and body in (None, got[1]):
            return got
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.05)


async def last_used_at(pool: asyncpg.Pool, token_id: str) -> datetime | None:
    at: datetime | None = await pool.fetchval(
        "SELECT last_used_at FROM tokens WHERE id = $1", token_id
    )
    return at


async def test_sigterm_writes_pending_usage_exactly(
    serve_env: dict[str, str], store: Store, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Usage counted by two workers, none flushed yet (the interval is far beyond the
    test): the shutdown flush writes every request, once."""
    raw, token_id = await issue_token(store)
    env = {**serve_env, "LAST_USED_FLUSH_INTERVAL": "3600", "GATEWAY_WORKERS": "2"}
    gateway = GatewayProcess(env, tmp_path)
    async with aiohttp.ClientSession() as session:
        gateway.start()
        try:
            await gateway.wait_healthy(session)
            statuses = await send(gateway, 30, f"Bearer {raw}")
            assert statuses == [200] * 30
            assert await proxied(pg_pool, token_id) == 0
            assert await gateway.stop(signal.SIGTERM) == 0
        finally:
            gateway.kill()
    assert await proxied(pg_pool, token_id) == 30


async def proxied(pool: asyncpg.Pool, token_id: str) -> int:
    n: int = await pool.fetchval(
        "SELECT COALESCE(sum(proxied), 0) FROM usage_daily WHERE token_id = $1", token_id
    )
    return n
