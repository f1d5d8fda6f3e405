"""The smallest aiohttp + uvloop reverse proxy: the framework's ceiling for Tollgate.

No auth, no rate limit, no metrics, no log: one ClientSession per process with its
defaults, the response streamed back. ``--workers N`` runs N processes sharing the
port with SO_REUSEPORT, as ``gateway serve`` does.

    python bench/bare_proxy.py --port 8090 --upstream http://127.0.0.1:8091 --workers 2
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import uvloop
from aiohttp import ClientSession, web

# RFC 9110 §7.6.1 hop-by-hop headers, plus Host (the client sets the upstream's).
DROP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
    )
)
SESSION = web.AppKey("session", ClientSession)


def build_app(upstream: str) -> web.Application:
    app = web.Application()

    async def client(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = ClientSession(auto_decompress=False)
        yield
        await app[SESSION].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP}
        body = request.content if request.body_exists else None
        async with app[SESSION].request(
            request.method,
            upstream + request.rel_url.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as up:
            out = {k: v for k, v in up.headers.items() if k.lower() not in DROP}
            response = web.StreamResponse(status=up.status, headers=out)
            try:
                await response.prepare(request)
                async for chunk in up.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError:
                pass  # the client left (wrk stopping): nothing to answer
            return response

    app.cleanup_ctx.append(client)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def serve(host: str, port: int, upstream: str) -> None:
    web.run_app(
        build_app(upstream.rstrip("/")),
        host=host,
        port=port,
        reuse_port=True,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


def supervise(argv: list[str], workers: int) -> int:
    """Start ``workers`` single-process copies and stop them all on SIGTERM/SIGINT."""
    children = [
        subprocess.Popen([sys.executable, __file__, *argv, "--workers", "1"])
        for _ in range(workers)
    ]

    def stop(signum: int, frame: object) -> None:
        for child in children:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = [child.wait() for child in children]
    return max(codes, default=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.workers > 1:
        base = ["--host", args.host, "--port", str(args.port), "--upstream", args.upstream]
        return supervise(base, args.workers)
    serve(args.host, args.port, args.upstream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
