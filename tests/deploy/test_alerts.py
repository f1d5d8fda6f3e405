"""deploy/alerts.yml: valid, loaded by deploy/prometheus.yml (also in the compose service),
every alert complete (a ``for``, a severity, what to check), naming only metrics of the
contract, and unit-tested with ``promtool test rules`` against series where it fires and
where it must not (tests/deploy/alerts.test.yml)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "alerts.yml"
CONFIG = ROOT / "deploy" / "prometheus.yml"
CASES = Path(__file__).with_name("alerts.test.yml")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian package prometheus; .ci/run installs it)",
)

# SPEC §6 and §15, written out so the test checks the contract, plus Tollgate's own
# gateway_ready and gateway_rate_limit_fallbacks_total (README "Metrics"), and `up`.
SPEC_6 = {
    "gateway_requests_total",
    "gateway_request_duration_seconds",
    "gateway_upstream_duration_seconds",
    "gateway_token_cache_total",
    "gateway_token_verifications_total",
    "gateway_revocations_received_total",
    "gateway_revocation_propagation_seconds",
    "gateway_last_used_pending",
    "gateway_last_used_flushes_total",
}
SPEC_15 = {
    "gateway_usage_flushes_total",
    "admin_tokens_expiring",
    "admin_webhook_deliveries_total",
    "admin_webhook_outbox_pending",
    "admin_leak_reports_total",
}
METRICS = SPEC_6 | SPEC_15 | {"up", "gateway_rate_limit_fallbacks_total", "gateway_ready"}
HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
PROMQL_WORDS |= {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def rules() -> dict[str, dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return {rule["alert"]: rule for group in loaded["groups"] for rule in group["rules"]}


def series_names(expr: str) -> set[str]:
    """The series a PromQL expression reads, as written (``…_bucket`` included): label
    matchers, groupings and ranges removed, function names and keywords left out."""
    bare = re.sub(r"\{[^}]*\}", "", expr)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    names = set()
    for word in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
        is_function = bare[word.end() :].lstrip().startswith("(")
        if not is_function and word[0].lower() not in PROMQL_WORDS:
            names.add(word[0])
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (a histogram's, not its series')."""
    return {n if n in METRICS else HISTOGRAM_SERIES.sub("", n) for n in series_names(expr)}


def test_every_alert_waits_is_labelled_and_says_what_to_check() -> None:
    found = rules()
    assert len(found) >= 10
    for name, rule in found.items():
        assert re.fullmatch(r"Tollgate[A-Z][A-Za-z]+", name)
        assert re.fullmatch(r"[0-9]+[smh]", rule["for"]), f"{name}: no `for`"
        assert rule["labels"] == {"severity": rule["labels"]["severity"]}
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert set(rule["annotations"]) == {"summary", "description"}, name
        # Plain text: the unit tests below compare it as written.
        assert "{{" not in str(rule["annotations"]), name
        assert len(rule["annotations"]["description"]) > 100, f"{name}: what should one check?"


def test_alerts_read_only_metrics_of_the_contract() -> None:
    for name, rule in rules().items():
        read = metric_names(rule["expr"])
        assert read, name
        assert read <= METRICS, f"{name} reads unknown metrics: {read - METRICS}"


def test_metric_names_are_found_in_expressions() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (job, le) "
        '(rate(gateway_upstream_duration_seconds_bucket{a="b"}[5m]))) / on (job) up{job="x"} > 1'
    )
    assert metric_names(expr) == {"gateway_upstream_duration_seconds", "up"}


def test_prometheus_loads_the_rules_in_compose_too() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert [CONFIG.parent / f for f in config["rule_files"]] == [RULES]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes


def test_each_alert_has_a_case_where_it_fires_and_one_where_it_does_not() -> None:
    cases = yaml.safe_load(CASES.read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    for name in rules():
        mine = [check for check in checks if check["alertname"] == name]
        assert any(check["exp_alerts"] for check in mine), f"{name} never fires in a test"
        assert any(not check["exp_alerts"] for check in mine), f"{name} is never quiet"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@needs_promtool
def test_promtool_accepts_the_rules_and_the_config() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked = promtool("check", "config", str(CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    annotations = {name: rule["annotations"] for name, rule in rules().items()}
    cases = yaml.safe_load(CASES.read_text())
    cases["rule_files"] = [str(RULES)]
    for case in cases["tests"]:
        for check in case["alert_rule_test"]:
            for alert in check["exp_alerts"]:
                alert["exp_annotations"] = annotations[check["alertname"]]
    complete = tmp_path / "alerts.test.yml"
    complete.write_text(yaml.safe_dump(cases))
    result = promtool("test", "rules", str(complete))
    assert result.returncode == 0, result.stdout + result.stderr
