"""CPU per proxied request of several gateway source trees, short runs alternated.

    .venv/bin/python bench/alternate.py TREE [TREE ...] [--rounds 10] [--seconds 4]

Every tree's ``gateway serve`` (2 workers) runs at once on free ports, in front of one
nginx upstream; each round sends wrk -c50 to each in turn (rotating the order), and
the figure is the CPU time of that gateway's processes per request served. The report
pairs each round's figure with the first tree's of the same round: on a shared machine
only those paired ratios mean something. Pass the first tree twice (two copies) to see
what the noise alone gives. Used for the metrics decision in bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from fixture import BenchDatabase, create_tokens, open_database
from procs import Processes, free_port, start_nginx, wait_http, wrk
from run import find_tools

from gateway.core.config import Settings

T = TypeVar("T")
# measure(opts, root, procs, wrk_bin, nginx_bin): the rounds' figures.
Measure = Callable[[argparse.Namespace, Path, Processes, str, str], T]


def main() -> int:
    parser = rounds_parser(__doc__)
    parser.add_argument("trees", nargs="+", type=Path)
    opts = parser.parse_args()
    cpu = measured(opts, "tollgate-alternate-", measure)
    if cpu is None:
        return 2
    report(opts.trees, cpu)
    return 0


def rounds_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options of an alternated run: how many rounds, how long each run of a round."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4)
    return parser


def measured(opts: argparse.Namespace, prefix: str, measure: Measure[T]) -> T | None:
    """``measure`` in a fresh temporary folder, its processes stopped after; None (the
    reason printed) without wrk or nginx."""
    tools = find_tools()
    if tools is None:
        return None
    wrk_bin, nginx_bin = tools
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        procs = Processes()
        try:
            return measure(opts, Path(tmp), procs, wrk_bin, nginx_bin)
        finally:
            procs.close()


def gateway_env(
    procs: Processes, root: Path, nginx_bin: str
) -> tuple[dict[str, str], BenchDatabase]:
    """A gateway's environment (2 workers, no rate limit in the way, JSON logs) in front of a
    started nginx upstream, and its fresh database (the caller drops it)."""
    upstream = free_port()
    start_nginx(procs, "upstream", root, nginx=nginx_bin, port=upstream, workers=1)
    env = dict(os.environ, UPSTREAM_URL=f"http://127.0.0.1:{upstream}", GATEWAY_WORKERS="2")
    env.update(RATE_LIMIT="100000000/second", LOG_FORMAT="json")
    database = open_database(env, root / "data")
    env["DATABASE_URL"] = database.url
    return env, database


def rotated(number: int, items: Sequence[T]) -> list[T]:
    """Round ``number``'s order: each round starts one item later, every other one reversed,
    so no item always runs first or right after the same other."""
    order = [items[(number + k) % len(items)] for k in range(len(items))]
    return order if number % 2 == 0 else order[::-1]


def measure(
    opts: argparse.Namespace, root: Path, procs: Processes, wrk_bin: str, nginx_bin: str
) -> dict[int, list[float]]:
    env, database = gateway_env(procs, root, nginx_bin)
    try:
        token = create_tokens(database.url, Settings.from_env(env), 0).cached
        headers = {"Authorization": f"Bearer {token}"}
        urls, pids = [], []
        for n, tree in enumerate(opts.trees):
            port, metrics_port = free_port(), free_port()
            tree_env = dict(env, GATEWAY_PORT=str(port), GATEWAY_METRICS_PORT=str(metrics_port))
            tree_env["PYTHONPATH"] = str(tree.resolve())
            argv = [sys.executable, "-m", "gateway", "serve"]
            log = root / f"gateway{n}.log"
            proc = procs.start(f"gateway{n}", argv, log=log, env=tree_env, cwd=tree.resolve())
            deadline = time.monotonic() + 60
            wait_http(f"http://127.0.0.1:{metrics_port}/healthz", deadline=deadline, procs=procs)
            urls.append(f"http://127.0.0.1:{port}/")
            pids.append(proc.pid)
        for url in urls:  # warm-up
            wrk(wrk_bin, url, connections=50, seconds=2, headers=headers)
        cpu: dict[int, list[float]] = {n: [] for n in range(len(urls))}
        for number in range(opts.rounds):
            for n in rotated(number, range(len(urls))):
                run = wrk(
                    wrk_bin,
                    urls[n],
                    connections=50,
                    seconds=opts.seconds,
                    headers=headers,
                    cpu_of=pids[n],
                )
                cpu[n].append(run["cpu_us"])
            print(f"round {number + 1}: " + " ".join(f"{cpu[n][-1]:.1f}" for n in cpu), flush=True)
        return cpu
    finally:
        database.drop()


def report(trees: list[Path], cpu: dict[int, list[float]]) -> None:
    print("\n| tree | CPU µs/req (median) | first / this, per round: median (min–max) |")
    print("|---|---:|---|")
    for n, tree in enumerate(trees):
        ratios = [first / this for first, this in zip(cpu[0], cpu[n], strict=True)]
        spread = f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})"
        print(f"| {tree} | {statistics.median(cpu[n]):.1f} | {spread} |")


if __name__ == "__main__":
    sys.exit(main())
