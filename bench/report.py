"""Turns the benchmark's raw rounds into the Markdown report (medians and ratios)."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

TARGETS = [
    ("direct", "direct upstream (no proxy)"),
    ("nginx", "A nginx reverse proxy"),
    ("bare", "B bare aiohttp+uvloop proxy"),
    ("gateway", "C Tollgate gateway"),
    ("gateway_local", "C' gateway, local limiter"),
]
# Same-run targets of the proxied rows (issue 19).
BARE_TARGET = 1.25
NGINX_TARGET = 0.22


def pct(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _version(argv: list[str], pattern: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
    except OSError:
        return "?"
    match = re.search(pattern, done.stdout + done.stderr)
    return match[1] if match else "?"


def machine_info(nginx: str) -> dict[str, Any]:
    import aiohttp

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "nginx": _version([nginx, "-v"], r"nginx/(\S+)"),
        "wrk": _version(["wrk", "--version"], r"wrk (\S+)"),
        "load_before": loadavg(),
    }


def header(machine: dict[str, Any]) -> str:
    """The report's first lines alone (a run of the workloads only)."""
    m = machine
    return (
        "# Tollgate benchmark\n\n"
        f"{m['date']} · {m['nproc']} cores · {m['cpu']} · Linux {m['kernel']} · "
        f"Python {m['python']} · aiohttp {m['aiohttp']} · nginx {m['nginx']} · wrk {m['wrk']}\n"
        f"Load average before {m['load_before']}, after {m.get('load_after', '?')}; "
        f"run took {m.get('elapsed_s', '?')} s.\n"
    )


def ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def med(rounds: list[dict[str, Any]], get: Callable[[dict[str, Any]], float]) -> float:
    return median(get(r) for r in rounds)


def per_round(
    rounds: list[dict[str, Any]], get: Callable[[dict[str, Any]], float], fmt: str
) -> str:
    return ", ".join(format(get(r), fmt) for r in rounds)


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "**missed**"


def render(
    results: dict[str, Any],
    machine: dict[str, Any],
    workers: int,
    connections: int,
    seconds: float,
    skipped: str | None,
) -> str:
    rounds: list[dict[str, Any]] = results["rounds"]
    m = machine
    out = [
        "# Tollgate benchmark",
        "",
        f"{m['date']} · {m['nproc']} cores · {m['cpu']} · Linux {m['kernel']} · "
        f"Python {m['python']} · aiohttp {m['aiohttp']} · nginx {m['nginx']} · wrk {m['wrk']}",
        f"Load average before {m['load_before']}, after {m.get('load_after', '?')}; "
        f"run took {m.get('elapsed_s', '?')} s.",
        "",
        f"Each proxy runs {workers} worker processes; the upstream is one nginx worker answering "
        f"200 with a 29-byte body. wrk uses one thread: -c{connections} for {seconds:g} s after a "
        f"warm-up, then -c1 for {seconds:g} s. Figures are medians of {len(rounds)} interleaved "
        "rounds. Latencies in ms. CPU µs/req is the CPU time of all the target's processes "
        "divided by the requests served: unlike rps it hardly moves when other work shares "
        "the cores, so its ratios are given as a cross-check. Latency percentiles are those of "
        "the requests wrk measured, without wrk's coordinated-omission correction (which "
        "invents samples in proportion to each target's own speed; see bench/report.lua).",
        "",
    ]
    if skipped:
        out += [f"Gateway not measured: {skipped}.", ""]
    if m.get("gateway_setup"):
        out += [f"Gateway rows: {m['gateway_setup']}.", ""]
    out += _proxy_table(rounds, connections)
    corrected = sorted(
        {
            key
            for r in rounds
            for key, value in r.items()
            if any(run.get("corrected") for run in _runs(value))
        }
    )
    if corrected:
        out += [
            "Warning: wrk's histogram was too large to undo its coordinated-omission "
            f"correction in some runs of {', '.join(corrected)}: their percentiles are wrk's.",
            "",
        ]
    if "nginx" in rounds[0]:
        out += _ratios(rounds)
    if "new_tokens" in rounds[0]:
        out += _new_tokens(results, rounds)
    if "401" in rounds[0]:
        out += _rejections(rounds)
    if "baseline" in rounds[0]:
        out += _baseline(rounds)
    return "\n".join(out) + "\n"


def _runs(value: Any) -> list[dict[str, Any]]:
    """Every wrk result nested in one round's entry."""
    if isinstance(value, dict):
        if "requests" in value and "duration_us" in value:
            return [value]
        return [run for part in value.values() for run in _runs(part)]
    return []


def _proxy_table(rounds: list[dict[str, Any]], c: int) -> list[str]:
    out = [
        "## Proxying a 200",
        "",
        f"| target | rps (c{c}) | CPU µs/req (c{c}) | p50 (c{c}) | p99 (c{c}) | p50 (c1) "
        "| p99 (c1) | added p50 (c1) | added p99 (c1) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in TARGETS:
        if key not in rounds[0]:
            continue

        def get(r: dict[str, Any], part: str, field: str, key: str = key) -> float:
            value: float = r[key][part][field]
            return value

        if key == "direct":
            added = "—", "—"
        else:
            added = tuple(
                ms(
                    med(
                        rounds,
                        lambda r, f=f, key=key: r[key]["single"][f] - r["direct"]["single"][f],
                    )
                )
                for f in ("p50_us", "p99_us")
            )
        out.append(
            f"| {label} | {med(rounds, lambda r: get(r, 'load', 'rps')):,.0f} "
            f"| {med(rounds, lambda r: get(r, 'load', 'cpu_us')):.0f} "
            f"| {ms(med(rounds, lambda r: get(r, 'load', 'p50_us')))} "
            f"| {ms(med(rounds, lambda r: get(r, 'load', 'p99_us')))} "
            f"| {ms(med(rounds, lambda r: get(r, 'single', 'p50_us')))} "
            f"| {ms(med(rounds, lambda r: get(r, 'single', 'p99_us')))} "
            f"| {added[0]} | {added[1]} |"
        )
    errors = [
        f"{key} round {i + 1}: {r[key]['load']['non2xx']} non-2xx"
        for i, r in enumerate(rounds)
        for key, _ in TARGETS
        if key in r and r[key]["load"]["non2xx"]
    ]
    out += ["", *(f"Warning: {e}" for e in errors), ""] if errors else [""]
    return out


def _ratio_row(
    rounds: list[dict[str, Any]], name: str, num: str, den: str, target: float | None
) -> str:
    def get(r: dict[str, Any]) -> float:
        value: float = r[num]["load"]["rps"] / r[den]["load"]["rps"]
        return value

    value = med(rounds, get)
    goal = f"≥ {target:.2f} ({verdict(value, target, True)})" if target else "reference"
    return f"| {name} | {per_round(rounds, get, '.3f')} | **{value:.3f}** | {goal} |"


def _cpu_row(rounds: list[dict[str, Any]], name: str, num: str, den: str) -> str:
    """Throughput ratio implied by CPU per request (less sensitive to other load)."""

    def get(r: dict[str, Any]) -> float:
        value: float = r[den]["load"]["cpu_us"] / r[num]["load"]["cpu_us"]
        return value

    return f"| {name} | {per_round(rounds, get, '.3f')} | {med(rounds, get):.3f} | reference |"


def _ratios(rounds: list[dict[str, Any]]) -> list[str]:
    out = [
        "## Ratios and targets",
        "",
        "| measure | per round | median | target |",
        "|---|---|---:|---|",
    ]
    has_gateway = "gateway" in rounds[0]
    if has_gateway:
        out.append(_ratio_row(rounds, "gateway / bare rps", "gateway", "bare", BARE_TARGET))
        out.append(_ratio_row(rounds, "gateway / nginx rps", "gateway", "nginx", NGINX_TARGET))
    if "gateway_local" in rounds[0]:
        for den, goal in (("bare", BARE_TARGET), ("nginx", NGINX_TARGET)):
            out.append(
                _ratio_row(
                    rounds, f"gateway (local limiter) / {den} rps", "gateway_local", den, goal
                )
            )
    out.append(_ratio_row(rounds, "bare / nginx rps", "bare", "nginx", None))
    if has_gateway:
        out.append(_cpu_row(rounds, "gateway / bare, by CPU per request", "gateway", "bare"))
        out.append(_cpu_row(rounds, "gateway / nginx, by CPU per request", "gateway", "nginx"))
    out.append(_cpu_row(rounds, "bare / nginx, by CPU per request", "bare", "nginx"))
    if has_gateway:
        for field, limit in (("p50_us", 0.35), ("p99_us", 1.0)):

            def added(r: dict[str, Any], f: str = field) -> float:
                value: float = (r["gateway"]["single"][f] - r["direct"]["single"][f]) / 1000
                return value

            value = med(rounds, added)
            out.append(
                f"| gateway added latency, c1 {field[:3]} (ms) | {per_round(rounds, added, '.3f')} "
                f"| **{value:.3f}** | ≤ {limit} ({verdict(value, limit, False)}) |"
            )
    return [*out, ""]


def _new_tokens(results: dict[str, Any], rounds: list[dict[str, Any]]) -> list[str]:
    first = sorted(results["first_use"]["latencies_ms"])
    cached = med(rounds, lambda r: r["gateway"]["single"]["p50_us"]) / 1000
    out = [
        "## New tokens (the argon2 miss path)",
        "",
        f"First use of {len(first)} fresh tokens, one after the other: "
        f"p50 {pct(first, 50):.1f} ms, p99 {pct(first, 99):.1f} ms, max {first[-1]:.1f} ms "
        f"(statuses {results['first_use']['statuses']}); a cached token: p50 {cached:.2f} ms.",
        "",
        "Cached requests while a separate client sends the first use of a new token 20 times a "
        "second (open loop):",
        "",
        "| cached load | p99 alone | p99 with new tokens | rise per round | median rise "
        "| target | first uses p50 / p99 | first-use statuses |",
        "|---|---:|---:|---|---:|---|---|---|",
    ]
    corrected: list[str] = []
    for conc in rounds[0]["new_tokens"]:

        def part(r: dict[str, Any], which: str, c: str = conc, f: str = "p99_us") -> float:
            run = r["new_tokens"][c][which]
            value: float = run.get(f, run["p99_us"]) / 1000
            return value

        def rise(r: dict[str, Any]) -> float:
            return part(r, "loaded") - part(r, "base")

        def rise_corrected(r: dict[str, Any]) -> float:
            f = "p99_corrected_us"
            return part(r, "loaded", f=f) - part(r, "base", f=f)

        corrected.append(f"{med(rounds, rise_corrected):+.2f} ms at -c{conc}")

        value = med(rounds, rise)
        lat = sorted(x for r in rounds for x in r["new_tokens"][conc]["first_uses"]["latencies_ms"])
        statuses: dict[str, int] = {}
        for r in rounds:
            for k, v in r["new_tokens"][conc]["first_uses"]["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        out.append(
            f"| wrk -c{conc} | {med(rounds, lambda r: part(r, 'base')):.2f} "
            f"| {med(rounds, lambda r: part(r, 'loaded')):.2f} "
            f"| {per_round(rounds, rise, '+.2f')} | **{value:+.2f}** "
            f"| ≤ 2 ms ({verdict(value, 2.0, False)}) "
            f"| {pct(lat, 50):.1f} / {pct(lat, 99):.1f} | {statuses} |"
        )
    out += [
        "",
        "With wrk's coordinated-omission correction (what wrk itself prints) the median rises "
        f"read {' and '.join(corrected)}.",
    ]
    return [*out, ""]


def _rejections(rounds: list[dict[str, Any]]) -> list[str]:
    out = [
        "## Rejections",
        "",
        "| answer | rps | CPU µs/req | non-2xx / requests (last round) "
        "| vs proxied rps (per round) | median | target | vs proxied, by CPU per request |",
        "|---|---:|---:|---|---|---:|---|---:|",
    ]
    for key, label in (("401", "401 (real token id, wrong secret)"), ("429", "429 (rate limited)")):

        def ratio(r: dict[str, Any], k: str = key) -> float:
            value: float = r[k]["rps"] / r["gateway"]["load"]["rps"]
            return value

        def by_cpu(r: dict[str, Any], k: str = key) -> float:
            value: float = r["gateway"]["load"]["cpu_us"] / r[k]["cpu_us"]
            return value

        value = med(rounds, ratio)
        last = rounds[-1][key]
        out.append(
            f"| {label} | {med(rounds, lambda r, k=key: r[k]['rps']):,.0f} "
            f"| {med(rounds, lambda r, k=key: r[k]['cpu_us']):.0f} "
            f"| {last['non2xx']} / {last['requests']} | {per_round(rounds, ratio, '.2f')} "
            f"| **{value:.2f}×** | ≥ 2× ({verdict(value, 2.0, True)}) "
            f"| {med(rounds, by_cpu):.2f}× |"
        )
    return [*out, ""]


def profile_section(path: Path, top: int = 30) -> str:
    """Top functions by self time from py-spy's collapsed stacks (all gateway processes)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return ""
    out = [
        "## Profile: the gateway under load (py-spy, all workers)",
        "",
        f"{total} samples of busy threads (py-spy leaves out time waiting in epoll).",
        "",
        "| self % | total % | function (file) |",
        "|---:|---:|---|",
    ]
    for frame, count in own.most_common(top):
        out.append(
            f"| {100 * count / total:.1f} | {100 * inclusive[frame] / total:.1f} | `{frame}` |"
        )
    return "\n".join([*out, ""]) + "\n"


def _baseline(rounds: list[dict[str, Any]]) -> list[str]:
    """This tree's gateway against the --baseline tree's, run for run (after / before)."""
    out = [
        "## This tree against the baseline tree",
        "",
        "| run | rps after / before (per round) | median | CPU µs/req before → after "
        "| CPU before / after (per round) | median |",
        "|---|---|---:|---|---|---:|",
    ]
    runs = [("proxied (c50)", "gateway", "baseline")]
    if "401@baseline" in rounds[0]:
        runs += [("401", "401", "401@baseline"), ("429", "429", "429@baseline")]
    rises: list[str] = []
    for conc in rounds[0].get("new_tokens@baseline", {}):

        def rise(r: dict[str, Any], key: str, c: str = conc) -> float:
            runs_ = r[key][c]
            value: float = (runs_["loaded"]["p99_us"] - runs_["base"]["p99_us"]) / 1000
            return value

        rises.append(
            f"cached p99 rise with new tokens at -c{conc} (ms): before "
            f"{per_round(rounds, lambda r: rise(r, 'new_tokens@baseline'), '+.2f')} "
            f"(median {med(rounds, lambda r: rise(r, 'new_tokens@baseline')):+.2f}), after "
            f"{per_round(rounds, lambda r: rise(r, 'new_tokens'), '+.2f')} "
            f"(median {med(rounds, lambda r: rise(r, 'new_tokens')):+.2f})"
        )
    for label, now, before in runs:

        def run(r: dict[str, Any], key: str) -> dict[str, Any]:
            value: dict[str, Any] = r[key]["load"] if "load" in r[key] else r[key]
            return value

        def rps(r: dict[str, Any], a: str = now, b: str = before) -> float:
            value: float = run(r, a)["rps"] / run(r, b)["rps"]
            return value

        def cpu(r: dict[str, Any], a: str = now, b: str = before) -> float:
            value: float = run(r, b)["cpu_us"] / run(r, a)["cpu_us"]
            return value

        out.append(
            f"| {label} | {per_round(rounds, rps, '.3f')} | **{med(rounds, rps):.3f}** "
            f"| {med(rounds, lambda r, b=before: run(r, b)['cpu_us']):.0f} → "
            f"{med(rounds, lambda r, a=now: run(r, a)['cpu_us']):.0f} "
            f"| {per_round(rounds, cpu, '.3f')} | **{med(rounds, cpu):.3f}** |"
        )
    if rises:
        out += ["", *(f"- {line}" for line in rises)]
    return [*out, ""]
