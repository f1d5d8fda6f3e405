"""README.md's performance table, regenerated from one run's report (``--readme``).

The block between the markers is replaced by: the machine and its load, what the
gateway rows run with, the proxying table, and every row of the report that has a
target (its median and verdict), in the report's order, so README and report cannot
disagree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

START = "<!-- PERFORMANCE TABLE: filled from `make bench` by the benchmark run. Do not edit by hand. -->"  # noqa: E501
END = "<!-- END PERFORMANCE TABLE -->"
_VERDICT = re.compile(r"\((met|\*\*missed\*\*)\)")
# Short names of the report's sections, by how their titles start.
_SECTIONS = (
    ("Ratios", "proxying"),
    ("New tokens", "new tokens"),
    ("Rejections", "rejections"),
    ("Slow upstream", "slow upstream"),
    ("Large bodies", "large bodies"),
    ("A flood", "unknown-id flood"),
)


def _short(title: str) -> str:
    for start, name in _SECTIONS:
        if title.startswith(start):
            return name
    return "open connections" if "open connections" in title else title


def block(report: str, machine: dict[str, Any], workers: int, rounds: int) -> str:
    m = machine
    lines = [
        START,
        "",
        f"One `make bench` run, {m['date']}: {m['nproc']} cores ({m['cpu']}), Linux "
        f"{m['kernel']}, Python {m['python']}, nginx {m['nginx']}, wrk {m['wrk']}; {workers} "
        f"worker processes per proxy; medians of {rounds} interleaved rounds; load average "
        f"{m['load_before']} before, {m.get('load_after', '?')} after (a machine shared with "
        "other work: read the same-run ratios, not the absolute numbers). Latencies in ms, "
        "as wrk measured them (without its coordinated-omission correction). "
        + (f"Gateway rows: {m['gateway_setup']}." if m.get("gateway_setup") else ""),
        "",
    ]
    lines += _section(report, "## Proxying a 200")
    lines += ["| measure | median | target |", "|---|---:|---|"]
    for section, cells, i in _target_rows(report):
        name = cells[0]
        if section == "new tokens":  # its rows are named by the cached load only
            name = f"cached p99 rise (ms) while 20 new tokens/s verify, {name}"
        lines.append(f"| {section}: {name} | {cells[i - 1]} | {cells[i]} |")
    lines += [
        "",
        "Per-round figures, the workloads' tables and where the time goes: `bench/README.md` "
        "and the run's report (`bench/results/latest.md`).",
        "",
        END,
    ]
    return "\n".join(lines)


def _section(report: str, title: str) -> list[str]:
    """The first table under ``title``."""
    out: list[str] = []
    inside = False
    for line in report.splitlines():
        if line.startswith("## "):
            if out:
                break
            inside = line == title
            continue
        if inside and line.startswith("|"):
            out.append(line)
        elif out:
            break
    return [*out, ""]


def _target_rows(report: str) -> list[tuple[str, list[str], int]]:
    """Rows with a verdict: their section, cells, and which cell is the goal (the median
    is the one before it)."""
    rows: list[tuple[str, list[str], int]] = []
    section = ""
    for line in report.splitlines():
        if line.startswith("## "):
            section = _short(line[3:])
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            goal = next((i for i, c in enumerate(cells) if i and _VERDICT.search(c)), None)
            if goal is not None:
                rows.append((section, cells, goal))
    return rows


def update(readme: Path, text: str) -> None:
    """Replace the marked block of ``readme`` with ``text``."""
    content = readme.read_text()
    start, end = content.index(START), content.index(END) + len(END)
    readme.write_text(content[:start] + text + content[end:])
