"""What the usage ledger and quotas cost, each against a baseline in the same run:

* ``ledger``: proxied throughput of ``gateway serve`` with the ledger counting every
  request against the same tree with its counting switched off (bench/noledger.py, a
  wrapper that only the bench runs), interleaved round by round, same settings, same
  upstream (nginx), wrk -c50. Target: within 3 %.
* ``quota``: Redis commands per request on the redis backend, for a token of a project
  with a quota against one without, counted by a private ``redis-server``'s own
  ``INFO commandstats``. Target: no more than the rate limit alone (1); and the local
  backend's overshoot (bench/quota_overshoot.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any

import procs
from procs import free_port, wait_http

if TYPE_CHECKING:
    from run import Target
    from workloads import Workloads

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LEDGER_CONNECTIONS = 50


def spawn(w: Workloads, key: str, env: dict[str, str], argv: list[str], token: str) -> Target:
    """A gateway started with ``argv`` (``... serve``) on free ports, ready to serve."""
    from run import Target, tail

    port, metrics_port = free_port(), free_port()
    env = {
        **env,
        "GATEWAY_PORT": str(port),
        "GATEWAY_METRICS_PORT": str(metrics_port),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    log = w.root / f"{key}.log"
    w.procs.start(key, argv, log=log, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 60
    try:
        wait_http(f"http://127.0.0.1:{metrics_port}/healthz", deadline=deadline, procs=w.procs)
        wait_http(url, deadline=deadline, headers=auth, procs=w.procs)
    except RuntimeError:
        print(tail(log), file=sys.stderr)
        raise
    return Target(
        key, key, url, auth, process=key, metrics_url=f"http://127.0.0.1:{metrics_port}/metrics"
    )


def serve_argv(script: Path | None = None) -> list[str]:
    if script is None:
        return [sys.executable, "-m", "gateway", "serve"]
    return [sys.executable, str(script), "serve"]


# The ledger's cost is a fraction of a percent of a request, far below one round's noise
# on a shared 2-core machine (a single pair of runs differs by several percent either way).
# So: short runs in many interleaved rounds, a second "on" gateway as an A/A pair that
# shows the noise floor in the same run, and the counting's own cost measured in-process.
LEDGER_ROUNDS = 9
LEDGER_SECONDS = 3.0


def ledger(w: Workloads) -> dict[str, Any]:
    """Ledger on (A, and A' for the noise floor) against off (B), same tree, interleaved."""
    upstream = free_port()
    procs.start_nginx(
        w.procs, "ledger-upstream", w.root, nginx=w.opts.nginx, port=upstream, workers=1
    )
    wait_http(f"http://127.0.0.1:{upstream}/", deadline=time.monotonic() + 30, procs=w.procs)
    env = {**w.bench.gateway_env, "UPSTREAM_URL": f"http://127.0.0.1:{upstream}"}
    token = w.bench.tokens.cached
    names = ("on", "off", "on2")
    rounds: list[dict[str, Any]] = []
    try:
        targets = {
            "on": spawn(w, "ledger-on", env, serve_argv(), token),
            "off": spawn(w, "ledger-off", env, serve_argv(BENCH / "noledger.py"), token),
            "on2": spawn(w, "ledger-on2", env, serve_argv(), token),
        }
        for number in range(max(w.opts.rounds, LEDGER_ROUNDS)):
            row = {}
            # Rotate which goes first, so none always runs on a warmer machine.
            for name in names[number % 3 :] + names[: number % 3]:
                w.warm(targets[name], LEDGER_CONNECTIONS)
                row[name] = run = w.wrk(
                    targets[name], LEDGER_CONNECTIONS, seconds=min(w.opts.seconds, LEDGER_SECONDS)
                )
                print(f"  ledger r{number + 1} {name}: {run['rps']:.0f} rps", flush=True)
            rounds.append(row)
    finally:
        for name in ("ledger-on", "ledger-off", "ledger-on2", "ledger-upstream"):
            w.procs.stop(name)
    return {
        "rounds": rounds,
        "ratio_median": median(r["on"]["rps"] / r["off"]["rps"] for r in rounds),
        "noise_median": median(r["on"]["rps"] / r["on2"]["rps"] for r in rounds),
        "cpu_ratio_median": median(r["on"]["cpu_us"] / r["off"]["cpu_us"] for r in rounds),
        "cpu_noise_median": median(r["on"]["cpu_us"] / r["on2"]["cpu_us"] for r in rounds),
        "cpu_us_on": median(r["on"].get("cpu_us", 0) for r in rounds),
        "cpu_us_off": median(r["off"].get("cpu_us", 0) for r in rounds),
        "count_us": count_cost_us(),
    }


def count_cost_us() -> float:
    """What one ``Ledger.count`` costs in this process, µs (the best of 5 timings)."""
    import timeit

    from gateway.proxy.usage import Ledger  # this tree's: bench/run.py puts it first

    ledger = Ledger()
    count = ledger.count
    number = 200_000
    best = min(
        timeit.repeat(
            lambda: count("tokenid0123456789", "projectid01234567", 200, True),
            number=number,
            repeat=5,
        )
    )
    return best / number * 1e6


# ---------------------------------------------------------------- Redis round trips


def redis_calls(port: int) -> int:
    """Round trips the server has answered with a script: EVALSHA and EVAL calls. (The
    commands a script runs inside, TIME, GET, SET, INCR, are counted apart by Redis and
    cost no round trip.)"""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "commandstats"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = 0
    for line in out.splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
            total += int(line.split("calls=")[1].split(",")[0])
    return total


async def _quota_tokens(url: str, prefix: str) -> tuple[str, str]:
    import asyncpg

    from gateway.core import tokens
    from gateway.core.journal import CLI
    from gateway.core.store import Store

    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    store = Store(pool)
    hasher = tokens.Hasher(time_cost=1, memory_cost=1024, parallelism=1)
    made = []
    try:
        for name, quota in (("bench-quota", "100000000000/day"), ("bench-plain", None)):
            project = await store.create_project(name, None, quota=quota, actor=CLI)
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
    finally:
        await pool.close()
    return made[0], made[1]


def quota(w: Workloads) -> dict[str, Any]:
    """Redis commands per request with a quota and without; then the local overshoot."""
    import quota_overshoot

    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        return {"skipped": "redis-server not installed"}
    redis_port, upstream = free_port(), free_port()
    w.procs.start(
        "bench-redis",
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
        log=w.root / "redis.log",
    )
    procs.start_nginx(
        w.procs, "quota-upstream", w.root, nginx=w.opts.nginx, port=upstream, workers=1
    )
    wait_http(f"http://127.0.0.1:{upstream}/", deadline=time.monotonic() + 30, procs=w.procs)
    env = {
        **w.bench.gateway_env,
        "UPSTREAM_URL": f"http://127.0.0.1:{upstream}",
        "RATE_LIMIT_BACKEND": "redis",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
    }
    with_quota, plain = asyncio.run(_quota_tokens(env["DATABASE_URL"], w.bench.token_prefix))
    result: dict[str, Any] = {}
    try:
        gateway = spawn(w, "quota-gateway", env, serve_argv(), plain)
        for name, token in (("without", plain), ("with", with_quota)):
            target = procs_target(gateway, token)
            w.warm(target, LEDGER_CONNECTIONS)
            before = redis_calls(redis_port)
            run = w.wrk(target, LEDGER_CONNECTIONS)
            calls = redis_calls(redis_port) - before
            result[name] = {
                "requests": run["requests"],
                "redis_calls": calls,
                "per_request": calls / max(1, run["requests"]),
                "rps": run["rps"],
                "non2xx": run["non2xx"],
            }
            print(
                f"  redis {name} quota: {calls / max(1, run['requests']):.3f} commands/request",
                flush=True,
            )
    finally:
        for name in ("quota-gateway", "quota-upstream", "bench-redis"):
            w.procs.stop(name)
    result["overshoot"] = quota_overshoot.run(w)
    return result


def procs_target(gateway: Target, token: str) -> Target:
    from run import Target

    return Target(
        gateway.key,
        gateway.label,
        gateway.url,
        {"Authorization": f"Bearer {token}"},
        process=gateway.process,
    )


def render(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if "ledger" in results:
        part = results["ledger"]
        out += [
            "### Usage ledger: proxied throughput, ledger on vs off (same tree, same run)",
            "",
            "| round | on rps | off rps | on' rps | on / off | on / on' (noise) |",
            "|---|---|---|---|---|---|",
        ]
        for i, row in enumerate(part["rounds"]):
            on, off, on2 = (row[k]["rps"] for k in ("on", "off", "on2"))
            out.append(
                f"| {i + 1} | {on:.0f} | {off:.0f} | {on2:.0f} | {on / off:.3f} | {on / on2:.3f} |"
            )
        ok = part["ratio_median"] >= 0.97
        share = part["count_us"] / part["cpu_us_on"] if part["cpu_us_on"] else 0.0
        out += [
            "",
            f"Median on/off {part['ratio_median']:.3f} (target >= 0.97: "
            f"{'met' if ok else '**missed**'}); the A/A pair of two identical gateways, "
            f"median {part['noise_median']:.3f}, is the noise floor of the same run. CPU per "
            f"request (medians) on {part['cpu_us_on']:.0f} us, off {part['cpu_us_off']:.0f} us "
            f"(on/off per round, median {part['cpu_ratio_median']:.3f}; on/on' "
            f"{part['cpu_noise_median']:.3f}). One Ledger.count "
            f"costs {part['count_us']:.2f} us in-process: {share:.2%} of a request's CPU.",
            "",
        ]
    if "quota" in results:
        part = results["quota"]
        if "skipped" in part:
            out += [f"### Quotas: skipped ({part['skipped']})", ""]
        else:
            out += [
                "### Quotas on the redis backend: Redis commands per request",
                "",
                "| token | requests | EVALSHA/EVAL round trips | per request |",
                "|---|---|---|---|",
            ]
            for name in ("without", "with"):
                row = part[name]
                out.append(
                    f"| {name} a quota | {row['requests']} | {row['redis_calls']} | "
                    f"{row['per_request']:.3f} |"
                )
            ok = part["with"]["per_request"] <= part["without"]["per_request"] + 0.001
            out += ["", f"With a quota no more round trips: {'met' if ok else '**missed**'}.", ""]
            import quota_overshoot

            out += quota_overshoot.render(part["overshoot"])
    return out
