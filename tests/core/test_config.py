"""Settings: every variable parsed and validated before anything starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.core.config import ConfigError, Settings, settings_fields
from gateway.core.rates import Rate
from tests.conftest import ADMIN_TOKEN


def test_defaults_match_the_spec() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert settings.database_listen_url is None  # LISTEN goes where DATABASE_URL goes
    assert settings.data_dir == Path("./.data")
    assert (settings.gateway_host, settings.gateway_port) == ("127.0.0.1", 8080)
    assert (settings.admin_host, settings.admin_port) == ("127.0.0.1", 8081)
    assert settings.metrics_port == 8082
    assert settings.gateway_workers == 1
    assert settings.token_prefix == "tg"
    assert settings.token_cache_ttl == 30
    assert settings.rate_limit == Rate(600, 60)
    assert settings.rate_limit_backend == "local"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.last_used_flush_interval == 5
    assert settings.upstream_timeout == 30
    assert settings.log_format == "json"
    # The proxy listener's bounds on clients (README: "Slow and broken clients").
    assert (settings.header_timeout, settings.keepalive_timeout) == (10, 75)
    assert (settings.body_timeout, settings.write_timeout) == (30, 30)
    assert settings.websocket_timeout == 60
    assert settings.max_connections is None  # auto: from the open-file limit


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RATE_LIMIT", "abc", "not a rate limit"),
        ("RATE_LIMIT", "0/minute", "not a rate limit"),
        ("RATE_LIMIT", "10/day", "not a rate limit"),
        ("GATEWAY_PORT", "http", "not a whole number"),
        ("GATEWAY_PORT", "70000", "out of range"),
        ("GATEWAY_WORKERS", "0", "out of range"),
        ("TOKEN_CACHE_TTL", "nan", "out of range"),
        ("TOKEN_CACHE_TTL", "-1", "out of range"),
        ("UPSTREAM_URL", "ftp://example.com", "http:// or https://"),
        ("UPSTREAM_URL", "http://example.com/?a=1", "query"),
        ("DATABASE_URL", "mysql://x", "postgresql://"),
        ("DATABASE_LISTEN_URL", "mysql://x", "postgresql://"),
        ("ADMIN_TOKEN", "short", "at least 32 characters"),
        ("RATE_LIMIT_BACKEND", "memcached", "local, redis"),
        ("LOG_FORMAT", "xml", "json, text"),
        ("TOKEN_PREFIX", "tg_", "lowercase letters"),
        ("REDIS_URL", "http://x", "redis://"),
        ("GATEWAY_HEADER_TIMEOUT", "0", "out of range"),
        ("GATEWAY_KEEPALIVE_TIMEOUT", "-1", "out of range"),
        ("GATEWAY_BODY_TIMEOUT", "soon", "not a number of seconds"),
        ("GATEWAY_WRITE_TIMEOUT", "inf", "out of range"),
        ("GATEWAY_WEBSOCKET_TIMEOUT", "0", "out of range"),
        ("GATEWAY_MAX_CONNECTIONS", "0", "out of range"),
        ("GATEWAY_MAX_CONNECTIONS", "many", "not a whole number"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert str(caught.value).startswith(f"{variable}: ")
    assert says in str(caught.value)


def test_secrets_print_masked() -> None:
    settings = Settings.from_env(
        {
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "DATABASE_URL": "postgresql://u:hunter2@pgbouncer/x",
            "DATABASE_LISTEN_URL": "postgresql://u:swordfish@db/x",
        }
    )
    shown = repr(settings) + str(settings.admin_token)
    assert ADMIN_TOKEN not in shown
    assert "hunter2" not in shown
    assert "swordfish" not in shown and "postgresql://u:***@db/x" in shown
    assert settings.admin_token is not None
    assert settings.admin_token.reveal() == ADMIN_TOKEN


def test_flags_override_the_environment() -> None:
    from gateway.core.clikit import settings_from
    from gateway.runtime.cli import build_parser

    args = build_parser().parse_args(
        ["migrate", "--rate-limit", "5/second", "--upstream-url", "http://u:1"]
    )
    settings = settings_from(args, {"RATE_LIMIT": "1/hour"})
    assert settings.rate_limit == Rate(5, 1)
    assert settings.upstream_url == "http://u:1"


def test_the_listen_url_is_a_flag_and_needs_database_url() -> None:
    from gateway.core.clikit import settings_from
    from gateway.runtime.cli import build_parser

    args = build_parser().parse_args(["serve", "--database-listen-url", "postgresql://db/x"])
    settings = settings_from(args, {"DATABASE_URL": "postgresql://pgbouncer/x"})
    assert settings.database_listen_url == "postgresql://db/x"
    with pytest.raises(ConfigError, match=r"^DATABASE_LISTEN_URL: needs DATABASE_URL"):
        settings_from(args, {})


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "ADMIN_"))}
    return subprocess.run(
        [sys.executable, "-m", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (
            ["gateway", "migrate"],
            {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"},
            "DATABASE_URL: cannot connect",
        ),
        (["gateway", "migrate"], {"RATE_LIMIT": "abc"}, "RATE_LIMIT:"),
        (
            ["gateway", "serve"],
            {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"},
            "UPSTREAM_URL: is required",
        ),
        (
            ["admin", "serve"],
            {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"},
            "ADMIN_TOKEN: is required",
        ),
        (["admin", "serve"], {"ADMIN_TOKEN": "too-short"}, "ADMIN_TOKEN: must be at least 32"),
        (
            [
                "gateway",
                "serve",
                "--upstream-url",
                "http://127.0.0.1:9",
                "--database-url",
                "postgresql://postgres@127.0.0.1:1/x",
            ],
            {},
            "DATABASE_URL: cannot connect",
        ),
        (["gateway", "frobnicate"], {}, "invalid choice"),
    ],
)
def test_configuration_mistakes_exit_2_with_one_line(
    args: list[str], env: dict[str, str], says: str, tmp_path: Path
) -> None:
    result = _run(args, {"GATEWAY_DATA_DIR": str(tmp_path / "data"), **env}, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert says in lines[0]
    assert "Traceback" not in result.stderr


def test_an_unreachable_listen_url_stops_serve_at_start(database_url: str, tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": database_url,
        "DATABASE_LISTEN_URL": "postgresql://postgres@127.0.0.1:1/x",
        "UPSTREAM_URL": "http://127.0.0.1:9",
    }
    result = _run(["gateway", "serve", "--no-migrate"], env, tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "gateway: DATABASE_LISTEN_URL: cannot connect to postgresql://postgres@127.0.0.1:1/x: "
    )


def test_every_setting_has_a_row_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`([A-Z0-9_]+)`", row)}
    declared = {field.metadata["env"] for field in settings_fields()}
    assert declared - documented == set(), "settings missing from README's Configuration table"


def test_max_connections_is_a_number_or_auto() -> None:
    assert Settings.from_env({"GATEWAY_MAX_CONNECTIONS": "500"}).max_connections == 500
    assert Settings.from_env({"GATEWAY_MAX_CONNECTIONS": "auto"}).max_connections is None
