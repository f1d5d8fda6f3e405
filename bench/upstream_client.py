"""CPU per request of the upstream client alone, this tree against another one.

    .venv/bin/python bench/upstream_client.py --baseline TREE [--rounds 6 --requests 100000]

One nginx worker answers every request with 200 and a 29-byte body (as in run.py).
Round after round, each tree's ``UpstreamClient`` runs in a fresh uvloop process (its
own ``gateway`` package first on the path) and sends ``--requests`` requests, 50 at a
time, with the headers the gateway sends; the figure is that process's CPU time per
request, which the proxying server's own costs do not blur. Needs nginx; exits 2
without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CONCURRENCY = 50
HEADERS = [
    ("X-Project-Id", "p" * 17),
    ("X-Token-Id", "t" * 17),
    ("X-Request-Id", "0123456789ab1"),
    ("User-Agent", "wrk"),
    ("X-Forwarded-For", "127.0.0.1"),
    ("X-Forwarded-Proto", "http"),
    ("X-Forwarded-Host", "127.0.0.1:8080"),
]


def measure(url: str, requests: int) -> None:
    """In the child: print the CPU µs per request of ``requests`` requests."""
    import asyncio

    import uvloop

    from gateway.proxy.upstream import UpstreamClient

    async def run() -> float:
        client = UpstreamClient(url, timeout=10)

        async def worker(count: int) -> None:
            for _ in range(count):
                response = await client.request("GET", "/base/x", HEADERS)
                if response.complete_body() is None:
                    while await response.read():
                        pass
                response.release()

        await asyncio.gather(*(worker(100) for _ in range(CONCURRENCY)))  # warm-up
        started = time.process_time()
        await asyncio.gather(*(worker(requests // CONCURRENCY) for _ in range(CONCURRENCY)))
        spent = time.process_time() - started
        await client.close()
        return spent / requests * 1e6

    print(f"{uvloop.run(run()):.3f}")


def child(tree: Path, url: str, requests: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    argv = [sys.executable, str(BENCH / "upstream_client.py"), "--measure", url]
    argv += ["--requests", str(requests)]
    # cwd too: the tree's own gateway package, even where another one is installed.
    out = subprocess.run(argv, env=env, cwd=tree, check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="the other source tree")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--measure", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        measure(args.measure, args.requests)
        return 0
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None or args.baseline is None:
        print("needs nginx (apt-get install nginx) and --baseline TREE", file=sys.stderr)
        return 2
    sys.path.insert(0, str(BENCH))
    import procs

    running = procs.Processes()
    with tempfile.TemporaryDirectory(prefix="tollgate-client-") as tmp:
        try:
            port = procs.free_port()
            procs.start_nginx(running, "upstream", Path(tmp), nginx=nginx, port=port, workers=1)
            url = f"http://127.0.0.1:{port}"
            procs.wait_http(url + "/", deadline=time.monotonic() + 30, procs=running)
            ratios = []
            for number in range(1, args.rounds + 1):
                before = child(args.baseline.resolve(), url, args.requests)
                after = child(ROOT, url, args.requests)
                ratios.append(after / before)
                print(
                    f"round {number}: {before:.2f} → {after:.2f} µs CPU/req ({after / before:.3f})"
                )
            print(f"after / before: median {statistics.median(ratios):.3f}")
        finally:
            running.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
