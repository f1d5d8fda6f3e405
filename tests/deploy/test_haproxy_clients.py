"""The client's address behind a real HAProxy (deploy/haproxy.cfg, ``option forwardfor``)
with ``TRUSTED_PROXIES`` naming it (SPEC §10): an IP allowlist sees the client, not the
proxy, and a client cannot pass an address of its choosing in ``X-Forwarded-For``.

Loopback has the whole of 127.0.0.0/8, so each party gets an address of its own: HAProxy
connects to the gateway from 127.0.0.2 (the trusted proxy); clients connect to HAProxy
from 127.0.0.3 (allowed) or 127.0.0.4 (not). Marked ``slow``: it starts a gateway process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.core.store import Store
from tests.gatewayproc import running_gateway
from tests.haproxy import BINARY, MISSING, running_haproxy
from tests.helpers import issue

PROXY, ALLOWED, OTHER = "127.0.0.2", "127.0.0.3", "127.0.0.4"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(BINARY is None, reason=MISSING)]


def forwarded_app() -> web.Application:
    """An upstream that answers with the X-Forwarded-For it received."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"xff": request.headers.get("X-Forwarded-For")})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


async def call(url: str, raw: str, source: str, **headers: str) -> tuple[int, Any]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"{url}/x", headers={"Authorization": f"Bearer {raw}", **headers}) as r,
    ):
        return r.status, json.loads(await r.read())


async def test_the_allowlist_sees_the_client_behind_haproxy_and_no_forged_address(
    environ: dict[str, str], store: Store, aiohttp_server: Any, tmp_path: Path
) -> None:
    upstream = await aiohttp_server(forwarded_app())
    token = await issue(store, allowed_ips=(f"{ALLOWED}/32",))
    env = {
        **environ,
        "UPSTREAM_URL": str(upstream.make_url("/")),
        "GATEWAY_WORKERS": "1",
        "TRUSTED_PROXIES": f"{PROXY}/32",
    }
    async with running_gateway(env, tmp_path / "gateway") as (gateway, _):
        # The shipped file's three servers, all this one gateway.
        servers = [(gateway.port, gateway.metrics_port)] * 3
        with running_haproxy(tmp_path, servers, PROXY) as url:
            # The allowed client: HAProxy adds its address, the gateway takes it as the
            # client's and passes the chain on with HAProxy's own address after it.
            status, body = await call(url, token.raw, ALLOWED)
            assert status == 200, body
            assert body["xff"] == f"{ALLOWED}, {PROXY}"
            # Another client claiming the allowed address: HAProxy appends the real one,
            # the right-most address not trusted, so the claim changes nothing.
            status, body = await call(url, token.raw, OTHER, **{"X-Forwarded-For": ALLOWED})
            assert (status, body["error"]["code"]) == (403, "ip_not_allowed")
            # The same claim sent to the gateway directly, bypassing the trusted proxy.
            status, body = await call(gateway.url, token.raw, OTHER, **{"X-Forwarded-For": ALLOWED})
            assert (status, body["error"]["code"]) == (403, "ip_not_allowed")
