"""What turning asyncpg's statement cache off costs (gateway.core.db.POOLER_SAFE).

Times the gateway's two queries, the token lookup of a cache miss
(``Store.auth_record``) and the batched last-used write (``Store.touch_last_used``),
on one pooled connection straight to Postgres, with asyncpg's default statement cache
(100 named statements) and with it off, in interleaved rounds. Prints microseconds per
call (median of the rounds) and the ratio. ``DATABASE_URL`` as for ``make bench``
(a fresh database, dropped afterwards), else an embedded Postgres.

    .venv/bin/python bench/statement_cache.py [--rounds 5] [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fixture import open_database
from gateway.core import db, tokens
from gateway.core.journal import CLI
from gateway.core.store import Store

CACHES = {"cache on (asyncpg default)": {}, "cache off (Tollgate)": db.POOLER_SAFE}


async def per_call(call: Callable[[], Awaitable[object]], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - start) / calls * 1e6


def queries(store: Store, token_id: str) -> dict[str, Callable[[], Awaitable[object]]]:
    now = [datetime.now(UTC)]
    return {
        "token lookup (cache miss)": lambda: store.auth_record(token_id),
        "last-used write (1 token)": lambda: store.touch_last_used([token_id], now),
    }


async def measure(url: str, rounds: int, calls: int) -> dict[str, dict[str, list[float]]]:
    setup = await asyncpg.create_pool(url, min_size=1, max_size=1)
    assert setup is not None
    project = await Store(setup).create_project("bench", None, actor=CLI)
    token = tokens.generate("tg")
    await Store(setup).create_token(
        project.id,
        token.id,
        secret_hash=tokens.Hasher(time_cost=1, memory_cost=1024, parallelism=1).hash(token.secret),
        description="",
        expires_in_days=None,
        actor=CLI,
    )
    await setup.close()
    found: dict[str, dict[str, list[float]]] = {name: {} for name in CACHES}
    for _ in range(rounds):
        for name, options in CACHES.items():
            pool = await asyncpg.create_pool(url, min_size=1, max_size=1, **options)
            assert pool is not None
            for query, call in queries(Store(pool), token.id).items():
                await call()  # the first use prepares, with or without the cache
                found[name].setdefault(query, []).append(await per_call(call, calls))
            await pool.close()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as tmp:
        database = open_database(dict(os.environ), Path(tmp))
        try:
            found = asyncio.run(measure(database.url, opts.rounds, opts.calls))
        finally:
            database.drop()
    on, off = (found[name] for name in CACHES)
    print("| query | cache on, µs | cache off, µs | off / on |")
    print("|---|---|---|---|")
    for query in on:
        a, b = statistics.median(on[query]), statistics.median(off[query])
        print(f"| {query} | {a:.0f} | {b:.0f} | {b / a:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
