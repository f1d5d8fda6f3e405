"""What can go wrong with the upstream, as exceptions shaped like their stdlib cousins:

ConnectionError
├── UpstreamUnreachable   no connection, or it broke before the answer's head (502)
└── UpstreamBroken        a malformed answer, or its body cut short (502, or a cut stream)
TimeoutError
└── UpstreamTimeout       no head, or no body bytes, for the timeout (504, or a cut stream)
"""

from __future__ import annotations

import asyncio
from typing import Any


class UpstreamUnreachable(ConnectionError):
    """No connection, or it broke before the answer's head was complete."""


class UpstreamBroken(ConnectionError):
    """The answer is malformed or its body was cut short."""


class UpstreamTimeout(TimeoutError):
    """No head, or no body bytes, for the configured timeout."""


def expire(waiter: asyncio.Future[Any], *why: str) -> None:
    """A timer's callback: fail ``waiter`` with :class:`UpstreamTimeout` unless it is done."""
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout(*why))
