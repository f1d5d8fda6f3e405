"""Settings: one frozen object built from the environment (and command-line flags).

Every setting is an environment variable; each command also accepts it as a flag
(``UPSTREAM_URL`` -> ``--upstream-url``). Values are validated here, before anything
starts, and a bad one raises :class:`ConfigError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import SplitResult, urlsplit

from .capabilities import Network, parse_network
from .rates import Rate, parse_rate

T = TypeVar("T")


class ConfigError(Exception):
    """A setting is missing or invalid; ``str(err)`` is the one line shown to the user."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def cannot_listen(variable: str, host: str, port: int, err: OSError) -> ConfigError:
    """The error for a listener that could not bind (``variable`` names its port)."""
    return ConfigError(variable, f"cannot listen on {host}:{port}: {err.strerror or err}")


class Secret:
    """A string that never shows itself in ``repr``/``str`` (logs, tracebacks)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# A query parameter carrying a password: libpq's password and sslpassword, redis-py's password.
_PASSWORD_PARAMETER = re.compile(r"([?&][^=&#]*password=)[^&#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with every password shown as ``***``: the user part's, and any
    ``…password=`` query parameter's. Never raises, whatever the text.

    The user part is everything between the first ``://`` and the *last* ``@``, not
    what a URL parser makes of it: an unencoded ``#``, ``?`` or ``/`` in a password
    moves the rest of it past the host, where a parser would show it.
    """
    url = _PASSWORD_PARAMETER.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, location = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return url  # no password in the user part
    return f"{scheme}{sep}{user}:***{at}{location}"


def _well_formed(text: str) -> SplitResult:
    """The parts of URL ``text``, if a parser sees the user part where :func:`mask_url`
    does. Problems are said without repeating the text: it may hold a password."""
    try:
        parts = urlsplit(text)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if "@" in text.partition("://")[2][len(parts.netloc) :]:
        raise ValueError(
            "has an '@' after the host: percent-encode '@', '#', '?' and '/' in the user"
            " name and password (%40, %23, %3F, %2F)"
        )
    try:
        parts.port  # noqa: B018 (raises for a port that is not a number)
    except ValueError:
        raise ValueError("has a port that is not a number") from None
    return parts


# ---------------------------------------------------------------- value parsers


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range ({low}..{high})")
        return value

    return parse


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number of seconds") from None
        if not low <= value <= high:  # also rejects nan
            raise ValueError(f"{text} is out of range ({low:g}..{high:g} seconds)")
        return value

    return parse


def _limit_or_auto(low: int, high: int) -> Callable[[str], int | None]:
    """A whole number in range, or ``auto`` (None: derived when the server starts)."""
    whole = _int_in(low, high)

    def parse(text: str) -> int | None:
        return None if text == "auto" else whole(text)

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"{text!r} is not one of {', '.join(options)}")
        return text

    return parse


def _http_url(text: str) -> str:
    parts = _well_formed(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{mask_url(text)!r} is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    return text.rstrip("/")


def _postgres_url(text: str) -> str:
    if _well_formed(text).scheme not in ("postgresql", "postgres"):
        raise ValueError("must start with postgresql://")
    return text


def _redis_url(text: str) -> str:
    if _well_formed(text).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return text


def _host(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"{text!r} is not a host name or address")
    return text


_PREFIX = re.compile(r"[a-z][a-z0-9]{0,11}")


def _token_prefix(text: str) -> str:
    if not _PREFIX.fullmatch(text):
        raise ValueError("must be 1-12 lowercase letters or digits, starting with a letter")
    return text


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _path(text: str) -> Path:
    if not text:
        raise ValueError("must not be empty")
    return Path(text)


def _networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR blocks; empty: none."""
    networks = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(parse_network(entry))
        except ValueError as err:
            raise ValueError(f"{entry!r} {err}") from None
    return tuple(networks)


def _admin_tokens(text: str) -> Secret:
    """One admin token, or several separated by commas while one replaces another
    (README "Rotating ADMIN_TOKEN"): each is checked, the whole kept as one Secret."""
    for position, token in enumerate(text.split(","), 1):
        which = "" if "," not in text else f"token {position} "
        if len(token) < 32:
            raise ValueError(f"{which}must be at least 32 characters (got {len(token)})")
        if any(c.isspace() or not c.isprintable() for c in token):
            raise ValueError(f"{which}must not contain spaces or control characters")
    return Secret(text)


# ---------------------------------------------------------------- the settings


def _setting(env: str, parse: Callable[[str], Any], default: str | None, help: str) -> Any:
    """Declare a setting: its variable, parser, default (as text) and help line."""
    return dataclasses.field(
        metadata={"env": env, "parse": parse, "default": default, "help": help},
    )


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = _setting(
        "DATABASE_URL", _postgres_url, None, "postgresql://… (unset: embedded Postgres)"
    )
    # LISTEN needs a session of its own, which a pooler in transaction mode (PgBouncer)
    # cannot give: this URL goes straight to Postgres while DATABASE_URL may be pooled.
    database_listen_url: str | None = _setting(
        "DATABASE_LISTEN_URL",
        _postgres_url,
        None,
        "postgresql://… where LISTEN connects, straight to Postgres (unset: DATABASE_URL)",
    )
    data_dir: Path = _setting(
        "GATEWAY_DATA_DIR", _path, "./.data", "directory for the embedded Postgres"
    )
    upstream_url: str | None = _setting(
        "UPSTREAM_URL", _http_url, None, "base URL requests are forwarded to"
    )
    gateway_host: str = _setting("GATEWAY_HOST", _host, "127.0.0.1", "proxy listen address")
    gateway_port: int = _setting("GATEWAY_PORT", _int_in(0, 65535), "8080", "proxy port")
    gateway_workers: int = _setting(
        "GATEWAY_WORKERS", _int_in(1, 64), "1", "proxy worker processes sharing the port"
    )
    metrics_port: int = _setting(
        "GATEWAY_METRICS_PORT", _int_in(0, 65535), "8082", "port of /metrics, /healthz, /readyz"
    )
    admin_host: str = _setting("ADMIN_HOST", _host, "127.0.0.1", "admin API listen address")
    admin_port: int = _setting("ADMIN_PORT", _int_in(0, 65535), "8081", "admin API port")
    admin_token: Secret | None = _setting(
        "ADMIN_TOKEN",
        _admin_tokens,
        None,
        "bearer secret of the admin API (>= 32 characters; old,new while rotating)",
    )
    admin_public_url: str | None = _setting(
        "ADMIN_PUBLIC_URL",
        _http_url,
        None,
        "the console's address as customers reach it, for portal links"
        " (unset: http://ADMIN_HOST:ADMIN_PORT)",
    )
    token_prefix: str = _setting("TOKEN_PREFIX", _token_prefix, "tg", "first part of tokens")
    token_cache_ttl: float = _setting(
        "TOKEN_CACHE_TTL", _seconds(0, 3600), "30", "seconds token state is trusted"
    )
    rate_limit: Rate = _setting("RATE_LIMIT", parse_rate, "600/minute", "default per-token limit")
    rate_limit_backend: Literal["local", "redis"] = _setting(
        "RATE_LIMIT_BACKEND", _choice("local", "redis"), "local", "local or redis"
    )
    redis_url: str = _setting(
        "REDIS_URL", _redis_url, "redis://127.0.0.1:6379/0", "Redis for the redis backend"
    )
    last_used_flush_interval: float = _setting(
        "LAST_USED_FLUSH_INTERVAL", _seconds(0.01, 3600), "5", "seconds between last-used writes"
    )
    upstream_timeout: float = _setting(
        "UPSTREAM_TIMEOUT", _seconds(0.001, 3600), "30", "seconds allowed for the upstream"
    )
    header_timeout: float = _setting(
        "GATEWAY_HEADER_TIMEOUT",
        _seconds(0.01, 3600),
        "10",
        "seconds a client has to send a request head (else 408 and close)",
    )
    keepalive_timeout: float = _setting(
        "GATEWAY_KEEPALIVE_TIMEOUT",
        _seconds(0, 3600),
        "75",
        "seconds an idle keep-alive connection is kept open (0: close after each answer)",
    )
    body_timeout: float = _setting(
        "GATEWAY_BODY_TIMEOUT",
        _seconds(0.01, 3600),
        "30",
        "seconds allowed between request body bytes (else 408, or the answer is cut)",
    )
    write_timeout: float = _setting(
        "GATEWAY_WRITE_TIMEOUT",
        _seconds(0.01, 3600),
        "30",
        "seconds a client may read nothing of a pending answer before it is cut",
    )
    websocket_timeout: float = _setting(
        "GATEWAY_WEBSOCKET_TIMEOUT",
        _seconds(0.01, 86400),
        "60",
        "seconds a relayed WebSocket may carry nothing either way before it is closed",
    )
    max_connections: int | None = _setting(
        "GATEWAY_MAX_CONNECTIONS",
        _limit_or_auto(1, 10_000_000),
        "auto",
        "open client connections per worker (auto: from the open-file limit)",
    )
    # TLS: the files are read when the gateway starts (gateway.core.tls), not here.
    tls_cert_file: Path | None = _setting(
        "GATEWAY_TLS_CERT_FILE",
        _path,
        None,
        "PEM certificate chain: the proxy listener speaks TLS (with GATEWAY_TLS_KEY_FILE)",
    )
    tls_key_file: Path | None = _setting(
        "GATEWAY_TLS_KEY_FILE",
        _path,
        None,
        "PEM private key of GATEWAY_TLS_CERT_FILE (unencrypted)",
    )
    upstream_ca_file: Path | None = _setting(
        "UPSTREAM_CA_FILE",
        _path,
        None,
        "PEM CA bundle the https upstream's certificate is verified with (unset: the system's)",
    )
    trusted_proxies: tuple[Network, ...] = _setting(
        "TRUSTED_PROXIES",
        _networks,
        "",
        "comma-separated CIDRs of the load balancers whose X-Forwarded-For is believed",
    )
    log_format: Literal["json", "text"] = _setting(
        "LOG_FORMAT", _choice("json", "text"), "json", "access log format"
    )
    argon2_time_cost: int = _setting("ARGON2_TIME_COST", _int_in(1, 20), "2", "argon2id iterations")
    argon2_memory_cost: int = _setting(
        "ARGON2_MEMORY_COST", _int_in(1024, 4 * 1024 * 1024), "19456", "argon2id memory in KiB"
    )
    argon2_parallelism: int = _setting("ARGON2_PARALLELISM", _int_in(1, 16), "1", "argon2id lanes")
    webhook_allow_private: bool = _setting(
        "WEBHOOK_ALLOW_PRIVATE",
        _bool,
        "false",
        "let webhooks reach loopback, private and link-local addresses (gateway up: true)",
    )
    leak_report_rate: Rate = _setting(
        "LEAK_REPORT_RATE", parse_rate, "60/minute", "leak reports per client address"
    )
    audit_retention_days: int = _setting(
        "AUDIT_RETENTION_DAYS",
        _int_in(1, 36500),
        "400",
        "days audit events are kept; the retention job deletes older ones",
    )
    github_scanning_keys_file: Path | None = _setting(
        "GITHUB_SCANNING_KEYS_FILE",
        _path,
        None,
        "GitHub's secret-scanning public keys (JSON), for POST /v1/leaks/github",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``environ``; raise ConfigError on the first bad value."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            meta = field.metadata
            raw = environ.get(meta["env"])
            if raw is None or raw == "":
                raw = meta["default"]
            if raw is None:
                values[field.name] = None
                continue
            try:
                values[field.name] = meta["parse"](raw)
            except ValueError as err:
                raise ConfigError(meta["env"], str(err)) from None
        if values["database_listen_url"] is not None and values["database_url"] is None:
            raise ConfigError(
                "DATABASE_LISTEN_URL",
                "needs DATABASE_URL (without it the embedded Postgres serves both directly)",
            )
        if (values["tls_cert_file"] is None) != (values["tls_key_file"] is None):
            given, missing = ("GATEWAY_TLS_CERT_FILE", "GATEWAY_TLS_KEY_FILE")
            if values["tls_cert_file"] is None:
                given, missing = missing, given
            raise ConfigError(missing, f"is required with {given} (both or neither)")
        return cls(**values)

    def require_upstream(self) -> str:
        if self.upstream_url is None:
            raise ConfigError("UPSTREAM_URL", "is required (the base URL of the API to protect)")
        return self.upstream_url

    def require_admin_token(self) -> Secret:
        if self.admin_token is None:
            raise ConfigError("ADMIN_TOKEN", "is required (at least 32 characters)")
        return self.admin_token

    def public_url(self) -> str:
        """Where customers reach the console: ``ADMIN_PUBLIC_URL``, without a trailing slash."""
        if self.admin_public_url is not None:
            return self.admin_public_url.rstrip("/")
        host = f"[{self.admin_host}]" if ":" in self.admin_host else self.admin_host
        return f"http://{host}:{self.admin_port}"

    def admin_tokens(self) -> tuple[Secret, ...]:
        """Every admin token accepted: ``ADMIN_TOKEN``'s comma-separated tokens, the one
        to use first (during a rotation the old one is still accepted beside it)."""
        return tuple(Secret(token) for token in self.require_admin_token().reveal().split(","))

    def __repr__(self) -> str:
        # Any text may be a URL with a password (and a Secret masks itself): none
        # reaches a log, whatever the setting is called.
        shown = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, str):
                value = mask_url(value)
            shown.append(f"{field.name}={value!r}")
        return f"Settings({', '.join(shown)})"


def settings_fields() -> list[dataclasses.Field[Any]]:
    """The declared settings, for building command-line flags."""
    return list(dataclasses.fields(Settings))
