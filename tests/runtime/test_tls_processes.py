"""TLS in the real commands: ``gateway serve`` (its spawned workers on uvloop) and
``gateway up`` serve their listener over TLS and reach an ``https`` upstream."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from gateway.core.store import Store
from tests.gatewayproc import issue_token, running_gateway
from tests.runtime.test_up import SETTING_NAMES, call, clean_environ, started_up
from tests.tlsfiles import TLSFiles, make_tls_files
from tests.upstream import create_upstream


def tls_environ(files: TLSFiles) -> dict[str, str]:
    return {
        "GATEWAY_TLS_CERT_FILE": str(files.cert_file),
        "GATEWAY_TLS_KEY_FILE": str(files.key_file),
        "UPSTREAM_CA_FILE": str(files.ca_file),
    }


async def test_serve_workers_speak_tls_to_clients_and_the_upstream(
    environ: dict[str, str], store: Store, aiohttp_server: Any, tmp_path: Path
) -> None:
    files = make_tls_files(tmp_path / "tls")
    upstream = await aiohttp_server(create_upstream(), ssl=files.server_context())
    env = {
        **environ,
        **tls_environ(files),
        "UPSTREAM_URL": f"https://localhost:{upstream.port}/base",
        "GATEWAY_WORKERS": "2",
    }
    raw, token_id = await issue_token(store)
    async with running_gateway(env, tmp_path) as (gateway, _):
        assert "worker(s) on https://127.0.0.1:" in gateway.stderr
        connector = aiohttp.TCPConnector(ssl=files.client_context(), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(4):  # new connections: the kernel spreads them over both workers
                url = f"https://localhost:{gateway.port}/hello"
                async with session.get(url, headers={"Authorization": f"Bearer {raw}"}) as resp:
                    assert resp.status == 200
                    echo = await resp.json()
                headers = {name.lower(): value for name, value in echo["headers"]}
                assert headers["x-token-id"] == token_id
                assert headers["x-forwarded-proto"] == "https"


def test_up_serves_its_listener_over_tls(database_url: str, tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls")
    env = {**clean_environ(tmp_path / "data"), "DATABASE_URL": database_url}
    env.update(tls_environ(files))
    env.pop("UPSTREAM_CA_FILE")  # the demo upstream is plain http
    assert "GATEWAY_TLS_CERT_FILE" in SETTING_NAMES
    with started_up(tmp_path, env) as up:
        gateway_url = up.exported("GATEWAY_URL")
        assert gateway_url.startswith("https://127.0.0.1:")
        admin_url, admin_token = up.exported("ADMIN_URL"), up.exported("ADMIN_TOKEN")
        status, project = call("POST", f"{admin_url}/v1/projects", admin_token, {"name": "tls"})
        assert status == 201
        status, token = call(
            "POST", f"{admin_url}/v1/projects/{project['id']}/tokens", admin_token, {}
        )
        assert status == 201
        request = urllib.request.Request(  # noqa: S310 - our own URL
            gateway_url.replace("127.0.0.1", "localhost") + "/hello",
            headers={"Authorization": f"Bearer {token['token']}"},
        )
        context = ssl.create_default_context(cafile=str(files.ca_file))
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:  # noqa: S310
            assert answer.status == 200
            echo = json.loads(answer.read())
        assert echo["headers"]["X-Forwarded-Proto"] == "https"
