"""Secret-bearing settings never show: not in ``repr``/``str``, not in the one-line
configuration errors, not in what ``gateway serve`` logs while it starts."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from gateway.core import tls
from gateway.core.config import ConfigError, Secret, Settings, mask_url, settings_fields
from tests.core.test_config import _run
from tests.gatewayproc import echo_app, running_gateway
from tests.tlsfiles import make_tls_files

SECRET = "hunter2-Sekr1t"

# Every setting that can carry a secret, with values that do. A new setting whose name
# says it holds one must be added here (test_every_secret_bearing_setting_is_listed).
SECRET_VALUES: dict[str, list[str]] = {
    "DATABASE_URL": [
        f"postgresql://app:{SECRET}@db.internal:5432/tollgate",
        f"postgres://app:{SECRET}@/tollgate?host=/run/postgresql",
        f"postgresql://app@db.internal/tollgate?sslmode=require&password={SECRET}",
        f"postgresql://app@db.internal/tollgate?PASSWORD={SECRET}&sslmode=require",
        f"postgresql://app:{SECRET}@db.internal/tollgate?sslpassword={SECRET}",
        f"postgresql://app:p%40ss{SECRET}%23x@db.internal/tollgate",
    ],
    "DATABASE_LISTEN_URL": [f"postgresql://listener:{SECRET}@db.internal:5432/tollgate"],
    "REDIS_URL": [
        f"redis://:{SECRET}@127.0.0.1:6379/0",
        f"redis://limiter:{SECRET}@127.0.0.1:6379/0",
        f"rediss://limiter:{SECRET}@redis.internal:6380/1",
        f"unix:///run/redis.sock?db=0&password={SECRET}",
    ],
    "UPSTREAM_URL": [f"https://client:{SECRET}@api.example.com/v1"],
    "ADMIN_PUBLIC_URL": [f"https://console:{SECRET}@admin.example.com"],
    "ADMIN_TOKEN": [f"admin-{SECRET}-" + "x" * 32],
}

SECRET_NAME = re.compile(r"(_URL|_TOKEN|PASSWORD|SECRET|_KEYS?|_KEYS?_FILE)$")
# Named like secrets, but paths: the TLS key file says where the key is (what the file
# holds is never shown: test_a_bad_key_file_is_named_without_its_content); the scanning
# keys file holds GitHub's public keys.
PATHS_OF_SECRETS = {"GATEWAY_TLS_KEY_FILE", "GITHUB_SCANNING_KEYS_FILE"}


def test_every_secret_bearing_setting_is_listed() -> None:
    """The pattern for settings to come (admin keys, keys files, webhook secrets): one
    whose name says it carries a secret is checked here, or this test fails."""
    names = {field.metadata["env"] for field in settings_fields()}
    suspicious = {name for name in names if SECRET_NAME.search(name)} - PATHS_OF_SECRETS
    assert suspicious <= SECRET_VALUES.keys(), f"not checked for masking: {suspicious}"
    assert SECRET_VALUES.keys() <= names


def test_a_bad_key_file_is_named_without_its_content(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls")
    key = tmp_path / "key.pem"
    key.write_text(f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n")
    settings = Settings.from_env(
        {"GATEWAY_TLS_CERT_FILE": str(files.cert_file), "GATEWAY_TLS_KEY_FILE": str(key)}
    )
    with pytest.raises(ConfigError) as caught:
        tls.server_context(settings)
    assert str(caught.value).startswith("GATEWAY_TLS_KEY_FILE: ")
    assert SECRET not in str(caught.value) and SECRET not in repr(settings)


def test_secret_settings_that_are_not_urls_are_secrets() -> None:
    """Text that is not a URL cannot be masked by its shape: it must be a Secret."""
    hints = typing.get_type_hints(Settings)
    for field in settings_fields():
        env = field.metadata["env"]
        if env in SECRET_VALUES and not env.endswith("_URL"):
            assert Secret in typing.get_args(hints[field.name]), env


@pytest.mark.parametrize(
    ("variable", "value"),
    [(variable, value) for variable, values in SECRET_VALUES.items() for value in values],
)
def test_repr_and_str_of_settings_mask_every_secret(variable: str, value: str) -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://db.internal/x", variable: value})
    for shown in (repr(settings), str(settings), f"{settings}", f"{settings!r}"):
        assert SECRET not in shown
        assert "hunter2" not in shown
    assert variable.lower() in repr(settings)  # the setting itself is still shown


def test_masked_urls_keep_what_tells_them_apart() -> None:
    assert mask_url("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert (
        mask_url("postgresql://app:pw@db:5432/x?sslmode=require")
        == "postgresql://app:***@db:5432/x?sslmode=require"
    )
    assert (
        mask_url("postgresql://app@db/x?password=pw&sslmode=require")
        == "postgresql://app@db/x?password=***&sslmode=require"
    )
    assert mask_url("postgresql://app@db/x") == "postgresql://app@db/x"
    assert mask_url("127.0.0.1") == "127.0.0.1"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:pa#{SECRET}@db/x",  # a parser sees a fragment
        f"postgresql://app:pa?{SECRET}@db/x",  # ... a query
        f"postgresql://app:pa/{SECRET}@db/x",  # ... a path
        f"postgresql://app:pa://{SECRET}@db/x",
        f"postgresql://app:{SECRET}@[::1/x",  # unparseable
    ],
)
def test_mask_url_masks_what_a_parser_would_misplace(url: str) -> None:
    masked = mask_url(url)
    assert SECRET not in masked
    assert masked.startswith("postgresql://app:***@")


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("DATABASE_URL", f"mysql://app:{SECRET}@db/x", "must start with postgresql://"),
        ("DATABASE_URL", f"postgresql://app:pa#{SECRET}@db/x", "percent-encode"),
        ("DATABASE_URL", f"postgresql://app:pa/{SECRET}@db/x", "percent-encode"),
        ("DATABASE_URL", f"postgresql://app:{SECRET}@db:port/x", "port"),
        ("DATABASE_URL", f"postgresql://app:{SECRET}@[::1/x", "not a valid URL"),
        ("REDIS_URL", f"http://:{SECRET}@127.0.0.1:6379", "must start with redis://"),
        ("REDIS_URL", f"redis://:pa?{SECRET}@127.0.0.1:6379", "percent-encode"),
        ("UPSTREAM_URL", f"ftp://client:{SECRET}@api.example.com", "http:// or https://"),
        ("UPSTREAM_URL", f"https://client:pa#{SECRET}@api.example.com", "percent-encode"),
        ("ADMIN_TOKEN", SECRET, "at least 32 characters"),
        ("ADMIN_TOKEN", f"{SECRET} " + "x" * 32, "spaces"),
    ],
)
def test_configuration_errors_do_not_repeat_secrets(variable: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert str(caught.value).startswith(f"{variable}: ")
    assert says in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_database_that_cannot_be_reached_is_named_without_its_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql://app:{SECRET}@127.0.0.1:1/x?sslpassword={SECRET}"
    result = _run(["gateway", "migrate"], {"DATABASE_URL": url}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "gateway: DATABASE_URL: cannot connect to postgresql://app:***@"
    )
    assert SECRET not in result.stderr


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` in its user part (the test servers trust local users)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{host}"))


async def test_startup_logs_of_gateway_serve_mask_every_secret(
    environ: dict[str, str], aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """A password in DATABASE_URL and REDIS_URL (which refuses it: an AUTH error gets
    logged, naming the server) and the admin token: none is in the log."""
    upstream: TestServer = await aiohttp_server(echo_app())
    env = {
        **environ,
        "DATABASE_URL": with_password(environ["DATABASE_URL"], SECRET),
        "UPSTREAM_URL": str(upstream.make_url("/")),
        "RATE_LIMIT_BACKEND": "redis",
        "REDIS_URL": f"redis://:{SECRET}@127.0.0.1:6379/0",
        "LOG_LEVEL": "DEBUG",
    }
    async with running_gateway(env, tmp_path) as (gateway, _):
        pass
    log = gateway.stderr
    assert "redis://:***@127.0.0.1:6379/0" in log  # the limiter said which Redis failed
    assert SECRET not in log
    assert environ["ADMIN_TOKEN"] not in log
