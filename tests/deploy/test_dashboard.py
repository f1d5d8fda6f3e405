"""deploy/grafana-dashboard.json: every query names series that exist, checked against
what a running ``gateway up`` really exposes on its metrics port and its admin API's
``/metrics`` (plus Prometheus's own ``up``), and the contract's metrics all have a panel."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.test_alerts import SPEC_6, SPEC_15, series_names
from tests.runtime.test_up import clean_environ, started_up

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"
PROMETHEUS_OWN = {"up"}  # made by Prometheus for every target, not exposed by one
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))


def queries() -> dict[str, set[str]]:
    """Each query of the dashboard (panel targets and variables), with the series it reads."""
    found: dict[str, set[str]] = {}
    for panel in panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            found[target["expr"]] = series_names(target["expr"])
    for variable in dashboard()["templating"]["list"]:
        definition = variable.get("definition", "")
        if "label_values" in definition:
            found[definition] = set(_LABEL_VALUES.findall(definition))
    return found


def exposed(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - our own URL
        text = answer.read().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module")
def exposed_series(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every series name a running ``gateway up`` (proxy metrics port and admin API) exposes."""
    workdir = tmp_path_factory.mktemp("dashboard")
    env = {**clean_environ(workdir / "data"), "DATABASE_URL": database_url}
    with started_up(workdir, env) as up:
        found = re.search(r"^  metrics +(\S+)/metrics", up.printed(), re.MULTILINE)
        assert found, up.printed()
        admin = up.exported("ADMIN_URL")
        # Labelled series appear once used: one admin request first.
        urllib.request.urlopen(f"{admin}/healthz", timeout=10).close()  # noqa: S310
        return exposed(f"{found[1]}/metrics") | exposed(f"{admin}/metrics")


def test_every_query_names_series_that_exist(exposed_series: set[str]) -> None:
    for query, names in queries().items():
        assert names, f"no metric in {query!r}"
        unknown = names - exposed_series - PROMETHEUS_OWN
        assert not unknown, f"{query!r} reads series nobody exposes: {unknown}"


def test_every_metric_of_the_contract_has_a_panel() -> None:
    read = {re.sub(r"_(bucket|sum|count)$", "", n) for names in queries().values() for n in names}
    contract = SPEC_6 | SPEC_15
    assert read >= contract, f"no panel for {contract - read}"


def test_panels_are_complete_and_use_the_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] == "tollgate"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    for panel in panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["description"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
