"""Processes the benchmark starts: nginx (upstream and proxy), the bare proxy, the
gateway, wrk. Every process is registered with a ``Processes`` stack and stopped
when it closes, whatever happened."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
UPSTREAM_BODY = '{"ok":true,"from":"upstream"}'


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of ``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and its descendants, summed (VmRSS from /proc: shared
    pages count once per process, so this errs on the high side)."""
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Processes:
    """Started processes, stopped in reverse order by ``close()``."""

    def __init__(self) -> None:
        self._started: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.pids: dict[str, int] = {}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own session, output to ``log``."""
        out: IO[bytes] = open(log, "ab")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # our Ctrl-C reaches them through close(), in order
        )
        out.close()
        self._started.append((name, proc))
        self.pids[name] = proc.pid
        return proc

    def check(self) -> None:
        for name, proc in self._started:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode}")

    def stop(self, name: str) -> None:
        """Stop the process started as ``name`` now (the others keep running)."""
        for i, (started, proc) in enumerate(self._started):
            if started == name:
                del self._started[i]
                self.pids.pop(name, None)
                stop(proc)
                return

    def close(self) -> None:
        while self._started:
            _name, proc = self._started.pop()
            stop(proc)


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL to the process group if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def wait_http(
    url: str,
    *,
    deadline: float,
    headers: Mapping[str, str] | None = None,
    procs: Processes | None = None,
    want: int = 200,
) -> None:
    """Poll ``url`` until it answers ``want``; RuntimeError past ``deadline`` (monotonic)."""
    last = "no answer"
    while time.monotonic() < deadline:
        if procs is not None:
            procs.check()
        try:
            status = http_status(url, headers)
        except OSError as err:
            last = str(err)
        else:
            if status == want:
                return
            last = f"status {status}"
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready: {last}")


def http_status(url: str, headers: Mapping[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            response.read()
            status: int = response.status
            return status
    except urllib.error.HTTPError as err:
        err.read()
        return err.code


# ------------------------------------------------------------------ nginx


def nginx_conf(
    prefix: Path,
    *,
    port: int,
    workers: int,
    upstream_port: int | None,
    proxy_extra: str = "",
    worker_connections: int = 4096,
) -> str:
    """A private nginx config: an upstream answering 200, or a keep-alive reverse proxy
    (``proxy_extra``: more directives for its location)."""
    if upstream_port is None:
        location = f"default_type application/json;\n            return 200 '{UPSTREAM_BODY}';"
        upstream_block = ""
    else:
        location = (
            "proxy_pass http://backend;\n"
            "            proxy_http_version 1.1;\n"
            '            proxy_set_header Connection "";\n'
            f"            {proxy_extra}"
        )
        upstream_block = (
            f"upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 128;"
            " keepalive_requests 1000000; }"
        )
    user = "user root;" if os.geteuid() == 0 else ""
    temp = "\n    ".join(
        f"{kind}_temp_path {prefix}/tmp_{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
{user}
worker_processes {workers};
worker_rlimit_nofile {2 * worker_connections + 64};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    {temp}
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    {upstream_block}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            {location}
        }}
    }}
}}
"""


def start_nginx(
    procs: Processes,
    name: str,
    root: Path,
    *,
    nginx: str,
    port: int,
    workers: int,
    upstream_port: int | None = None,
    proxy_extra: str = "",
    worker_connections: int = 4096,
) -> None:
    prefix = root / name
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(
        nginx_conf(
            prefix,
            port=port,
            workers=workers,
            upstream_port=upstream_port,
            proxy_extra=proxy_extra,
            worker_connections=worker_connections,
        )
    )
    argv = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    procs.start(name, argv, log=prefix / "stdout.log")


# ------------------------------------------------------------------ wrk


def wrk_argv(
    wrk_bin: str,
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: Mapping[str, str] | None = None,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    timeout: float = 2.0,
) -> list[str]:
    """wrk's command line: one thread, ``script`` (default: report.lua, which any other
    script must load too, for the JSON line) with ``script_args``."""
    argv = [
        wrk_bin,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        f"{timeout:g}s",
        "-s",
        str(script or BENCH / "report.lua"),
    ]
    for key, value in (headers or {}).items():
        argv += ["-H", f"{key}: {value}"]
    argv.append(url)
    if script_args:
        argv += ["--", *script_args]
    return argv


def wrk_result(stdout: str, stderr: str, returncode: int, connections: int) -> dict[str, Any]:
    """The JSON line report.lua printed, with ``rps`` and the measured percentiles."""
    for line in stdout.splitlines():
        if line.startswith("JSON "):
            result: dict[str, Any] = json.loads(line[5:])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            measured_percentiles(result, connections)
            return result
    raise RuntimeError(f"wrk failed ({returncode}): {stderr.strip() or stdout}")


def wrk(
    wrk_bin: str,
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: Mapping[str, str] | None = None,
    cpu_of: int | None = None,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    timeout: float = 2.0,
) -> dict[str, Any]:
    """One wrk run (one thread); its summary with ``rps`` added, and with ``cpu_us`` (CPU
    time per request of the process tree ``cpu_of``: unlike rps, barely moved by other
    load on the machine)."""
    argv = wrk_argv(
        wrk_bin,
        url,
        connections=connections,
        seconds=seconds,
        headers=headers,
        script=script,
        script_args=script_args,
        timeout=timeout,
    )
    cpu_before = tree_cpu_seconds(cpu_of) if cpu_of else 0.0
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + timeout + 30, check=False
    )
    cpu = tree_cpu_seconds(cpu_of) - cpu_before if cpu_of else 0.0
    result = wrk_result(done.stdout, done.stderr, done.returncode, connections)
    if cpu_of:
        result["cpu_us"] = cpu * 1e6 / max(1, result["requests"])
    return result


def measured_percentiles(result: dict[str, Any], connections: int) -> None:
    """Replace wrk's p50/p99 by those of the latencies it measured (see report.lua).

    wrk's corrected figures stay as ``p50_corrected_us``/``p99_corrected_us``. Without a
    histogram (wrk skipped a huge one) the corrected figures remain, flagged
    ``"corrected": true``.
    """
    result["p50_corrected_us"] = result["p50_us"]
    result["p99_corrected_us"] = result["p99_us"]
    pairs = result.pop("hist", "").split()
    per_connection = result["requests"] // connections
    result["corrected"] = per_connection > 0 and not pairs
    if not pairs or per_connection == 0:  # nothing to undo, or no histogram to undo it on
        return
    histogram = [(int(v), int(c)) for v, c in (pair.split(":") for pair in pairs)]
    measured = uncorrect(histogram, result["duration_us"] // per_connection)
    result["p50_us"] = histogram_percentile(measured, 50)
    result["p99_us"] = histogram_percentile(measured, 99)
    result["corrected"] = False


def uncorrect(histogram: list[tuple[int, int]], interval: int) -> list[tuple[int, int]]:
    """Undo wrk's ``stats_correct(latency, interval)`` on a (value, count) histogram.

    wrk adds, for every count at n >= 2 * interval, the same count at n - k * interval for
    each k >= 1 while that stays above ``interval``. Walking down from the largest value,
    the counts added at v are the measured counts above v in v's residue class modulo
    ``interval``, all already known.
    """
    if interval <= 0:
        return sorted(histogram)
    above: dict[int, int] = {}  # residue -> measured count at values >= 2 * interval
    measured: list[tuple[int, int]] = []
    for value, count in sorted(histogram, reverse=True):
        residue = value % interval
        own = count - above.get(residue, 0) if value > interval else count
        if own > 0:
            measured.append((value, own))
        if value >= 2 * interval:
            above[residue] = above.get(residue, 0) + max(own, 0)
    measured.reverse()
    return measured


def histogram_percentile(histogram: list[tuple[int, int]], p: float) -> int:
    """wrk's percentile rule on an ascending (value, count) histogram."""
    total = sum(count for _, count in histogram)
    rank = math.floor(p / 100 * total + 1.0)  # C's round(x + 0.5), x >= 0
    seen = 0
    for value, count in histogram:
        seen += count
        if seen >= rank:
            return value
    return 0
