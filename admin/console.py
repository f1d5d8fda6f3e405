"""The web console's files: ``GET /`` and ``/static/…`` from the package's ``static`` folder.

They need no admin token (the console asks for it and sends it to ``/v1`` itself) and
are not part of the API description. Every answer of the admin app carries strict
security headers; for the console they mean no inline script, no third-party origin,
no framing and no referrer leaking the admin host.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.core.errors import NotFound

ROUTE_PREFIX: Final = "console."

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def static_dir() -> Path:
    """The console's folder inside the installed package (wheel or source tree)."""
    return Path(str(files("admin") / "static"))


def add_routes(app: web.Application) -> None:
    folder = static_dir()
    index = folder / "index.html"
    app.router.add_get("/", _index(index, index.is_file()), name=ROUTE_PREFIX + "index")
    if folder.is_dir():
        app.router.add_static("/static", folder, name=ROUTE_PREFIX + "static")


def is_console_route(route: web.AbstractRoute) -> bool:
    name = route.resource.name if route.resource is not None else None
    return name is not None and name.startswith(ROUTE_PREFIX)


def _index(path: Path, installed: bool) -> Handler:
    async def index(request: web.Request) -> web.StreamResponse:
        if not installed:
            raise NotFound("the web console is not installed")
        # The page names its scripts without a version; make browsers revalidate it.
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return index


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: applies to every answer, errors and files included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/static/"):
        # Module URLs carry no version: revalidate, so an upgrade never pairs new
        # HTML with old scripts from the browser's cache.
        response.headers.setdefault("Cache-Control", "no-cache")
