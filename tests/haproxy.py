"""A real HAProxy (the Debian ``haproxy`` package) running deploy/haproxy.cfg.

The test writes a copy of that file with only its addresses changed: the ``bind`` line
to a free local port and each ``server`` line to one gateway's proxy and metrics ports.
Everything else (health checks, retries, timeouts) is the file as shipped.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import free_port

BINARY = shutil.which("haproxy", path=os.pathsep.join([os.defpath, "/usr/sbin", "/usr/bin"]))
MISSING = "haproxy is not installed (Debian package haproxy; .ci/run installs it)"
CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "haproxy.cfg"
START_DEADLINE = 10.0
STOP_DEADLINE = 10.0

_BIND = re.compile(r"^(\s*bind )\S+", re.MULTILINE)
_SERVER = re.compile(r"^(\s*server \S+ )\S+( check port )\d+", re.MULTILINE)


def configured(port: int, servers: list[tuple[int, int]], source: str | None = None) -> str:
    """deploy/haproxy.cfg listening on ``port``, its servers at ``(proxy, metrics)`` ports;
    ``source``: the local address HAProxy connects to them from (as a separate host would)."""
    text, binds = _BIND.subn(rf"\g<1>127.0.0.1:{port}", CONFIG.read_text())
    assert binds == 1, "deploy/haproxy.cfg should bind once"
    ports = iter(servers)

    def server(match: re.Match[str]) -> str:
        proxy, metrics = next(ports)
        address = f"{match[1]}127.0.0.1:{proxy}{match[2]}{metrics}"
        return address if source is None else f"{address} source {source}"

    text, count = _SERVER.subn(server, text)
    assert count == len(servers), f"deploy/haproxy.cfg has {count} servers"
    return text


@contextlib.contextmanager
def running_haproxy(
    directory: Path, servers: list[tuple[int, int]], source: str | None = None
) -> Iterator[str]:
    """HAProxy in front of ``servers``; yields its URL. Its log is ``directory/haproxy.log``."""
    assert BINARY is not None, MISSING
    port = free_port()
    config = directory / "haproxy.cfg"
    config.write_text(configured(port, servers, source))
    with (directory / "haproxy.log").open("wb") as log:
        process = subprocess.Popen(
            [BINARY, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_DEADLINE
        while not _accepts(port):
            assert process.poll() is None, (directory / "haproxy.log").read_text()
            assert time.monotonic() < deadline, "haproxy did not start listening"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
