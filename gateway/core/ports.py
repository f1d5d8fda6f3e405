"""Whether a port can be listened on, asked before a server starts anything else."""

from __future__ import annotations

import socket


def probe(host: str, port: int) -> int:
    """Bind ``host:port`` once and let go: the port bound (a free one for port 0). Raises
    the ``OSError`` a server would meet (``socket.gaierror`` for a host that is not one).

    A server checks its port first, so a busy one stops it with one line before it has
    opened a database pool or started background work (stopping those half-started left
    asyncpg's noise on stderr). Without ``SO_REUSEPORT``: with it, a second ``gateway
    serve`` would share the port of a running one silently (the workers of both set it),
    each answering some of the connections.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
        sock.bind(address)
        bound: int = sock.getsockname()[1]
        return bound
