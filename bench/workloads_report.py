"""The workloads' sections of the Markdown report (bench/workloads.py's results): each
figure next to its baseline from the same run, per round and as the median of the
rounds, with its target."""

from __future__ import annotations

from collections.abc import Callable
from statistics import median
from typing import Any

MiB = 1024 * 1024
Round = dict[str, Any]


def render(results: dict[str, Any], workers: int) -> str:
    out: list[str] = []
    for name, part in (
        ("slow", _slow),
        ("many", _many),
        ("bodies", _bodies),
        ("flood", _flood),
    ):
        if name in results and "error" in results[name]:
            out += [f"## Workload {name}", "", f"Failed: {results[name]['error']}", ""]
        elif name in results:
            out += part(results[name])
            out.append(
                f"({name}: {results[name].get('elapsed_s', '?')} s, load average after "
                f"{results[name].get('load_after', '?')})"
            )
            out.append("")
    import usage_bench

    out += usage_bench.render(results)
    return "\n" + "\n".join(out)


def _med(rounds: list[Round], get: Callable[[Round], float]) -> float:
    return median(get(r) for r in rounds)


def _each(rounds: list[Round], get: Callable[[Round], float], fmt: str) -> str:
    return ", ".join(format(get(r), fmt) for r in rounds)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _row(
    name: str,
    rounds: list[Round],
    get: Callable[[Round], float],
    fmt: str,
    target: str,
    ok: Callable[[float], bool] | None,
) -> str:
    value = _med(rounds, get)
    goal = f"{target} ({_verdict(ok(value))})" if ok else target
    return f"| {name} | {_each(rounds, get, fmt)} | **{format(value, fmt)}** | {goal} |"


_RATIO_HEAD = ["| measure | per round | median | target |", "|---|---|---:|---|"]


def _slow(result: dict[str, Any]) -> list[str]:
    rounds = result["rounds"]
    out = [
        "## Slow upstream (50 ms an answer), 200 connections",
        "",
        "bench/pyupstream.py answers every request 50 ms after it arrived; wrk -c200 (at "
        "most 4,000 requests a second offered) straight to it, through nginx, through the "
        "gateway (cached token).",
        "",
        "| target | rps | p50 | p99 | max | CPU µs/req |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in (
        ("direct", "upstream, direct"),
        ("nginx", "nginx proxy"),
        ("gateway", "Tollgate gateway"),
    ):
        out.append(
            f"| {label} | {_med(rounds, lambda r, k=key: r[k]['rps']):,.0f} "
            f"| {_med(rounds, lambda r, k=key: r[k]['p50_us']) / 1000:.2f} "
            f"| {_med(rounds, lambda r, k=key: r[k]['p99_us']) / 1000:.2f} "
            f"| {_med(rounds, lambda r, k=key: r[k]['max_us']) / 1000:.1f} "
            f"| {_med(rounds, lambda r, k=key: r[k].get('cpu_us', 0)):.0f} |"
        )
    out += ["", *_RATIO_HEAD]
    out.append(
        _row(
            "gateway / nginx rps",
            rounds,
            lambda r: r["gateway"]["rps"] / r["nginx"]["rps"],
            ".3f",
            "≥ 0.95",
            lambda v: v >= 0.95,
        )
    )
    out.append(
        _row(
            "gateway p99 − upstream p99 (ms)",
            rounds,
            lambda r: (r["gateway"]["p99_us"] - r["direct"]["p99_us"]) / 1000,
            "+.2f",
            "≤ +5",
            lambda v: v <= 5,
        )
    )
    out.append(
        _row(
            "nginx p99 − upstream p99 (ms)",
            rounds,
            lambda r: (r["nginx"]["p99_us"] - r["direct"]["p99_us"]) / 1000,
            "+.2f",
            "reference",
            None,
        )
    )
    errors = [
        f"round {i + 1} {k}: {r[k]['non2xx']} non-2xx, {r[k]['timeout']} timeouts"
        for i, r in enumerate(rounds)
        for k in ("direct", "nginx", "gateway")
        if r[k]["non2xx"] or r[k]["timeout"]
    ]
    return [*out, "", *(f"Warning: {e}" for e in errors)]


def _many(result: dict[str, Any]) -> list[str]:
    rounds = result["rounds"]
    n = result["connections"]
    out = [
        f"## {n:,} open connections, one request every {result['interval']:g} s each",
        "",
        "bench/manyconns.py (one uvloop process) opens the connections, then each sends a "
        "request on its own schedule (random phase); measured once all are open. Memory: the "
        "resident set of all the target's processes (gateway: the parent and its workers), "
        "idle before, the highest sampled during, and after the connections closed.",
        "",
        "| target | answered / sent | not opened / lost | p50 | p99 | p99.9 | max "
        "| worst seconds (max ms) "
        "| RSS idle → max → after (MiB) | MiB per 1,000 connections | CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for key, label in (("nginx", "nginx proxy"), ("gateway", "Tollgate gateway")):
        for i, r in enumerate(rounds):
            run = r[key]
            out.append(
                f"| {label} (round {i + 1}) | {run['answered']:,} / {run['sent']:,} "
                f"| {run['failed_to_open']} / {run['lost']} | {run['p50_ms']:.2f} "
                f"| {run['p99_ms']:.2f} "
                f"| {run['p999_ms']:.2f} | {run['max_ms']:.1f} "
                f"| {', '.join(f'{v:g}' for v in run['worst_seconds_ms'][:3])} "
                f"| {run['rss_idle'] / MiB:.0f} → {run['rss_max'] / MiB:.0f} → "
                f"{run['rss_after'] / MiB:.0f} | {run['rss_max'] / MiB / (n / 1000):.1f} "
                f"| {run['cpu_s']:.1f} |"
            )
    out += ["", *_RATIO_HEAD]
    out.append(
        _row(
            "gateway: requests unanswered (and connections not opened)",
            rounds,
            lambda r: (
                r["gateway"]["sent"] - r["gateway"]["answered"] + r["gateway"]["failed_to_open"]
            ),
            ".0f",
            "0",
            lambda v: v == 0,
        )
    )
    out.append(
        _row(
            "gateway p99 (ms)",
            rounds,
            lambda r: r["gateway"]["p99_ms"],
            ".2f",
            "≤ 20",
            lambda v: v <= 20,
        )
    )
    out.append(
        _row(
            "nginx p99 (ms)",
            rounds,
            lambda r: r["nginx"]["p99_ms"],
            ".2f",
            "reference",
            None,
        )
    )
    out.append(
        _row(
            "gateway RSS per 1,000 connections (MiB, whole gateway at its highest)",
            rounds,
            lambda r: r["gateway"]["rss_max"] / MiB / (n / 1000),
            ".1f",
            "≤ 50",
            lambda v: v <= 50,
        )
    )
    out.append(
        _row(
            "gateway RSS added per 1,000 connections (MiB, highest − idle)",
            rounds,
            lambda r: (r["gateway"]["rss_max"] - r["gateway"]["rss_idle"]) / MiB / (n / 1000),
            ".1f",
            "reference",
            None,
        )
    )
    return [*out, ""]


def _bodies(result: dict[str, Any]) -> list[str]:
    rounds = result["rounds"]
    size = result["size"] / MiB
    out = [
        f"## Large bodies ({size:g} MiB uploads and downloads)",
        "",
        "wrk -c4: POST of the body (bench/upload.lua) to an upstream that reads it whole "
        "before answering, and GET of a body that size (bench/pyupstream.py); nginx streams "
        "both ways like the gateway (`proxy_request_buffering off; proxy_buffering off`, 64 KiB "
        "buffers). MiB/s of bodies; RSS of all the target's processes, highest sampled during "
        "the run and after it.",
        "",
        "| target | upload MiB/s | download MiB/s | RSS max during (MiB) | RSS after (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in (
        ("direct", "upstream, direct"),
        ("nginx", "nginx proxy"),
        ("gateway", "Tollgate gateway"),
    ):
        out.append(
            f"| {label} | {_med(rounds, lambda r, k=key: r[f'{k} upload']['mb_s']):,.0f} "
            f"| {_med(rounds, lambda r, k=key: r[f'{k} download']['mb_s']):,.0f} "
            f"| {max(max(r[f'{key} {w}']['rss_max'] for w in ('upload', 'download')) for r in rounds) / MiB:.0f} "  # noqa: E501
            f"| {rounds[-1][f'{key} download']['rss_after'] / MiB:.0f} |"
        )
    out += ["", *_RATIO_HEAD]
    for way in ("upload", "download"):
        out.append(
            _row(
                f"gateway / nginx MiB/s, {way}",
                rounds,
                lambda r, w=way: r[f"gateway {w}"]["mb_s"] / r[f"nginx {w}"]["mb_s"],
                ".2f",
                "≥ 0.5",
                lambda v: v >= 0.5,
            )
        )
    start = result["rss_start"] / MiB
    out.append(
        _row(
            f"gateway RSS after each round − before the first ({start:.0f} MiB)",
            rounds,
            lambda r: r["gateway download"]["rss_after"] / MiB - start,
            "+.1f",
            "flat (within a few MiB)",
            lambda v: abs(v) <= 16,
        )
    )
    out.append(
        _row(
            "gateway RSS at its highest during a run − before (MiB)",
            rounds,
            lambda r: (
                max(r[f"gateway {w}"]["rss_max"] for w in ("upload", "download")) / MiB - start
            ),
            "+.1f",
            "reference",
            None,
        )
    )
    errors = [
        f"round {i + 1} {key}: {run['non2xx']} non-2xx answers of {run['requests']} "
        "(their MiB/s mean nothing)"
        for i, r in enumerate(rounds)
        for key, run in r.items()
        if run["non2xx"] or run["timeout"]
    ]
    out += ["", *(f"Warning: {e}" for e in errors)]
    return [*out, ""]


def _flood(result: dict[str, Any]) -> list[str]:
    rounds = result["rounds"]
    out = [
        "## A flood of unknown token ids",
        "",
        "wrk -c50 as fast as the answers come, each request with a well-formed token (shape "
        "and checksum right) whose id no database holds, every one different "
        f"({rounds[0]['tokens']:,} a round; bench/flood.lua), while a second wrk (-c10) sends "
        "the cached token. Its p99 alone is measured just before, in the same round. argon2 "
        "runs and cache misses are the gateway's own counters over the flood.",
        "",
        "| round | cached p99 alone | cached p99 during | flood rps | flood answers non-2xx "
        "/ sent | argon2 runs | misses | RSS max during (MiB) | RSS after (MiB) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rounds):
        flood = r["flood"]
        wrapped = " (tokens reused)" if flood["requests"] > r["tokens"] else ""
        out.append(
            f"| {i + 1} | {r['alone']['p99_us'] / 1000:.2f} | {r['during']['p99_us'] / 1000:.2f} "
            f"| {flood['rps']:,.0f} | {flood['non2xx']:,} / {flood['requests']:,}{wrapped} "
            f"| {r['argon2_runs']:.0f} | {r['misses']:,.0f} | {r['rss_max'] / MiB:.0f} "
            f"| {r['rss_after'] / MiB:.0f} |"
        )
    start = result["rss_start"] / MiB
    out += ["", *_RATIO_HEAD]
    out.append(
        _row(
            "cached p99 during the flood / alone",
            rounds,
            lambda r: r["during"]["p99_us"] / r["alone"]["p99_us"],
            ".2f",
            "≤ 2",
            lambda v: v <= 2,
        )
    )
    out.append(
        _row(
            "argon2 runs during the flood",
            rounds,
            lambda r: r["argon2_runs"],
            ".0f",
            "bounded (0: unknown ids never reach argon2)",
            lambda v: v <= 0,
        )
    )
    out.append(
        _row(
            f"gateway RSS after the round − before the first ({start:.0f} MiB)",
            rounds,
            lambda r: r["rss_after"] / MiB - start,
            "+.1f",
            "bounded (caches have fixed sizes)",
            None,
        )
    )
    return [*out, ""]
