"""The local backend's quota overshoot, measured (a ``quota`` workload of ``make bench``).

Two ``gateway serve`` instances with ``RATE_LIMIT_BACKEND=local`` share one database; a
project has a quota of :data:`QUOTA` per day; a wrk per instance sends its token as fast
as the answers come, both at once, for longer than the quota lasts. Each instance admits
against the period's total as its last flush read it plus its own unflushed units, so
every instance may admit what the others took since their last flush: the overshoot is
bounded by what all instances admit within one flush interval (``LAST_USED_FLUSH_INTERVAL``,
:data:`FLUSH_INTERVAL` here). Reported: admitted requests, the overshoot, and that bound
computed from the measured admission rate.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from procs import free_port, wait_http

if TYPE_CHECKING:
    from workloads import Workloads

QUOTA = 3_000
FLUSH_INTERVAL = 1.0
SECONDS = 8.0  # well past the quota at the rates this machine reaches
CONNECTIONS = 20


async def _token(url: str, prefix: str, quota: str) -> list[str]:
    import asyncpg

    from gateway.core import tokens
    from gateway.core.journal import CLI
    from gateway.core.store import Store

    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    store = Store(pool)
    hasher = tokens.Hasher(time_cost=1, memory_cost=1024, parallelism=1)
    try:
        project = await store.create_project("bench-overshoot", None, quota=quota, actor=CLI)
        made = []
        for _ in range(2):
            token = tokens.generate(prefix)
            await store.create_token(
                project.id,
                token.id,
                secret_hash=hasher.hash(token.secret),
                description="bench",
                expires_in_days=None,
                actor=CLI,
            )
            made.append(str(token))
        return made
    finally:
        await pool.close()


def run(w: Workloads) -> dict[str, Any]:
    import time

    import procs
    from usage_bench import procs_target, serve_argv, spawn

    upstream = free_port()
    procs.start_nginx(
        w.procs, "overshoot-upstream", w.root, nginx=w.opts.nginx, port=upstream, workers=1
    )
    wait_http(f"http://127.0.0.1:{upstream}/", deadline=time.monotonic() + 30, procs=w.procs)
    env = {
        **w.bench.gateway_env,
        "UPSTREAM_URL": f"http://127.0.0.1:{upstream}",
        "RATE_LIMIT_BACKEND": "local",
        "LAST_USED_FLUSH_INTERVAL": str(FLUSH_INTERVAL),
    }
    tokens = asyncio.run(_token(env["DATABASE_URL"], w.bench.token_prefix, f"{QUOTA}/day"))
    names = ("overshoot-1", "overshoot-2")
    try:
        targets = [
            procs_target(spawn(w, name, env, serve_argv(), token), token)
            for name, token in zip(names, tokens, strict=True)
        ]
        runs: list[dict[str, Any]] = [{}, {}]

        def one(i: int) -> None:
            runs[i] = w.wrk(targets[i], CONNECTIONS, seconds=SECONDS)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for name in (*names, "overshoot-upstream"):
            w.procs.stop(name)
    admitted = sum(r["requests"] - r["non2xx"] for r in runs)
    total_rps = sum(r["rps"] for r in runs)
    # Admission rate while the quota lasted: admitted over the time it took to use it up
    # is at least the measured rate of all answers (200s and 429s cost about the same).
    bound = total_rps * FLUSH_INTERVAL
    result = {
        "quota": QUOTA,
        "admitted": admitted,
        "overshoot": admitted - QUOTA,
        "answers_per_second": total_rps,
        "bound": bound,
        "flush_interval": FLUSH_INTERVAL,
    }
    print(f"  overshoot: {admitted - QUOTA} over {QUOTA} (bound {bound:.0f})", flush=True)
    return result


def render(part: dict[str, Any]) -> list[str]:
    share = part["overshoot"] / part["quota"]
    return [
        "### Quotas on the local backend: overshoot (2 instances, one database)",
        "",
        f"Quota {part['quota']}/day; admitted {part['admitted']} "
        f"(overshoot {part['overshoot']}, {share:.1%}); both instances answered "
        f"{part['answers_per_second']:.0f} requests/s together, so one flush interval "
        f"({part['flush_interval']:.0f} s) of admissions is about {part['bound']:.0f}: "
        f"{'within' if part['overshoot'] <= part['bound'] else '**beyond**'} the bound.",
        "",
    ]
