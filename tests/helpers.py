"""What many tests need, written once: polling with a deadline, free ports, Postgres
addresses, bearer headers, metric samples, a client of a served gateway and issuing
tokens straight in the store."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from yarl import URL

from gateway.core.journal import CLI
from gateway.core.store import Store
from gateway.core.tokens import Hasher, generate
from gateway.proxy.app import Gateway
from gateway.proxy.front import Server

# argon2 parameters that keep tests fast; the gateway reads them from the hash.
CHEAP_HASHER = Hasher(time_cost=1, memory_cost=1024, parallelism=1)

# A well-formed token id that is never issued; fixed, so every test run (and every
# parallel worker) names the same tests.
MISSING_ID = "0NeverIssued00000"


class Clock:
    """A settable clock in seconds (floats, like ``time.monotonic``), for injection."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "") -> float:
    """Poll ``condition`` (sync or async) until it is true; return the seconds it took."""
    started = time.monotonic()
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, what or "condition not met in time"
        await asyncio.sleep(0.002)


def free_port() -> int:
    """A TCP port nothing listens on right now (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_address(url: str) -> tuple[str, int]:
    """Where a postgresql:// URL points: (host or Unix socket directory, port)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    host = query.get("host") or parts.hostname or "127.0.0.1"
    return host, int(query.get("port") or parts.port or 5432)


def typo(raw: str) -> str:
    """``raw`` with its last character changed: always a different string, so its checksum
    fails (the last character is part of it, and may itself be any base62 character)."""
    return raw[:-1] + ("A" if raw[-1] != "A" else "B")


def bearer(raw: str, **more: str) -> dict[str, str]:
    """Request headers carrying ``raw`` as the Bearer token."""
    return {"Authorization": f"Bearer {raw}", **more}


def sample(gateway: Gateway, name: str, **labels: str) -> float:
    """A metric of ``gateway`` (0 when absent)."""
    value = gateway.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else float(value)


class GatewayClient:
    """HTTP calls to a gateway served on a real socket (the ``start_gateway`` fixture):
    ``.get/.post/.request(...)`` take a path, as aiohttp's test client does."""

    def __init__(self, gateway: Gateway, server: Server, session: aiohttp.ClientSession) -> None:
        self.gateway = gateway
        self.server = server
        self.session = session
        self.port = server.port

    def make_url(self, path: str) -> URL:
        return URL(f"http://127.0.0.1:{self.port}").join(URL(path))

    def request(self, method: str, path: str, **options: Any) -> Any:
        return self.session.request(method, self.make_url(path), **options)

    def get(self, path: str, **options: Any) -> Any:
        return self.request("GET", path, **options)

    def post(self, path: str, **options: Any) -> Any:
        return self.request("POST", path, **options)

    def head(self, path: str, **options: Any) -> Any:
        return self.request("HEAD", path, **options)

    def delete(self, path: str, **options: Any) -> Any:
        return self.request("DELETE", path, **options)


@dataclass(frozen=True)
class Issued:
    """A token created straight in the store; ``raw`` is what a client sends."""

    raw: str
    token_id: str
    project_id: str


async def issue(
    store: Store,
    *,
    project_id: str | None = None,
    rate_limit: str | None = None,
    expires_in_days: int | None = 30,
    hasher: Hasher | None = None,
    prefix: str = "tg",
    project_name: str = "test project",
    scopes: tuple[str, ...] = (),
    allowed_ips: tuple[str, ...] = (),
) -> Issued:
    """A token (in a new project unless ``project_id`` is given), hashed with ``hasher``."""
    if project_id is None:
        project_id = (await store.create_project(project_name, rate_limit, actor=CLI)).id
    token = generate(prefix)
    secret_hash = (hasher or Hasher()).hash(token.secret)
    info = await store.create_token(
        project_id,
        token.id,
        secret_hash=secret_hash,
        description="test",
        expires_in_days=expires_in_days,
        actor=CLI,
        scopes=scopes,
        allowed_ips=allowed_ips,
    )
    assert info is not None
    return Issued(str(token), token.id, project_id)


# The tables a flush of last-used times and usage writes (see tests/proxy/conftest.py).
FLUSHED_TABLES: Final = ("tokens", "usage_daily", "usage_batches", "quota_usage")


async def project_with_tokens(store: Store, count: int) -> tuple[str, list[str]]:
    """A new project and the ids of ``count`` tokens in it, for tests that never present
    them (their hash is no real one)."""
    project = await store.create_project("p", None, actor=CLI)
    ids = []
    for _ in range(count):
        token = generate("tg")
        await store.create_token(
            project.id,
            token.id,
            secret_hash="$argon2id$x",
            description="",
            expires_in_days=30,
            actor=CLI,
        )
        ids.append(token.id)
    return project.id, ids
