"""A real PgBouncer (the Debian ``pgbouncer`` package) in front of the tests' Postgres.

It runs with a config written here: transaction pooling and a server pool of two
connections per database, so consecutive transactions of one client connection
really run on different server connections and many clients share two of them.
Its server connections carry an ``application_name`` of their own, so a test can
count them in ``pg_stat_activity``. As root (CI containers) it is started as an
unprivileged user, since PgBouncer refuses to run as root: the owner of the server's
socket directory (the embedded Postgres), or ``nobody`` for a server on TCP.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.helpers import free_port, server_address

BINARY = shutil.which("pgbouncer", path=os.pathsep.join([os.defpath, "/usr/sbin", "/usr/bin"]))
MISSING = "pgbouncer is not installed (Debian package pgbouncer; .ci/run installs it)"
START_DEADLINE = 10.0
STOP_DEADLINE = 10.0


class PgBouncer:
    def __init__(self, server_url: str, *, pool_mode: str = "transaction", pool_size: int = 2):
        assert BINARY is not None, MISSING
        self.server_url = server_url
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.port = free_port()
        # Marks its server connections in pg_stat_activity (asyncpg clients send none).
        self.application_name = f"tollgate-test-pgbouncer-{secrets.token_hex(4)}"
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="tollgate-pgbouncer-"))

    def url(self, database_url: str) -> str:
        """``database_url``'s database, reached through this PgBouncer (no password needed)."""
        parts = urlsplit(database_url)
        user = parts.username or getpass.getuser()
        return urlunsplit(("postgresql", f"{user}@127.0.0.1:{self.port}", parts.path, "", ""))

    async def fill_pool(self, database_url: str) -> None:
        """Open all of the database's server connections now: with them idle and taken in
        turn, each client's consecutive transactions run on different ones at once."""
        clients = [
            await asyncpg.connect(self.url(database_url), statement_cache_size=0)
            for _ in range(self.pool_size)
        ]
        try:
            transactions = [client.transaction() for client in clients]
            for transaction in transactions:  # all open at once: one server each
                await transaction.start()
            for transaction in transactions:
                await transaction.commit()
        finally:
            for client in clients:
                await client.close()

    @property
    def log(self) -> str:
        return (self._dir / "pgbouncer.log").read_text(errors="replace")

    def start(self) -> None:
        config = self._dir / "pgbouncer.ini"
        config.write_text(self._config())
        # Readable by the unprivileged user it switches to (the directory is ours, 0700).
        self._dir.chmod(0o755)
        config.chmod(0o644)
        user = ["-u", self._run_as()] if os.geteuid() == 0 else []
        with (self._dir / "pgbouncer.log").open("wb") as log:
            self.process = subprocess.Popen(
                [str(BINARY), *user, str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_listening()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # immediate shutdown
            try:
                self.process.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _config(self) -> str:
        host, port = server_address(self.server_url)
        parts = urlsplit(self.server_url)
        server = f"host={host} port={port} user={parts.username or getpass.getuser()}"
        if parts.password:
            server += f" password={parts.password}"
        # auth_type = any: clients are not checked here; the server checks PgBouncer.
        return f"""\
[databases]
* = {server} application_name={self.application_name}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = any
pool_mode = {self.pool_mode}
default_pool_size = {self.pool_size}
; Idle server connections taken in turn, not the last used first: a client's next
; transaction goes elsewhere whenever it can.
server_round_robin = 1
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 200
; A client that waits this long for a server connection gets an error, not a hang.
query_wait_timeout = 15
logfile =
pidfile =
"""

    def _run_as(self) -> str:
        host, _ = server_address(self.server_url)
        if host.startswith("/"):  # the socket directory's owner can reach the socket
            return pwd.getpwuid(os.stat(host).st_uid).pw_name
        return "nobody"

    def _wait_listening(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"pgbouncer exited at start:\n{self.log}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.01)
        raise AssertionError(f"pgbouncer not listening in {START_DEADLINE}s:\n{self.log}")


@contextlib.contextmanager
def running_pgbouncer(
    server_url: str, *, pool_mode: str = "transaction", pool_size: int = 2
) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(server_url, pool_mode=pool_mode, pool_size=pool_size)
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


# Server connections PgBouncer holds to the current database.
SERVER_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()"
)
