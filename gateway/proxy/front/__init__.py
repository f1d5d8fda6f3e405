"""The client side of the proxy: Tollgate's own HTTP/1.1 server, on llhttp (httptools).

protocol.py (one connection: parsing, keep-alive, pipelining, deadlines, refusals),
request.py (the request a handler gets, its body and its answer), response.py (the
bytes of answer heads), tunnel.py (WebSocket relay), server.py (the listener and
its graceful stop), limits.py (timeouts, sizes and the connection cap).
"""

from .limits import ClientLimits, raise_open_files_limit
from .protocol import App
from .request import Request
from .server import Server, serve

__all__ = ["App", "ClientLimits", "Request", "Server", "raise_open_files_limit", "serve"]
