"""The upstream side: keep-alive connections to the one upstream and its answers."""

from .pool import (
    UpstreamBroken,
    UpstreamClient,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)

__all__ = [
    "UpstreamBroken",
    "UpstreamClient",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamUnreachable",
]
