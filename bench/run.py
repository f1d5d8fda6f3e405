"""Tollgate benchmark: the gateway against nginx and a bare aiohttp proxy.

    make bench                         # or: .venv/bin/python bench/run.py [--rounds 3 ...]

Starts one nginx upstream answering 200 with a small JSON body, then, interleaved
round after round (direct, A, B, C, A, B, C, ...):
  A  nginx as a reverse proxy (the ceiling for a proxy on this machine),
  B  bench/bare_proxy.py, the smallest aiohttp + uvloop proxy (the framework's ceiling),
  C  ``gateway serve`` with auth, rate limit (set high), metrics and the access log on,
all with the same number of worker processes. Also measures first uses of fresh tokens
(the argon2 miss path), cached latency while 20 new tokens a second arrive, and the
throughput of 401 and 429 answers. Writes bench/results/latest.md and prints it.
Needs wrk and nginx (``apt-get install wrk nginx``); exits 2 without them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import procs  # noqa: E402
import report  # noqa: E402
import workloads  # noqa: E402
import workloads_report  # noqa: E402
from procs import Processes, free_port, wait_http, wrk  # noqa: E402

NEW_TOKENS_PER_SECOND = 20
FIRST_USE_TOKENS = 50
NEW_TOKEN_CONCURRENCY = (1, 10)


@dataclass
class Target:
    key: str
    label: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    process: str = ""  # name in Processes whose CPU time is measured
    metrics_url: str = ""  # a gateway's /metrics


@dataclass
class Options:
    rounds: int
    seconds: float
    warmup: float
    connections: int
    workers: int
    gateway: bool
    wrk: str
    nginx: str
    time_limit: int
    profile: Path | None = None
    profile_run: str = "gateway"  # which run --profile samples: the proxied load, 401 or 429
    proxy_only: bool = False
    no_references: bool = False  # without nginx and the bare proxy (gateway comparisons)
    baseline: Path | None = None  # another source tree whose gateway is measured alongside
    new_tokens: bool = True
    py_spy: str | None = None
    workloads: tuple[str, ...] = ()  # bench/workloads.py's, after the rounds
    only_workloads: bool = False  # without the proxying rounds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark Tollgate against nginx and a bare aiohttp proxy."
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up before each target")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (load)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 2, help="workers per proxy (cores)"
    )
    parser.add_argument("--no-gateway", action="store_true", help="only nginx and bare proxy")
    parser.add_argument(
        "--proxy-only",
        action="store_true",
        help="skip new tokens and rejections (quick comparisons of the proxying path)",
    )
    parser.add_argument(
        "--no-new-tokens",
        action="store_true",
        help="skip the new-token measurements (proxying and rejections only)",
    )
    parser.add_argument(
        "--no-references",
        action="store_true",
        help="skip nginx and the bare proxy (quick comparisons with --baseline)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also measure the gateway of this source tree (e.g. a git worktree of an "
        "older commit), interleaved with this one",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(workloads.ALL),
        help="bench/workloads.py's workloads to run after the rounds, comma-separated "
        f"(of {', '.join(workloads.ALL)}; empty: none)",
    )
    parser.add_argument(
        "--only-workloads",
        action="store_true",
        help="only the workloads (no proxying rounds, new tokens or rejections)",
    )
    parser.add_argument(
        "--readme",
        action="store_true",
        help="also replace README.md's performance table with this run's figures",
    )
    parser.add_argument("--time-limit", type=int, default=1200, help="abort after this (s)")
    parser.add_argument("--output", type=Path, default=BENCH / "results" / "latest.md")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the gateway with py-spy during round 1's load run (pip install py-spy)",
    )
    parser.add_argument(
        "--profile-run",
        choices=("proxy", "401", "429"),
        default="proxy",
        help="which gateway load run --profile samples",
    )
    return parser.parse_args(argv)


def find_tools() -> tuple[str, str] | None:
    wrk_bin = shutil.which("wrk")
    nginx_bin = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if wrk_bin and nginx_bin:
        return wrk_bin, nginx_bin
    missing = " and ".join(n for n, b in (("wrk", wrk_bin), ("nginx", nginx_bin)) if not b)
    print(
        f"bench: {missing} not found. To install (Debian/Ubuntu):\n"
        "    sudo apt-get install wrk nginx\n"
        "(the system nginx service is not needed: "
        "`sudo systemctl disable --now nginx`)",
        file=sys.stderr,
    )
    return None


def gateway_available() -> str | None:
    """Why the gateway cannot be benchmarked yet, or None."""
    try:
        import gateway.runtime.serve  # noqa: F401
    except ImportError as err:
        return f"gateway serve is not available ({err})"
    return None


class Timeout(Exception):
    pass


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Bound the whole run; SIGTERM also ends it through the normal cleanup."""

    def expire(signum: int, frame: object) -> None:
        raise Timeout(f"benchmark exceeded its time limit of {seconds} s")

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, expire), signal.signal(signal.SIGTERM, terminate)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


class Bench:
    def __init__(self, opts: Options, root: Path, procs_: Processes) -> None:
        self.opts = opts
        self.root = root
        self.procs = procs_
        self.upstream_port = free_port()
        self.direct = Target(
            "direct",
            "direct upstream",
            f"http://127.0.0.1:{self.upstream_port}/",
            process="upstream",
        )
        self.targets: list[Target] = []
        self.tokens: Any = None
        self.tree = ROOT  # the source tree whose gateway is measured
        self.gateway_env: dict[str, str] = {}
        self.token_prefix = "tg"
        self.redis = False  # the main gateway row uses the Redis limiter
        self.gateway_url = ""
        self.gateway_log: Path | None = None
        self.cleanups: list[Callable[[], None]] = []
        self.fresh: Iterator[str] = iter(())
        self.per_run = 0
        self.profiled = False

    # ------------------------------------------------------------ setup

    def start_upstream_and_proxies(self) -> None:
        o = self.opts
        deadline = time.monotonic() + 30
        # One upstream worker: it only answers a constant, and leaves the cores to the proxies.
        procs.start_nginx(
            self.procs, "upstream", self.root, nginx=o.nginx, port=self.upstream_port, workers=1
        )
        wait_http(self.direct.url, deadline=deadline, procs=self.procs)
        nginx_port, bare_port = free_port(), free_port()
        if self.opts.no_references:
            return
        procs.start_nginx(
            self.procs,
            "nginx-proxy",
            self.root,
            nginx=o.nginx,
            port=nginx_port,
            workers=o.workers,
            upstream_port=self.upstream_port,
        )
        bare = [
            sys.executable,
            str(BENCH / "bare_proxy.py"),
            "--port",
            str(bare_port),
            "--upstream",
            f"http://127.0.0.1:{self.upstream_port}",
            "--workers",
            str(o.workers),
        ]
        self.procs.start("bare proxy", bare, log=self.root / "bare.log")
        a = Target(
            "nginx", "A nginx proxy", f"http://127.0.0.1:{nginx_port}/", process="nginx-proxy"
        )
        b = Target(
            "bare", "B bare aiohttp proxy", f"http://127.0.0.1:{bare_port}/", process="bare proxy"
        )
        for target in (a, b):
            wait_http(target.url, deadline=deadline, procs=self.procs)
        self.targets += [a, b]

    def start_gateway(self) -> None:
        from fixture import create_tokens, open_database

        from gateway.core.config import Settings

        o = self.opts
        env = dict(os.environ)
        env.update(
            UPSTREAM_URL=f"http://127.0.0.1:{self.upstream_port}",
            GATEWAY_HOST="127.0.0.1",
            GATEWAY_WORKERS=str(o.workers),
            GATEWAY_DATA_DIR=str(self.root / "data"),
            RATE_LIMIT="100000000/second",  # high enough never to trigger on the cached token
            LOG_FORMAT="json",
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        # The main row as deployments run it: the shared (Redis) limiter, when Redis
        # answers; a second row has the local one.
        self.redis = redis_answers(Settings.from_env(env).redis_url)
        env["RATE_LIMIT_BACKEND"] = "redis" if self.redis else "local"
        database = open_database(env, self.root / "data")
        self.cleanups.append(database.drop)
        env["DATABASE_URL"] = database.url
        settings = Settings.from_env(env)
        per_run = round(NEW_TOKENS_PER_SECOND * (o.seconds + 1)) + 5
        fresh = (
            0
            if o.proxy_only or not o.new_tokens
            else FIRST_USE_TOKENS
            + o.rounds * len(NEW_TOKEN_CONCURRENCY) * per_run * (2 if o.baseline else 1)
        )
        started = time.monotonic()
        self.tokens = create_tokens(database.url, settings, fresh)
        print(f"  {fresh + 3} tokens created in {time.monotonic() - started:.1f} s", flush=True)
        self.fresh = iter(self.tokens.fresh)
        self.per_run = per_run
        self.gateway_env = env
        self.token_prefix = settings.token_prefix

        if o.baseline is not None:
            self.targets.append(
                self.spawn_gateway(env, o.baseline, "baseline", "C0 gateway (baseline tree)")
            )
        gateway = self.spawn_gateway(env, ROOT, "gateway", "C Tollgate gateway")
        self.gateway_url = gateway.url
        self.gateway_log = self.root / "gateway.log"
        self.targets.append(gateway)
        if self.redis and not o.no_references:
            local = {**env, "RATE_LIMIT_BACKEND": "local"}
            self.targets.append(
                self.spawn_gateway(local, ROOT, "gateway_local", "C' gateway, local limiter")
            )

    def spawn_gateway(self, base_env: dict[str, str], tree: Path, key: str, label: str) -> Target:
        """``gateway serve`` of the source tree ``tree`` on free ports, ready to serve."""
        port, metrics_port = free_port(), free_port()
        env = dict(base_env)
        env.update(
            GATEWAY_PORT=str(port),
            GATEWAY_METRICS_PORT=str(metrics_port),
            # The gateway of that source tree, even when another one is installed.
            PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])),
        )
        log = self.root / f"{key}.log"
        argv = [sys.executable, "-m", "gateway", "serve"]
        # cwd too: ``python -m`` puts the working directory first on sys.path.
        self.procs.start(key, argv, log=log, env=env, cwd=tree)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        auth = {"Authorization": f"Bearer {self.tokens.cached}"}
        try:
            wait_http(
                f"http://127.0.0.1:{metrics_port}/healthz", deadline=deadline, procs=self.procs
            )
            wait_http(url, deadline=deadline, headers=auth, procs=self.procs)
        except RuntimeError:
            print(tail(log), file=sys.stderr)
            raise
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        return Target(key, label, url, auth, process=key, metrics_url=metrics)

    def setup(self) -> str:
        """What the gateway rows run with, for the report."""
        if self.tokens is None:
            return ""
        import fixture

        features = self.tokens.features
        parts = ["cached token"]
        if "scopes" in features:
            parts.append(f"with scopes {', '.join(fixture.SCOPES)}")
        if "allowed_ips" in features:
            parts.append(f"and allowed addresses {', '.join(fixture.ALLOWED_IPS)}")
        if "quota" in features:
            parts.append(f"in a project with the quota {fixture.QUOTA}")
        limiter = "the Redis limiter" if self.redis else "the local limiter (Redis not answering)"
        extra = "; C' the same with the local limiter" if self.redis else ""
        return (
            " ".join(parts) + f"; usage ledger and last-used flush on; C with {limiter}{extra}; "
            "metrics and the JSON access log on"
        )

    # ------------------------------------------------------------ measuring

    def run_wrk(
        self, target: Target, connections: int, seconds: float | None = None
    ) -> dict[str, Any]:
        self.procs.check()
        return wrk(
            self.opts.wrk,
            target.url,
            connections=connections,
            seconds=self.opts.seconds if seconds is None else seconds,
            headers=target.headers,
            cpu_of=self.procs.pids.get(target.process),
        )

    def measure(self, target: Target) -> dict[str, Any]:
        o = self.opts
        if o.warmup > 0:
            self.run_wrk(target, o.connections, o.warmup)
        with self.profiling(target):
            load = self.run_wrk(target, o.connections)
        single = self.run_wrk(target, 1)
        print(
            f"  {target.label:<24} {load['rps']:>9.0f} rps {load.get('cpu_us', 0):>6.1f} µs CPU/req"
            f"  c1 p50 {single['p50_us'] / 1000:.3f} ms"
            f"  p99 {single['p99_us'] / 1000:.3f} ms"
            + (f"  non-2xx {load['non2xx']}" if load["non2xx"] else ""),
            flush=True,
        )
        return {"load": load, "single": single}

    @contextmanager
    def profiling(self, target: Target) -> Iterator[None]:
        """With --profile, py-spy samples the gateway's processes during its load run."""
        out = self.opts.profile
        if out is None or target.key != self.opts.profile_run or self.profiled:
            yield
            return
        self.profiled = True
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            self.opts.py_spy or "py-spy",
            "record",
            "--pid",
            str(self.procs.pids["gateway"]),
            "--subprocesses",
            "--nonblocking",
            "--nolineno",
            "--format",
            "raw",
            "--duration",
            str(round(self.opts.seconds)),
            "--output",
            str(out),
        ]
        spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            try:
                spy.wait(self.opts.seconds + 20)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()

    def rejection(self, label: str, token: str, gateway: Target | None = None) -> dict[str, Any]:
        auth = {"Authorization": f"Bearer {token}"}
        url, process = (gateway.url, gateway.key) if gateway else (self.gateway_url, "gateway")
        if gateway:
            label = f"{label} ({gateway.key})"
        target = Target(label[:3] if not gateway else "", label, url, auth, process=process)
        self.run_wrk(target, self.opts.connections, self.opts.warmup or 1)
        with self.profiling(target):
            result = self.run_wrk(target, self.opts.connections)
        print(
            f"  {label:<24} {result['rps']:>9.0f} rps {result.get('cpu_us', 0):>6.1f} µs CPU/req"
            f"  (non-2xx {result['non2xx']}"
            f" of {result['requests']})",
            flush=True,
        )
        return result

    def new_token_load(self, connections: int, gateway: Target | None = None) -> dict[str, Any]:
        """Cached requests (wrk -c N) alone, then while fresh tokens arrive at 20/s."""
        gateway = gateway or self.targets[-1]
        base = self.run_wrk(gateway, connections)
        batch = [next(self.fresh) for _ in range(self.per_run)]
        loaded, firsts = self.with_first_uses(
            batch,
            lambda: self.run_wrk(gateway, connections),
            NEW_TOKENS_PER_SECOND,
            gateway.url,
        )
        print(
            f"  {gateway.key} cached c{connections:<3} p99 {base['p99_us'] / 1000:.3f} ms alone,"
            f" {loaded['p99_us'] / 1000:.3f} ms with {NEW_TOKENS_PER_SECOND} new tokens/s"
            f" (statuses {firsts['statuses']})",
            flush=True,
        )
        return {"base": base, "loaded": loaded, "first_uses": firsts}

    def with_first_uses(
        self,
        batch: list[str],
        during: Callable[[], dict[str, Any]],
        rate: float,
        url: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        path = self.root / "fresh.txt"
        path.write_text("\n".join(batch) + "\n")
        argv = [
            sys.executable,
            str(BENCH / "firstuse.py"),
            "--url",
            url or self.gateway_url,
            "--tokens",
            str(path),
            "--rate",
            str(rate),
            "--seconds",
            str(self.opts.seconds + 0.5),
        ]
        loader = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)  # let the loader reach its steady rate before wrk starts
            result = during()
            out, _ = loader.communicate(timeout=self.opts.seconds + 30)
        finally:
            if loader.poll() is None:
                loader.kill()
                loader.wait()
        return result, json.loads(out)

    def first_use_serial(self) -> dict[str, Any]:
        batch = [next(self.fresh) for _ in range(FIRST_USE_TOKENS)]
        _, firsts = self.with_first_uses(batch, lambda: {}, 0)
        lat = sorted(firsts["latencies_ms"])
        print(
            f"  first use of {len(lat)} fresh tokens: p50 {report.pct(lat, 50):.1f} ms"
            f"  p99 {report.pct(lat, 99):.1f} ms  statuses {firsts['statuses']}",
            flush=True,
        )
        return firsts

    def run(self) -> dict[str, Any]:
        rounds: list[dict[str, Any]] = []
        for number in range(1, self.opts.rounds + 1):
            print(f"round {number}/{self.opts.rounds}", flush=True)
            row: dict[str, Any] = {"direct": self.measure(self.direct)}
            # With --baseline, the two gateways swap places every round: whichever runs
            # second meets a warmer (or more tired) machine.
            swap = self.opts.baseline is not None and number % 2 == 0
            mains = ("baseline", "gateway", "gateway_local")
            order = [t for t in self.targets if t.key not in mains]
            gateways = [t for t in self.targets if t.key in ("baseline", "gateway")]
            local = [t for t in self.targets if t.key == "gateway_local"]
            for target in order + (gateways[::-1] if swap else gateways) + local:
                row[target.key] = self.measure(target)
            if self.gateway_url and not self.opts.proxy_only:
                for target in gateways[::-1] if swap else gateways:
                    suffix = "@baseline" if target.key == "baseline" else ""
                    other = target if suffix else None
                    row["401" + suffix] = self.rejection(
                        "401 wrong secret", self.tokens.wrong_secret, other
                    )
                    row["429" + suffix] = self.rejection(
                        "429 rate limited", self.tokens.limited, other
                    )
                if self.opts.new_tokens:
                    for target in gateways[::-1] if swap else gateways:
                        suffix = "@baseline" if target.key == "baseline" else ""
                        row["new_tokens" + suffix] = {
                            str(c): self.new_token_load(c, target) for c in NEW_TOKEN_CONCURRENCY
                        }
            rounds.append(row)
        result: dict[str, Any] = {"rounds": rounds}
        if self.gateway_url and not self.opts.proxy_only and self.opts.new_tokens:
            result["first_use"] = self.first_use_serial()
        return result


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers PING at ``url`` (host and port only)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = find_tools()
    if tools is None:
        return 2
    skip = "not requested" if args.no_gateway else gateway_available()
    opts = Options(
        rounds=args.rounds,
        seconds=args.seconds,
        warmup=args.warmup,
        connections=args.connections,
        workers=args.workers,
        gateway=skip is None,
        wrk=tools[0],
        nginx=tools[1],
        time_limit=args.time_limit,
        proxy_only=args.proxy_only,
        baseline=args.baseline.resolve() if args.baseline else None,
        no_references=args.no_references,
        profile_run="gateway" if args.profile_run == "proxy" else args.profile_run,
        new_tokens=not args.no_new_tokens,
        profile=args.output.with_name("profile.txt") if args.profile else None,
        py_spy=shutil.which("py-spy")
        or shutil.which("py-spy", path=str(Path(sys.executable).parent)),
        workloads=tuple(w for w in args.workloads.split(",") if w) if skip is None else (),
        only_workloads=args.only_workloads,
    )
    unknown = set(opts.workloads) - set(workloads.ALL)
    if unknown:
        print(f"bench: unknown workloads: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if opts.profile and not opts.py_spy:
        print("bench: --profile needs py-spy (pip install py-spy)", file=sys.stderr)
        return 2
    if skip:
        print(f"bench: skipping the gateway: {skip}", file=sys.stderr)
    # Thousands of connections (the many-connections workload): every process started
    # from here (nginx, the load generator, the gateway) inherits the raised limit.
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (hard := resource.getrlimit(resource.RLIMIT_NOFILE)[1], hard)
    )
    machine = report.machine_info(opts.nginx)
    started = time.monotonic()
    processes = Processes()
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as tmp:
        bench = Bench(opts, Path(tmp), processes)
        try:
            with time_limit(opts.time_limit):
                bench.start_upstream_and_proxies()
                if opts.gateway:
                    bench.start_gateway()
                results = {"rounds": []} if opts.only_workloads else bench.run()
                if opts.workloads:
                    results["workloads"] = workloads.Workloads(bench, opts.workloads).run()
        except (RuntimeError, Timeout, KeyboardInterrupt) as err:
            print(f"bench: aborted: {err or type(err).__name__}", file=sys.stderr)
            return 1
        finally:
            processes.close()
            for cleanup in reversed(bench.cleanups):
                cleanup()
    machine["elapsed_s"] = round(time.monotonic() - started)
    machine["gateway_setup"] = bench.setup()
    machine["load_after"] = report.loadavg()
    text = (
        report.render(results, machine, opts.workers, opts.connections, opts.seconds, skip)
        if results["rounds"]
        else report.header(machine)
    )
    if "workloads" in results:
        text += workloads_report.render(results["workloads"], opts.workers)
    if opts.profile and opts.profile.exists():
        text += report.profile_section(opts.profile)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    if args.readme:
        import readme_table

        table = readme_table.block(text, machine, opts.workers, opts.rounds)
        readme_table.update(ROOT / "README.md", table)
    args.output.with_suffix(".json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=1)
    )
    print()
    print(text)
    print(f"(written to {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
