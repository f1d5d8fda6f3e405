"""The embedded Postgres after a killed user: real ``gateway`` processes from the virtualenv,
their own data directory, and the operating system's view of what is left running."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from gateway.core.config import settings_fields
from gateway.core.embedded import USERS_FILE, forget_departed
from tests.helpers import free_port

GATEWAY = Path(sys.executable).with_name("gateway")  # the console script a user runs
ADMIN_TOKEN = "embedded-test-admin-token-" + "z" * 32
SETTING_NAMES = {field.metadata["env"] for field in settings_fields()}
DEADLINE = 30.0


# ---------------------------------------------------------------- the list of users


def exited_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def zombie() -> subprocess.Popen[bytes]:
    """A child that has exited and that nobody has reaped yet."""
    process = subprocess.Popen(["true"])
    deadline = time.monotonic() + DEADLINE
    while psutil.Process(process.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.01)
    return process


def test_processes_that_are_gone_are_forgotten(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    users = tmp_path / USERS_FILE
    dead, undead = exited_pid(), zombie()
    try:
        users.write_text(json.dumps([dead, sleeper.pid, undead.pid, os.getpid()]))
        assert sorted(forget_departed(users)) == sorted([dead, undead.pid])
    finally:
        undead.wait()
    assert json.loads(users.read_text()) == [sleeper.pid, os.getpid()]
    assert forget_departed(users) == []


def test_a_pid_taken_over_by_a_newer_process_is_forgotten(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    users = tmp_path / USERS_FILE
    users.write_text(json.dumps([sleeper.pid]))
    written = time.time() - 3600  # the list predates the process now holding that PID
    os.utime(users, (written, written))
    assert forget_departed(users) == [sleeper.pid]
    assert json.loads(users.read_text()) == []


def test_this_process_is_never_forgotten(tmp_path: Path) -> None:
    users = tmp_path / USERS_FILE
    users.write_text(json.dumps([os.getpid()]))
    os.utime(users, (0, 0))  # even when its PID looks reused: the entry is ours now
    assert forget_departed(users) == []


@pytest.mark.parametrize("content", ["", "[12", '{"a": 1}'])
def test_an_unreadable_list_is_reset(tmp_path: Path, content: str) -> None:
    users = tmp_path / USERS_FILE
    users.write_text(content)
    assert forget_departed(users) == []
    assert json.loads(users.read_text()) == []


def test_no_list_yet(tmp_path: Path) -> None:
    assert forget_departed(tmp_path / USERS_FILE) == []
    assert not (tmp_path / USERS_FILE).exists()


# ---------------------------------------------------------------- real commands


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside pytest's temporary root: as root the server runs as another user, and a
    pytest starting meanwhile resets that root to mode 0700."""
    path = Path(tempfile.mkdtemp(prefix="tollgate-embedded-"))
    yield path
    for process in postgres_of(path):  # only after a failure: do not leave it behind
        process.kill()
    shutil.rmtree(path, ignore_errors=True)


def environ(data_dir: Path, admin_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env.update(
        GATEWAY_DATA_DIR=str(data_dir),
        ADMIN_TOKEN=ADMIN_TOKEN,
        ADMIN_PORT=str(admin_port),
        GATEWAY_PORT="0",
        GATEWAY_METRICS_PORT="0",
    )
    return env


def postgres_of(data_dir: Path) -> list[psutil.Process]:
    """Every postgres process whose command line names this data directory."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and any(str(data_dir) in arg for arg in cmdline):
            found.append(process)
    return found


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def admin_call(port: int, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - our own URL
        return json.loads(answer.read())


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
            return True
    except OSError:
        return False


def gateway_up(data_dir: Path, admin_port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        process = subprocess.Popen(
            [str(GATEWAY), "up"],
            env=environ(data_dir, admin_port),
            cwd=data_dir,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    wait_for(lambda: answers(admin_port) or process.poll() is not None, "gateway up did not start")
    assert process.poll() is None, log.read_text()
    return process


def test_after_a_killed_gateway_up_later_commands_stop_the_server(
    data_dir: Path, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "output.txt"
    first = gateway_up(data_dir, port, log)
    project = admin_call(port, "POST", "/v1/projects", {"name": "survives a kill"})
    first.kill()  # SIGKILL: no exit handler runs
    first.wait()
    assert postgres_of(data_dir), "the server should outlive the killed process"

    migrate = subprocess.run(
        [str(GATEWAY), "migrate"],
        env=environ(data_dir, port),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr
    wait_for(lambda: not postgres_of(data_dir), "gateway migrate left the server running")

    second = gateway_up(data_dir, port, log)
    names = [p["name"] for p in admin_call(port, "GET", "/v1/projects")["projects"]]
    assert names == [project["name"]]  # the data survived the kill
    second.send_signal(signal.SIGINT)  # Ctrl-C
    assert second.wait(timeout=DEADLINE) == 0, log.read_text()
    wait_for(lambda: not postgres_of(data_dir), "gateway up + Ctrl-C left the server running")
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    assert "Traceback" not in log.read_text()
