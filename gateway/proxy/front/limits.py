"""What a client may take of the proxy listener: time, head sizes, connections.

The timeouts and the connection cap are settings (``GATEWAY_*_TIMEOUT``,
``GATEWAY_MAX_CONNECTIONS``); the head sizes are fixed, as aiohttp's and nginx's
defaults are (an API request has no business sending a 64 KiB head).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Final

from gateway.core.config import Settings

MAX_TARGET: Final = 8190  # bytes of the request target (414 beyond; aiohttp's line limit)
MAX_FIELD: Final = 8190  # bytes of one header field, name and value (431 beyond)
MAX_FIELDS: Final = 100  # header fields in one request (431 beyond)
MAX_HEAD: Final = 64 * 1024  # bytes of a whole request head (431 beyond)
BODY_HIGH_WATER: Final = 256 * 1024  # request body bytes buffered before reading pauses
WRITE_HIGH_WATER: Final = 64 * 1024  # answer bytes buffered for a client before writers wait
LINGER: Final = 2.0  # seconds input is still read (and dropped) after a refusal, so it arrives

# File descriptors kept for everything but client connections (Postgres, Redis, the
# LISTEN connection, log and metric files, the event loop). Each client connection may
# hold one upstream connection too, hence half of the rest.
FD_RESERVE: Final = 128
AUTO_MAX_CONNECTIONS: Final = 100_000  # memory, not descriptors, bounds past this


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """The bounds every client connection of one listener lives within (seconds)."""

    header_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    body_timeout: float = 30.0
    write_timeout: float = 30.0
    websocket_timeout: float = 60.0
    max_connections: int = 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientLimits:
        return cls(
            header_timeout=settings.header_timeout,
            keepalive_timeout=settings.keepalive_timeout,
            body_timeout=settings.body_timeout,
            write_timeout=settings.write_timeout,
            websocket_timeout=settings.websocket_timeout,
            max_connections=settings.max_connections or auto_max_connections(),
        )


def auto_max_connections() -> int:
    """``GATEWAY_MAX_CONNECTIONS=auto``: what the open-file limit allows, with room to spare,
    so new connections are refused before accept() runs out of descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return AUTO_MAX_CONNECTIONS
    return max(16, min(AUTO_MAX_CONNECTIONS, (soft - FD_RESERVE) // 2))


def raise_open_files_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit; return the soft limit.

    The soft limit (often 1,024) is a default for programs that never asked, not a
    policy: a server that holds thousands of connections raises it, as nginx's
    ``worker_rlimit_nofile`` does.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An infinite hard limit cannot be the soft one on Linux: take its usual nr_open.
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        return soft
    return wanted
