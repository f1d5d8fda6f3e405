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
from pathlib import Path

from fixture import create_tokens, open_database
from procs import Processes, free_port, start_nginx, wait_http, wrk
from run import find_tools

from gateway.core.config import Settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4)
    opts = parser.parse_args()
    tools = find_tools()
    if tools is None:
        return 2
    wrk_bin, nginx_bin = tools
    with tempfile.TemporaryDirectory(prefix="tollgate-alternate-") as tmp:
        root = Path(tmp)
        procs = Processes()
        try:
            cpu = measure(opts, root, procs, wrk_bin, nginx_bin)
        finally:
            procs.close()
    report(opts.trees, cpu)
    return 0


def measure(
    opts: argparse.Namespace, root: Path, procs: Processes, wrk_bin: str, nginx_bin: str
) -> dict[int, list[float]]:
    upstream = free_port()
    start_nginx(procs, "upstream", root, nginx=nginx_bin, port=upstream, workers=1)
    env = dict(os.environ, UPSTREAM_URL=f"http://127.0.0.1:{upstream}", GATEWAY_WORKERS="2")
    env.update(RATE_LIMIT="100000000/second", LOG_FORMAT="json")
    database = open_database(env, root / "data")
    try:
        env["DATABASE_URL"] = database.url
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
            order = [(number + k) % len(urls) for k in range(len(urls))]
            for n in order if number % 2 == 0 else reversed(order):
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
