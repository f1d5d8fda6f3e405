"""The built-in demo upstream: it answers every request with a JSON echo of it.

``gateway up`` runs it when no ``UPSTREAM_URL`` is set, so a first try shows what the
upstream receives through the gateway: the identity headers (``X-Project-Id``,
``X-Token-Id``, ``X-Request-Id``) are there and ``Authorization`` is not. It also runs
alone (``python -m gateway.runtime.demo --port 9000``), e.g. as the compose ``upstream`` service.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

# The echo is a demo, not a sink: bodies over this size are refused with 413.
MAX_BODY = 1024 * 1024


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    answer: dict[str, Any] = {
        "method": request.method,
        "path": request.path,
        "query": _query(request),
        "headers": _headers(request),
    }
    answer.update(_body(body))
    return web.json_response(answer, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _query(request: web.Request) -> dict[str, str | list[str]]:
    """Each parameter once; a repeated one as a list (as httpbin shows it)."""
    query: dict[str, str | list[str]] = {}
    for name in request.query:
        values = request.query.getall(name)
        query[name] = values[0] if len(values) == 1 else values
    return query


def _headers(request: web.Request) -> dict[str, str]:
    """The headers as received; repeated ones joined with ", " (RFC 9110 §5.3)."""
    headers: dict[str, str] = {}
    for name in request.headers:
        if name not in headers:
            headers[name] = ", ".join(request.headers.getall(name))
    return headers


def _body(body: bytes) -> dict[str, Any]:
    if not body:
        return {"body": ""}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode("ascii")}
    shown: dict[str, Any] = {"body": text}
    with contextlib.suppress(ValueError):  # not JSON: the text alone is shown
        shown["json"] = json.loads(text)
    return shown


def create_app() -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.runtime.demo",
        description="Tollgate's demo upstream: answers every request with a JSON echo of it.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="listen port (default 9000)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
