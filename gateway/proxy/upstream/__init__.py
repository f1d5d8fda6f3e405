"""The upstream side: keep-alive connections to the one upstream and its answers."""

from .errors import UpstreamBroken, UpstreamTimeout, UpstreamUnreachable
from .pool import UpstreamClient
from .response import UpstreamResponse

__all__ = [
    "UpstreamBroken",
    "UpstreamClient",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamUnreachable",
]
