"""Run the real ``gateway serve`` console script as a subprocess, and read its metrics."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.store import Store
from tests.helpers import CHEAP_HASHER, free_port, issue

START_DEADLINE = 60.0
STOP_DEADLINE = 60.0


def gateway_command() -> list[str]:
    script = shutil.which("gateway", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "gateway"]


class GatewayProcess:
    def __init__(
        self, environ: dict[str, str], workdir: Path, *args: str, open_files: int | None = None
    ) -> None:
        self.open_files = open_files  # the process's descriptor limit (soft and hard)
        self.port = int(environ.get("GATEWAY_PORT") or free_port())
        self.metrics_port = int(environ.get("GATEWAY_METRICS_PORT") or free_port())
        self.workdir = workdir
        # TMPDIR: the runtime directory (worker metrics, statuses) lands where tests can see it.
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            **environ,
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_METRICS_PORT": str(self.metrics_port),
            "TMPDIR": str(workdir / "tmp"),
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.args = args
        self.stderr_path = workdir / "stderr.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def start(self) -> None:
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*gateway_command(), "serve", *self.args],
                preexec_fn=self._limit if self.open_files else None,
                cwd=self.workdir,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def _limit(self) -> None:
        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    async def wait_healthy(self, session: aiohttp.ClientSession) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gateway serve exited early:\n{self.stderr}")
            try:
                async with session.get(self.metrics_url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"gateway serve not healthy in {START_DEADLINE}s:\n{self.stderr}")

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return await asyncio.to_thread(self.process.wait, STOP_DEADLINE)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def crash(self) -> None:
        """SIGKILL the workers and the supervisor at once, as a machine failure would: no
        graceful stop, no flush, connections cut by the kernel."""
        assert self.process is not None
        for pid in self.worker_pids():
            os.kill(pid, signal.SIGKILL)
        self.kill()

    def worker_pids(self) -> set[int]:
        """Live worker processes (the spawned children, not multiprocessing's helper)."""
        assert self.process is not None
        pids = set()
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"spawn_main" in cmdline:
                    pids.add(int(child))
        return pids

    def runtime_dirs(self) -> list[Path]:
        return sorted((self.workdir / "tmp").glob("tollgate-*"))


@asynccontextmanager
async def running_gateway(
    environ: dict[str, str], workdir: Path, *args: str, open_files: int | None = None
) -> AsyncIterator[tuple[GatewayProcess, aiohttp.ClientSession]]:
    """A healthy ``gateway serve`` and a client session; always stopped afterwards."""
    gateway = GatewayProcess(environ, workdir, *args, open_files=open_files)
    async with aiohttp.ClientSession() as session:
        gateway.start()
        try:
            await gateway.wait_healthy(session)
            yield gateway, session
        finally:
            try:
                await gateway.stop()
            finally:
                gateway.kill()


async def scrape(session: aiohttp.ClientSession, gateway: GatewayProcess) -> str:
    async with session.get(gateway.metrics_url + "/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def settled_count(
    session: aiohttp.ClientSession, gateway: GatewayProcess, outcome: str, at_least: float
) -> float:
    """``gateway_requests_total{outcome}`` once it reaches ``at_least`` (deadline 10 s).

    A worker counts a request right after the last byte of its answer, so a client
    can be a moment ahead of the counter; polling, then comparing exactly, still
    catches any request counted twice or by no one.
    """
    deadline = time.monotonic() + 10
    while True:
        value = sample(
            await scrape(session, gateway), "gateway_requests_total", {"outcome": outcome}
        )
        if value >= at_least or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


def sample(exposition: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The value of one sample, 0 when absent."""
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == name and s.labels == (labels or {}):
                return s.value
    return 0.0


async def send(gateway: GatewayProcess, count: int, authorization: str | None) -> list[int]:
    """``count`` requests, each on a new connection so the kernel spreads them over workers."""
    headers = {} if authorization is None else {"Authorization": authorization}
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> int:
            async with session.get(f"{gateway.url}/r/{i}", headers=headers) as resp:
                await resp.read()
                return resp.status

        return [await one(i) for i in range(count)]


def families_and_labels(exposition: str) -> dict[str, dict[str, set[str]]]:
    """``{family: {label: values}}`` for every ``gateway_*`` family, bucket bounds left out."""
    found: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(exposition):
        if not family.name.startswith("gateway_"):
            continue
        labels = found.setdefault(family.name, {})
        for s in family.samples:
            for name, value in s.labels.items():
                if name != "le":
                    labels.setdefault(name, set()).add(value)
    return found


async def issue_token(store: Store, prefix: str = "tg") -> tuple[str, str]:
    """A new project with one token: ``(raw token, token id)``, cheaply hashed."""
    issued = await issue(store, prefix=prefix, hasher=CHEAP_HASHER, project_name="serve-test")
    return issued.raw, issued.token_id


def echo_app() -> web.Application:
    """The upstream of these tests: 200 ``ok`` for any method and path."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app
