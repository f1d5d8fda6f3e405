"""docker-compose.yml, Dockerfile and friends, checked structurally.

Docker cannot run where these tests run, so instead of starting the stack we check
what would break it: unknown settings, commands that do not exist, missing health
checks or start conditions, secrets written into the file, ports open to the network.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.core.config import Settings, settings_fields

ROOT = Path(__file__).resolve().parent.parent
TOLLGATE_IMAGE = "tollgate:local"
CORE = {"postgres", "migrate", "upstream", "gateway", "admin"}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|TOKEN$|SECRET")
SETTING_NAMES = {field.metadata["env"] for field in settings_fields()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def tollgate_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("image") == TOLLGATE_IMAGE}


def resolve(value: str, required: str = "x") -> str:
    """The value compose would use with an empty .env: defaults applied, required set."""

    def one(match: re.Match[str]) -> str:
        kind, default = match.group(2), match.group(3)
        if kind in (":-", "-"):
            return default
        return required

    return INTERPOLATION.sub(one, value)


def test_every_service_is_there_with_the_right_profiles(services: dict[str, Any]) -> None:
    assert set(services) == {*CORE, "redis", "prometheus"}
    assert services["redis"]["profiles"] == ["redis"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    for name in CORE:
        assert "profiles" not in services[name], f"{name} must start without a profile"


def test_tollgate_services_use_only_documented_settings(services: dict[str, Any]) -> None:
    ours = tollgate_services(services)
    assert set(ours) == {"migrate", "upstream", "gateway", "admin"}
    for name, service in ours.items():
        unknown = set(service.get("environment", {})) - SETTING_NAMES
        assert not unknown, f"{name} sets variables Tollgate does not read: {unknown}"


@pytest.mark.parametrize("name", ["migrate", "gateway", "admin"])
def test_settings_values_are_valid(services: dict[str, Any], name: str) -> None:
    # A long stand-in for required secrets, so ADMIN_TOKEN's length check passes.
    environ = {k: resolve(str(v), "s" * 40) for k, v in services[name]["environment"].items()}
    settings = Settings.from_env(environ)
    assert settings.database_url is not None
    assert settings.database_url.startswith("postgresql://tollgate:")
    assert settings.database_url.endswith("@postgres:5432/tollgate")
    if name == "gateway":
        assert settings.upstream_url == "http://upstream:9000"
        assert settings.gateway_host == "0.0.0.0"  # noqa: S104 - inside the container
        assert settings.redis_url == "redis://redis:6379/0"
    if name == "admin":
        assert settings.admin_host == "0.0.0.0"  # noqa: S104 - inside the container
        assert settings.require_admin_token()


def _gateway_parser() -> Any:
    from gateway.runtime.cli import build_parser

    return build_parser()


def _admin_parser() -> Any:
    from admin.cli import build_parser

    return build_parser()


def _demo_parser() -> Any:
    from gateway.runtime.demo import build_parser

    return build_parser()


PARSERS: dict[tuple[str, ...], Callable[[], Any]] = {
    ("gateway",): _gateway_parser,
    ("admin",): _admin_parser,
    ("python", "-m", "gateway.runtime.demo"): _demo_parser,
}


def test_commands_are_real_subcommands(services: dict[str, Any]) -> None:
    for name, service in tollgate_services(services).items():
        command: list[str] = service["command"]
        for prefix, parser in PARSERS.items():
            if tuple(command[: len(prefix)]) == prefix:
                args = parser().parse_args(command[len(prefix) :])  # exits 2 if unknown
                assert args is not None
                break
        else:
            pytest.fail(f"{name} runs an unknown program: {command}")
    assert services["migrate"]["command"] == ["gateway", "migrate"]
    assert services["gateway"]["command"][:2] == ["gateway", "serve"]
    assert services["admin"]["command"][:2] == ["admin", "serve"]


def test_long_running_services_have_health_checks(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name == "migrate":
            assert service["restart"] == "no", "the one-shot migrate must not be restarted"
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] == "CMD", f"{name} needs a health check"


def test_start_order_waits_for_health_and_migrations(services: dict[str, Any]) -> None:
    def condition(service: str, on: str) -> str:
        result: str = services[service]["depends_on"][on]["condition"]
        return result

    assert condition("migrate", "postgres") == "service_healthy"
    for name in ("gateway", "admin"):
        assert condition(name, "migrate") == "service_completed_successfully"
    assert condition("gateway", "upstream") == "service_healthy"
    # Only with the redis profile: the gateway waits for Redis when it is there.
    assert condition("gateway", "redis") == "service_healthy"
    assert services["gateway"]["depends_on"]["redis"]["required"] is False
    assert condition("prometheus", "gateway") == "service_healthy"


def test_health_checks_probe_the_configured_ports(services: dict[str, Any]) -> None:
    gateway_env = services["gateway"]["environment"]
    assert f":{gateway_env['GATEWAY_METRICS_PORT']}/readyz" in " ".join(
        services["gateway"]["healthcheck"]["test"]
    )
    admin_env = services["admin"]["environment"]
    assert f":{admin_env['ADMIN_PORT']}/healthz" in " ".join(
        services["admin"]["healthcheck"]["test"]
    )
    upstream_port = services["upstream"]["command"][-1]
    assert gateway_env["UPSTREAM_URL"].endswith(f"upstream:{upstream_port}}}")


def test_no_secret_is_written_in_the_file(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            text = str(value)
            if SECRET_NAME.search(key):
                match = INTERPOLATION.fullmatch(text)
                assert match and match.group(2) in (":?", "?"), (
                    f"{name}.{key} must come from .env and be required, not written here"
                )
            if key == "DATABASE_URL":
                password = text.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
                assert INTERPOLATION.fullmatch(password), f"{name}: password must come from .env"


def test_every_variable_read_from_env_is_documented(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = {match.group(1) for match in INTERPOLATION.finditer(text)}
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", example, re.MULTILINE))
    assert used <= documented, f"add to .env.example: {used - documented}"
    # The example itself carries no secret values.
    for line in example.splitlines():
        name, _, value = line.partition("=")
        if SECRET_NAME.search(name) and not name.startswith("#"):
            assert value == "", f".env.example must leave {name} empty"


def test_ports_are_published_on_loopback_only(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the network"


def test_prometheus_scrapes_the_gateway_metrics_port(services: dict[str, Any]) -> None:
    volumes = services["prometheus"]["volumes"]
    source = volumes[0].split(":")[0]
    config = yaml.safe_load((ROOT / source).read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for c in job["static_configs"]
        for target in c["targets"]
    }
    metrics_port = services["gateway"]["environment"]["GATEWAY_METRICS_PORT"]
    assert f"gateway:{metrics_port}" in targets
    assert f"admin:{services['admin']['environment']['ADMIN_PORT']}" in targets


def test_dockerfile_copies_what_exists_and_runs_a_real_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignored = set((ROOT / ".dockerignore").read_text().split())
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.MULTILINE)
    for line in copied:
        for source in line.split():
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
            assert source not in ignored, f".dockerignore hides {source} from the build"
    assert 'CMD ["gateway", "serve", "--no-migrate"]' in dockerfile
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.MULTILINE), "run as a non-root user"
