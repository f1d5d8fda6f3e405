"""How worker processes tell the parent they serve, and whether they are ready.

Each worker rewrites ``<dir>/<pid>.json`` (atomically, by rename) every
:data:`HEARTBEAT` seconds once its listener accepts connections. The parent reads
the files of the workers it knows are alive. A file older than :data:`STALE_AFTER`
means a worker whose event loop is stuck: it counts as not serving. Files survive
nothing but the worker: it removes its own on the way out and the parent removes
the file of a worker that died.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

HEARTBEAT = 1.0
STALE_AFTER = 5.0


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    pid: int
    ready: bool
    at: float

    def fresh(self, now: float) -> bool:
        return now - self.at < STALE_AFTER


def _path(directory: Path, pid: int) -> Path:
    return directory / f"{pid}.json"


def _replace(path: Path, text: str) -> None:
    """Write ``path`` by rename, so a reader never sees it half written."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write(directory: Path, *, ready: bool, pid: int | None = None, at: float | None = None) -> None:
    pid = os.getpid() if pid is None else pid
    status = {"pid": pid, "ready": ready, "at": time.time() if at is None else at}
    _replace(_path(directory, pid), json.dumps(status))


def read(directory: Path, pid: int) -> WorkerStatus | None:
    """The last status ``pid`` wrote, or None if it has not written one (yet)."""
    try:
        data = json.loads(_path(directory, pid).read_text())
        return WorkerStatus(pid=pid, ready=data["ready"] is True, at=float(data["at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(directory: Path, pid: int | None = None) -> None:
    pid = os.getpid() if pid is None else pid
    _path(directory, pid).unlink(missing_ok=True)
    _flushed_path(directory, pid).unlink(missing_ok=True)


def _flushed_path(directory: Path, pid: int) -> Path:
    return directory / f"{pid}.flushed"


def write_flushed(directory: Path) -> None:
    """Say that this worker's metrics reached their files just now (asked before a scrape)."""
    _replace(_flushed_path(directory, os.getpid()), repr(time.time()))


def read_flushed(directory: Path, pid: int) -> float:
    """When ``pid`` last said its metrics were flushed on request; 0 if never."""
    try:
        return float(_flushed_path(directory, pid).read_text())
    except (OSError, ValueError):
        return 0.0
