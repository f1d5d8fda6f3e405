"""The workloads beyond small answers from a fast upstream, each against a baseline
measured in the same run, interleaved round by round:

* ``slow``: an upstream that answers after 50 ms (bench/pyupstream.py), 200 wrk
  connections (so at most 4,000 requests a second are offered, within the gateway's
  capacity): the gateway against nginx proxying the same upstream, and its p99
  against the upstream's own (wrk straight to it);
* ``many``: 5,000 keep-alive connections, each sending a request every 2 s
  (bench/manyconns.py, its own process): every request answered, p99, and the
  resident memory of all the target's processes, the gateway against nginx;
* ``bodies``: 10 MiB uploads and downloads (bench/upload.lua; GET /big of
  pyupstream.py): MB/s of the gateway against nginx (streaming both ways, like the
  gateway), and the gateway's memory before, during and after;
* ``flood``: well-formed tokens with unknown ids, every one different, from a wrk
  at its highest rate (bench/flood.lua), while a second wrk sends the cached token:
  the cached p99 against its p99 alone in the same round, argon2 runs counted from
  the gateway's metrics, memory before and after.

Each workload starts what it needs (its own upstream, nginx and gateway on free ports)
and stops it before the next one starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any

import procs
from procs import free_port, tree_rss_bytes, wait_http

if TYPE_CHECKING:
    from run import Bench, Target

BENCH = Path(__file__).resolve().parent
ALL = ("slow", "many", "bodies", "flood", "ledger", "quota")

SLOW_DELAY = 0.05  # seconds the slow upstream takes per answer
SLOW_CONNECTIONS = 200  # at 50 ms an answer: at most 4,000 requests a second offered
MANY_CONNECTIONS = 5000
MANY_INTERVAL = 2.0  # seconds between the requests of one connection
MANY_OPEN_TIMEOUT = 60.0  # seconds to open them all (the report says if some did not open)
BIG = 10 * 1024 * 1024  # bytes of each upload and download
BODY_CONNECTIONS = 4
FLOOD_CONNECTIONS = 50  # the flood's wrk: as fast as the answers come
CACHED_CONNECTIONS = 10  # the cached token's wrk, alone and during the flood
FLOOD_TOKENS_PER_ROUND = 150_000
MiB = 1024 * 1024

# nginx streaming both ways, as the gateway does (its default buffers whole bodies,
# spilling to temporary files past a few KiB), with 64 KiB buffers.
NGINX_STREAMING = (
    "client_max_body_size 0; proxy_request_buffering off; proxy_buffering off; "
    "proxy_buffer_size 64k; proxy_buffers 8 64k; client_body_buffer_size 64k;"
)


class Workloads:
    def __init__(self, bench: Bench, which: tuple[str, ...]) -> None:
        self.bench = bench
        self.opts = bench.opts
        self.procs = bench.procs
        self.root = bench.root
        self.which = which

    def run(self) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for name in self.which:
            print(f"workload {name}", flush=True)
            started = time.monotonic()
            try:
                results[name] = getattr(self, name)()
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as err:
                # One workload failing (a process died, a run timed out) must not lose
                # the others' figures: the report says what happened.
                print(f"  workload {name} failed: {err}", flush=True)
                results[name] = {"error": f"{type(err).__name__}: {err}"}
            results[name]["elapsed_s"] = round(time.monotonic() - started)
            results[name]["load_after"] = _loadavg()
        return results

    # ------------------------------------------------------------ parts

    @contextmanager
    def started(self, name: str, argv: list[str], url: str) -> Iterator[None]:
        self.procs.start(name, argv, log=self.root / f"{name}.log")
        try:
            wait_http(url, deadline=time.monotonic() + 30, procs=self.procs)
            yield
        finally:
            self.procs.stop(name)

    def pyupstream(self, name: str, port: int, delay: float) -> list[str]:
        return [
            sys.executable,
            str(BENCH / "pyupstream.py"),
            "--port",
            str(port),
            "--delay",
            str(delay),
            "--big",
            str(BIG),
        ]

    @contextmanager
    def nginx_proxy(
        self, name: str, upstream_port: int, extra: str = "", worker_connections: int = 4096
    ) -> Iterator[Target]:
        from run import Target

        port = free_port()
        procs.start_nginx(
            self.procs,
            name,
            self.root,
            nginx=self.opts.nginx,
            port=port,
            workers=self.opts.workers,
            upstream_port=upstream_port,
            proxy_extra=extra,
            worker_connections=worker_connections,
        )
        target = Target(name, "nginx proxy", f"http://127.0.0.1:{port}/", process=name)
        try:
            wait_http(target.url, deadline=time.monotonic() + 30, procs=self.procs)
            yield target
        finally:
            self.procs.stop(name)

    @contextmanager
    def gateway(self, name: str, upstream_port: int) -> Iterator[Target]:
        env = dict(self.bench.gateway_env)
        env["UPSTREAM_URL"] = f"http://127.0.0.1:{upstream_port}"
        target = self.bench.spawn_gateway(env, self.bench.tree, name, "gateway")
        try:
            yield target
        finally:
            self.procs.stop(name)

    def wrk(self, target: Target, connections: int, **kw: Any) -> dict[str, Any]:
        self.procs.check()
        return procs.wrk(
            self.opts.wrk,
            target.url,
            connections=connections,
            seconds=kw.pop("seconds", self.opts.seconds),
            headers=target.headers,
            cpu_of=self.procs.pids.get(target.process),
            **kw,
        )

    def warm(self, target: Target, connections: int, **kw: Any) -> None:
        if self.opts.warmup > 0:
            self.wrk(target, connections, seconds=self.opts.warmup, **kw)

    # ------------------------------------------------------------ usage (bench/usage_bench.py)

    def ledger(self) -> dict[str, Any]:
        import usage_bench

        return usage_bench.ledger(self)

    def quota(self) -> dict[str, Any]:
        import usage_bench

        return usage_bench.quota(self)

    # ------------------------------------------------------------ slow upstream

    def slow(self) -> dict[str, Any]:
        from run import Target

        port = free_port()
        direct = Target("direct", "slow upstream", f"http://127.0.0.1:{port}/", process="slow")
        rounds: list[dict[str, Any]] = []
        with (
            self.started("slow", self.pyupstream("slow", port, SLOW_DELAY), direct.url),
            self.nginx_proxy("nginx-slow", port) as nginx,
            self.gateway("gateway-slow", port) as gateway,
        ):
            for number in range(self.opts.rounds):
                row = {}
                for key, target in (("direct", direct), ("nginx", nginx), ("gateway", gateway)):
                    self.warm(target, SLOW_CONNECTIONS)
                    row[key] = run = self.wrk(target, SLOW_CONNECTIONS)
                    _print(f"slow r{number + 1} {key}", run)
                rounds.append(row)
        return {"rounds": rounds}

    # ------------------------------------------------------------ many connections

    def many(self) -> dict[str, Any]:
        upstream = self.bench.upstream_port
        rounds: list[dict[str, Any]] = []
        with (
            self.nginx_proxy("nginx-many", upstream, worker_connections=8192) as nginx,
            self.gateway("gateway-many", upstream) as gateway,
        ):
            for number in range(max(1, self.opts.rounds - 1)):
                row = {}
                for key, target in (("nginx", nginx), ("gateway", gateway)):
                    row[key] = run = self.many_run(target)
                    print(
                        f"  many r{number + 1} {key:<8} answered {run['answered']}/{run['sent']}"
                        f" p50 {run['p50_ms']:.2f} p99 {run['p99_ms']:.2f} max {run['max_ms']:.1f}"
                        f" ms, RSS {run['rss_idle'] / MiB:.0f} -> {run['rss_max'] / MiB:.0f}"
                        f" -> {run['rss_after'] / MiB:.0f} MiB, lost {run['lost']}",
                        flush=True,
                    )
                rounds.append(row)
        return {"rounds": rounds, "connections": MANY_CONNECTIONS, "interval": MANY_INTERVAL}

    def many_run(self, target: Target) -> dict[str, Any]:
        self.procs.check()
        port = target.url.rsplit(":", 1)[1].strip("/")
        argv = [
            sys.executable,
            str(BENCH / "manyconns.py"),
            "--port",
            port,
            "--connections",
            str(MANY_CONNECTIONS),
            "--interval",
            str(MANY_INTERVAL),
            "--seconds",
            str(window := max(6.0, 2 * self.opts.seconds)),
            "--open-timeout",
            str(MANY_OPEN_TIMEOUT),
        ]
        for name, value in target.headers.items():
            argv += ["--header", f"{name}: {value}"]
        pid = self.procs.pids[target.process]
        idle = tree_rss_bytes(pid)
        with _sampling(lambda: tree_rss_bytes(pid)) as samples:
            cpu = procs.tree_cpu_seconds(pid)
            limit = MANY_OPEN_TIMEOUT + MANY_INTERVAL + window + 60
            done = subprocess.run(argv, capture_output=True, text=True, timeout=limit, check=False)
            cpu = procs.tree_cpu_seconds(pid) - cpu
        if done.returncode != 0:
            raise RuntimeError(f"manyconns failed: {done.stderr.strip()[-500:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["rss_idle"] = idle
        result["rss_max"] = max(samples, default=idle)
        # Connections closed: the memory kept (reused by the next ones, not leaked).
        result["rss_after"] = tree_rss_bytes(pid)
        result["cpu_s"] = round(cpu, 2)
        return result

    # ------------------------------------------------------------ large bodies

    def bodies(self) -> dict[str, Any]:
        from run import Target

        port = free_port()
        direct = Target("direct", "upstream", f"http://127.0.0.1:{port}/", process="bodies")
        rounds: list[dict[str, Any]] = []
        upload = {"script": BENCH / "upload.lua", "script_args": [str(BIG)], "timeout": 10.0}
        with (
            self.started("bodies", self.pyupstream("bodies", port, 0), direct.url),
            self.nginx_proxy("nginx-bodies", port, NGINX_STREAMING) as nginx,
            self.gateway("gateway-bodies", port) as gateway,
        ):
            rss_start = tree_rss_bytes(self.procs.pids[gateway.process])
            for number in range(self.opts.rounds):
                row: dict[str, Any] = {}
                for key, target in (("direct", direct), ("nginx", nginx), ("gateway", gateway)):
                    pid = self.procs.pids[target.process]
                    for way, url, kw in (
                        ("upload", target.url + "upload", upload),
                        ("download", target.url + "big", {"timeout": 10.0}),
                    ):
                        t = _at(target, url)
                        self.warm(t, BODY_CONNECTIONS, **kw)
                        with _sampling(lambda pid=pid: tree_rss_bytes(pid)) as samples:
                            run = self.wrk(t, BODY_CONNECTIONS, **kw)
                        run["mb_s"] = run["requests"] * BIG / MiB / (run["duration_us"] / 1e6)
                        run["rss_max"] = max(samples, default=0)
                        run["rss_after"] = tree_rss_bytes(pid)
                        row[f"{key} {way}"] = run
                        print(
                            f"  bodies r{number + 1} {key:<8} {way:<8} {run['mb_s']:8.0f} MiB/s"
                            f"  RSS max {run['rss_max'] / MiB:.0f} MiB"
                            f" after {run['rss_after'] / MiB:.0f} MiB"
                            + (f"  non-2xx {run['non2xx']}" if run["non2xx"] else ""),
                            flush=True,
                        )
                rounds.append(row)
        return {"rounds": rounds, "rss_start": rss_start, "size": BIG}

    # ------------------------------------------------------------ flood of unknown ids

    def flood(self) -> dict[str, Any]:
        from fixture import unknown_tokens

        gateway = next(t for t in self.bench.targets if t.key == "gateway")
        pid = self.procs.pids[gateway.process]
        rounds: list[dict[str, Any]] = []
        rss_start = tree_rss_bytes(pid)
        for number in range(self.opts.rounds):
            path = self.root / f"unknown-{number}.txt"
            path.write_text(
                "\n".join(unknown_tokens(FLOOD_TOKENS_PER_ROUND, self.bench.token_prefix)) + "\n"
            )
            alone = self.wrk(gateway, CACHED_CONNECTIONS)
            before = _scrape(gateway.metrics_url)
            argv = procs.wrk_argv(
                self.opts.wrk,
                gateway.url,
                connections=FLOOD_CONNECTIONS,
                seconds=self.opts.seconds + 1,
                script=BENCH / "flood.lua",
                script_args=[str(path)],
            )
            flooding = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            try:
                time.sleep(0.5)  # the flood at full rate before the cached run starts
                with _sampling(lambda: tree_rss_bytes(pid)) as samples:
                    during = self.wrk(gateway, CACHED_CONNECTIONS)
                    out, err = flooding.communicate(timeout=self.opts.seconds + 30)
            finally:
                if flooding.poll() is None:
                    flooding.kill()
                    flooding.wait()
            flood_run = procs.wrk_result(out, err, flooding.returncode, FLOOD_CONNECTIONS)
            time.sleep(1.2)  # the workers' metric snapshots are up to a second old
            after = _scrape(gateway.metrics_url)
            row = {
                "alone": alone,
                "during": during,
                "flood": flood_run,
                "tokens": FLOOD_TOKENS_PER_ROUND,
                "argon2_runs": _delta(before, after, "gateway_token_verifications_total"),
                "misses": _delta(before, after, 'gateway_token_cache_total{result="miss"}'),
                "rss_max": max(samples, default=0),
                "rss_after": tree_rss_bytes(pid),
            }
            rounds.append(row)
            print(
                f"  flood r{number + 1}: cached c{CACHED_CONNECTIONS} p99 "
                f"{alone['p99_us'] / 1000:.2f} ms alone, {during['p99_us'] / 1000:.2f} ms during"
                f" {flood_run['rps']:.0f} rps of unknown tokens ({flood_run['requests']} sent,"
                f" non-2xx {flood_run['non2xx']}); argon2 runs {row['argon2_runs']:.0f},"
                f" misses {row['misses']:.0f}; RSS max {row['rss_max'] / MiB:.0f} MiB",
                flush=True,
            )
        return {"rounds": rounds, "rss_start": rss_start}


# ------------------------------------------------------------------ helpers


def _at(target: Target, url: str) -> Target:
    from run import Target

    return Target(target.key, target.label, url, dict(target.headers), target.process)


def _print(label: str, run: dict[str, Any]) -> None:
    print(
        f"  {label:<28} {run['rps']:>8.0f} rps  p50 {run['p50_us'] / 1000:.2f}"
        f"  p99 {run['p99_us'] / 1000:.2f} ms  CPU {run.get('cpu_us', 0):.0f} µs/req"
        + (f"  non-2xx {run['non2xx']}" if run["non2xx"] else ""),
        flush=True,
    )


@contextmanager
def _sampling(read: Callable[[], int], every: float = 0.2) -> Iterator[list[int]]:
    """Call ``read`` every ``every`` seconds in a thread while inside; the values."""
    samples: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            samples.append(read())

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def _scrape(metrics_url: str) -> dict[str, float]:
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    """The increase of ``name`` (all its label sets when given without labels)."""

    def total(values: dict[str, float]) -> float:
        if "{" in name:
            return values.get(name, 0.0)
        return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))

    return total(after) - total(before)


def _loadavg() -> str:
    import os

    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def med(values: list[float]) -> float:
    return median(values) if values else float("nan")
