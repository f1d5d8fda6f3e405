"""The upstream side: keep-alive connections to the one upstream and its answers."""

from .errors import UpstreamBroken, UpstreamTimeout, UpstreamUnreachable
from .pool import UpstreamClient
from .response import Tunnel, UpstreamResponse

__all__ = [
    "Tunnel",
    "UpstreamBroken",
    "UpstreamClient",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamUnreachable",
]
