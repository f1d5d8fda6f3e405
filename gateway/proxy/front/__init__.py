"""The client side of the proxy: Tollgate's own HTTP/1.1 server, on llhttp (httptools).

protocol.py (one connection: parsing, keep-alive, pipelining, deadlines, refusals),
head.py (what a request head must be), request.py (the request a handler gets, its
body and its answer), response.py (the bytes of answer heads), tunnel.py (WebSocket
relay), connections.py (the cap, idle order and deadline sweep of one listener),
server.py (the listener and its graceful stop), limits.py (timeouts, sizes).
"""

from .limits import ClientLimits, raise_open_files_limit
from .request import App, Request
from .server import Server, serve

__all__ = ["App", "ClientLimits", "Request", "Server", "raise_open_files_limit", "serve"]
