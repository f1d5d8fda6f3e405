"""How long a leak report takes by what it holds: genuine tokens, unknown ids, or real ids
with a forged secret. The answer must not tell them apart, so neither should its time.

Runs the leak-report use case (admin/leaks.py) on a scratch database created on
``DATABASE_URL`` (a server URL; the database is dropped afterwards), with the default
argon2 profile, the kinds interleaved round by round (each first in turn). Prints one
JSON line: the median milliseconds per report of each kind, and their ratios to genuine.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/leaks.py
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
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from prometheus_client import CollectorRegistry

from admin.leaks import LeakReports
from admin.metrics import AdminMetrics
from gateway.core.journal import CLI, Actor
from gateway.core.migrate import migrate
from gateway.core.store import Store
from gateway.core.store_webhooks import WebhookStore
from gateway.core.tokens import Hasher, checksum, generate


def _forged(token_id: str) -> str:
    body = f"tg_{token_id}_{generate('tg').secret}"
    return body + checksum(body)


async def _issue(store: Store, hasher: Hasher, project_id: str, count: int) -> list[str]:
    raws = []
    for _ in range(count):
        token = generate("tg")
        secret_hash = await asyncio.to_thread(hasher.hash, token.secret)
        await store.create_token(
            project_id,
            token.id,
            secret_hash=secret_hash,
            description="",
            expires_in_days=1,
            actor=CLI,
        )
        raws.append(str(token))
    return raws


async def measure(url: str, rounds: int, size: int) -> dict[str, object]:
    pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        store, hasher = Store(pool), Hasher()
        leaks = LeakReports(WebhookStore(pool), hasher, "tg", AdminMetrics(CollectorRegistry()))
        project = await store.create_project("bench", None, actor=CLI)
        times: dict[str, list[float]] = {"genuine": [], "unknown": [], "forged": []}
        for number in range(rounds):
            kept = await _issue(store, hasher, project.id, size)
            reports = {
                "genuine": await _issue(store, hasher, project.id, size),
                "unknown": [str(generate("tg")) for _ in range(size)],
                "forged": [_forged(raw.split("_")[1]) for raw in kept],
            }
            kinds = list(reports)
            for kind in kinds[number % 3 :] + kinds[: number % 3]:  # each goes first in turn
                raws = reports[kind]
                start = time.perf_counter()
                await leaks.report([(raw, None) for raw in raws], actor=Actor("leak_report"))
                times[kind].append((time.perf_counter() - start) * 1000)
        medians = {kind: statistics.median(ms) for kind, ms in times.items()}
        return {
            "tokens_per_report": size,
            "rounds": rounds,
            "median_ms": {kind: round(ms, 1) for kind, ms in medians.items()},
            "ratio_to_genuine": {
                kind: round(ms / medians["genuine"], 3) for kind, ms in medians.items()
            },
        }
    finally:
        await pool.close()


async def main_async(server: str, rounds: int, size: int) -> dict[str, object]:
    name = f"tollgate_bench_leaks_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        return await measure(urlunsplit(urlsplit(server)._replace(path="/" + name)), rounds, size)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size", type=int, default=10, help="tokens per report")
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL")
    if not server:
        print("leaks.py: set DATABASE_URL to a Postgres server URL", file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(main_async(server, args.rounds, args.size))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
