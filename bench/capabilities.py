"""The request-path cost of scopes and IP allowlists: one gateway, tokens with and without.

    .venv/bin/python bench/capabilities.py [--rounds 10] [--seconds 4]

(With DATABASE_URL set its database is made on that server and dropped afterwards;
unset, an embedded Postgres in a temporary directory.)

One ``gateway serve`` (2 workers) in front of one nginx upstream; three tokens of one
project: ``plain`` (no scopes, no allowlist), ``capable`` (20 scopes and 50 CIDR blocks,
the matching scope and block listed last) and ``plain2`` (a second plain token: the
A/A pair that shows the noise). Each round sends wrk -c50 with each token in turn
(rotating the order) to the same gateway; the figures are requests/s and the CPU time
of the gateway's processes per request. Only the ratios paired within a round mean
something on a shared machine. The target (bench/README.md): ``capable`` within 3 % of
``plain``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import asyncpg
from alternate import gateway_env, measured, rotated, rounds_parser
from multidict import CIMultiDict
from procs import Processes, free_port, wait_http, wrk

from gateway.core import tokens
from gateway.core.config import Settings
from gateway.core.journal import CLI
from gateway.core.store import Store
from gateway.proxy.capabilities import compile_rules
from gateway.proxy.clientaddr import ClientAddresses

PATH = "/v1/validate"
SCOPES = [f"GET /v1/other{n}" for n in range(19)] + [f"GET {PATH}"]
BLOCKS = [f"10.{n}.0.0/16" for n in range(49)] + ["127.0.0.0/8"]
NAMES = ("plain", "capable", "plain2")


async def _issue(url: str, settings: Settings) -> dict[str, str]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    store = Store(pool)
    hasher = tokens.Hasher(time_cost=1, memory_cost=1024, parallelism=1)
    try:
        project = await store.create_project("bench capabilities", None, actor=CLI)
        issued = {}
        for name in NAMES:
            token = tokens.generate(settings.token_prefix)
            capable = name == "capable"
            info = await store.create_token(
                project.id,
                token.id,
                secret_hash=hasher.hash(token.secret),
                description=name,
                expires_in_days=None,
                actor=CLI,
                scopes=SCOPES if capable else (),
                allowed_ips=BLOCKS if capable else (),
            )
            assert info is not None
            issued[name] = str(token)
        return issued
    finally:
        await pool.close()


def main() -> int:
    runs = measured(rounds_parser(__doc__).parse_args(), "tollgate-capabilities-", measure)
    if runs is None:
        return 2
    report(runs)
    print("\n| in-process, µs per call (min of 5) | µs |\n|---|---:|")
    for what, cost in micro().items():
        print(f"| {what} | {cost:.2f} |")
    return 0


def measure(
    opts: argparse.Namespace, root: Path, procs: Processes, wrk_bin: str, nginx_bin: str
) -> dict[str, list[dict[str, float]]]:
    env, database = gateway_env(procs, root, nginx_bin)
    try:
        issued = asyncio.run(_issue(database.url, Settings.from_env(env)))
        port, metrics_port = free_port(), free_port()
        env.update(GATEWAY_PORT=str(port), GATEWAY_METRICS_PORT=str(metrics_port))
        argv = [sys.executable, "-m", "gateway", "serve"]
        proc = procs.start("gateway", argv, log=root / "gateway.log", env=env)
        wait_http(
            f"http://127.0.0.1:{metrics_port}/healthz",
            deadline=time.monotonic() + 60,
            procs=procs,
        )
        url = f"http://127.0.0.1:{port}{PATH}"
        headers = {name: {"Authorization": f"Bearer {raw}"} for name, raw in issued.items()}
        for name in NAMES:  # warm-up: every token proven in both workers
            wrk(wrk_bin, url, connections=50, seconds=2, headers=headers[name])
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in NAMES}
        for number in range(opts.rounds):
            for name in rotated(number, NAMES):
                run = wrk(
                    wrk_bin,
                    url,
                    connections=50,
                    seconds=opts.seconds,
                    headers=headers[name],
                    cpu_of=proc.pid,
                )
                assert run.get("non2xx", 0) == 0, run
                runs[name].append({"rps": run["rps"], "cpu_us": run["cpu_us"]})
            print(
                f"round {number + 1}: "
                + " ".join(
                    f"{n} {runs[n][-1]['rps']:.0f} rps {runs[n][-1]['cpu_us']:.1f} µs"
                    for n in NAMES
                ),
                flush=True,
            )
        return runs
    finally:
        database.drop()


def micro() -> dict[str, float]:
    """What the checks cost in this process, in µs: a repeated request (its answer
    remembered), a new path from a new address each time (the compiled pattern and sets),
    the client address without TRUSTED_PROXIES, and compiling a token's rules."""
    rules = compile_rules(SCOPES, BLOCKS)
    assert rules is not None
    clients = ClientAddresses(())
    no_headers: CIMultiDict[str] = CIMultiDict()
    counter = itertools.count()

    def each(call: Callable[[], object], number: int) -> float:
        return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6

    def new_path_and_address() -> None:
        n = next(counter)
        rules.check("GET", f"{PATH}/{n}", f"127.{n % 250}.{n // 250 % 250}.1")

    empty = each(lambda: None, 100_000)
    return {
        "check, repeated request": each(lambda: rules.check("GET", PATH, "127.0.0.1"), 100_000)
        - empty,
        "check, new path and address": each(new_path_and_address, 20_000) - empty,
        "client address": each(lambda: clients.resolve("127.0.0.1", no_headers), 100_000) - empty,
        "compile 20 scopes + 50 blocks": each(lambda: compile_rules(SCOPES, BLOCKS), 2_000),
    }


def report(runs: dict[str, list[dict[str, float]]]) -> None:
    print(
        "\n| token | rps (median) | CPU µs/req (median) | rps / plain's, per round | "
        "plain's CPU / this, per round |"
    )
    print("|---|---:|---:|---|---|")
    for name in NAMES:
        pairs = list(zip(runs[name], runs["plain"], strict=True))
        rps = statistics.median(r["rps"] for r in runs[name])
        cpu = statistics.median(r["cpu_us"] for r in runs[name])
        rps_ratio = spread([this["rps"] / plain["rps"] for this, plain in pairs])
        cpu_ratio = spread([plain["cpu_us"] / this["cpu_us"] for this, plain in pairs])
        print(f"| {name} | {rps:.0f} | {cpu:.1f} | {rps_ratio} | {cpu_ratio} |")


def spread(ratios: list[float]) -> str:
    """Median (min–max) of paired ratios: 1.000 is no difference, below 1 is slower."""
    return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})"


if __name__ == "__main__":
    sys.exit(main())
