"""Admin API latency with an admin key vs the bootstrap ADMIN_TOKEN, in the same run, and how
long a revoked key keeps working on a second admin instance.

Two admin apps (the real ``admin.app``, each with its own pool and proof cache, as two
``admin serve`` processes would have) on a scratch database created on ``DATABASE_URL`` (a
server URL; dropped afterwards), the default (OWASP) argon2 profile. ``GET
/v1/projects/{id}`` is timed over keep-alive, bootstrap and key requests interleaved in
blocks (each first in turn), after one warm-up request each (the key's argon2 proof). Then
a key proven on both instances is revoked on the first, and the second is asked until it
refuses. Prints one JSON line: p50/p99 in ms of each, the key/bootstrap ratios, and the
revocation figure.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/admin_keys.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from aiohttp import web

from admin.app import create_app
from admin.delivery import DeliveryOptions
from gateway.core.config import Settings
from gateway.core.migrate import migrate

BOOTSTRAP = "bench-admin-token-" + "b" * 32


async def _serve(settings: Settings) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(settings, delivery=DeliveryOptions(run=False)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def _quantiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100)
    return {"p50": round(cuts[49], 3), "p99": round(cuts[98], 3)}


async def _timed(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    async with session.get(url, headers=headers) as response:
        await response.read()
        assert response.status == 200, response.status
    return (time.perf_counter() - start) * 1000


async def measure(url: str, requests: int, block: int) -> dict[str, Any]:
    settings = Settings.from_env({"DATABASE_URL": url, "ADMIN_TOKEN": BOOTSTRAP})
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    (first, one), (second, two) = await _serve(settings), await _serve(settings)
    root = {"Authorization": f"Bearer {BOOTSTRAP}"}
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{one}/v1/projects", json={"name": "b"}, headers=root) as r:
                project = (await r.json())["id"]
            body = {"name": "bench", "role": "manager", "project_id": project}
            async with session.post(f"{one}/v1/admin-keys", json=body, headers=root) as r:
                made = await r.json()
            key = {"Authorization": f"Bearer {made['key']}"}
            path = f"{one}/v1/projects/{project}"
            for headers in (root, key):  # warm-up: the key's one argon2 proof
                await _timed(session, path, headers)
            times: dict[str, list[float]] = {"bootstrap": [], "admin_key": []}
            kinds = list(times)
            for number in range(requests // block):
                for kind in kinds[number % 2 :] + kinds[: number % 2]:
                    headers = root if kind == "bootstrap" else key
                    for _ in range(block):
                        times[kind].append(await _timed(session, path, headers))
            # Revocation: proven on both, revoked on the first, asked of the second.
            await _timed(session, f"{two}/v1/projects/{project}", key)
            async with session.delete(f"{one}/v1/admin-keys/{made['id']}", headers=root) as r:
                assert r.status == 204
            revoked = time.perf_counter()
            accepted_after = 0
            while True:
                async with session.get(f"{two}/v1/projects/{project}", headers=key) as r:
                    if r.status == 401:
                        break
                accepted_after += 1
            refused_ms = (time.perf_counter() - revoked) * 1000
    finally:
        await first.cleanup()
        await second.cleanup()
    quantiles = {kind: _quantiles(samples) for kind, samples in times.items()}
    return {
        "requests_each": len(times["bootstrap"]),
        "ms": quantiles,
        "ratio_key_to_bootstrap": {
            q: round(quantiles["admin_key"][q] / quantiles["bootstrap"][q], 2)
            for q in ("p50", "p99")
        },
        "revoked_key": {
            "requests_accepted_by_second_instance_after_revoke": accepted_after,
            "refused_by_second_instance_after_ms": round(refused_ms, 2),
        },
    }


async def main_async(server: str, requests: int, block: int) -> dict[str, Any]:
    name = f"tollgate_bench_keys_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = urlunsplit(urlsplit(server)._replace(path="/" + name))
        return await measure(url, requests, block)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="of each kind")
    parser.add_argument("--block", type=int, default=100, help="requests in a row of one kind")
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL")
    if not server:
        print("admin_keys.py: set DATABASE_URL to a Postgres server URL", file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(main_async(server, args.requests, args.block))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
