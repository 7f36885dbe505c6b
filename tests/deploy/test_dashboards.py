"""The Grafana dashboard and provisioning: contract metric names only, no per-person anything, variables in place."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "aiyield.json"
DS_UID = "${DS_PROMETHEUS}"


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return out


def _targets(dashboard: dict) -> list[tuple[dict, dict]]:
    return [(panel, t) for panel in _panels(dashboard) for t in panel.get("targets", [])]


def _variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def test_dashboard_basics(dashboard):
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in _panels(dashboard):
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]


def test_template_variables(dashboard):
    variables = _variables(dashboard)
    ds = variables["DS_PROMETHEUS"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"

    team = variables["team"]
    assert team["type"] == "query"
    assert team["includeAll"] and team["multi"]
    assert team["datasource"]["uid"] == DS_UID

    window = variables["window"]
    assert window["type"] == "custom"
    assert [o.strip() for o in window["query"].split(",")] == ["1h", "24h", "7d", "30d"]
    assert [o["value"] for o in window["options"]] == ["1h", "24h", "7d", "30d"]
    assert not window.get("includeAll"), "summing windows together is meaningless"


def test_every_query_uses_the_templated_datasource(dashboard):
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": DS_UID}, panel["title"]
    for panel, target in _targets(dashboard):
        assert target["datasource"] == {"type": "prometheus", "uid": DS_UID}, panel["title"]


def _expressions(dashboard: dict) -> list[tuple[str, str]]:
    exprs = [(panel["title"], target["expr"]) for panel, target in _targets(dashboard)]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            # label_values(metric, label) -> metric, plus its label checked below.
            match = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", query)
            assert match, f"variable {var['name']}: unexpected query {query!r}"
            exprs.append((f"variable {var['name']}", match.group(1)))
            exprs.append((f"variable {var['name']}", f'sum by ({match.group(2)}) ({match.group(1)})'))
    return exprs


def test_only_contract_metric_names(dashboard, contract):
    exprs = _expressions(dashboard)
    assert exprs
    for title, expr in exprs:
        parsed = contract.parse(expr)
        assert not parsed.unknown, f"{title}: unknown functions {parsed.unknown} in {expr}"
        assert parsed.metrics, f"{title}: no metric in {expr}"
        assert parsed.metrics <= set(contract.metrics), f"{title}: not in the contract: {parsed.metrics - set(contract.metrics)}"


def test_no_per_person_grouping_or_filtering(dashboard, contract):
    for title, expr in _expressions(dashboard):
        labels = contract.parse(expr).labels
        assert not labels & contract.per_person_labels, f"{title}: per-person label in {expr}"
        assert labels <= contract.allowed_labels, f"{title}: unexpected labels {labels - contract.allowed_labels}"
    for panel, target in _targets(dashboard):
        shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
        assert shown <= contract.allowed_labels and not shown & contract.per_person_labels, panel["title"]
    text = DASHBOARD.read_text(encoding="utf-8").lower()
    for word in ("developer_id", "email", '"user"', "username"):
        assert word not in text, f"{word} appears in the dashboard"


def test_windowed_metrics_pin_the_window_and_respect_team(dashboard, contract):
    for title, expr in _expressions(dashboard):
        if title.startswith("variable"):
            continue
        for metric, matchers in contract.selectors(expr):
            if metric in contract.windowed:
                assert 'window="$window"' in matchers, f"{title}: {metric} without window=\"$window\""
            if "team" in contract.metrics[metric]:
                assert 'team=~"$team"' in matchers, f"{title}: {metric} ignores the team variable"


def test_required_panels_present(dashboard, contract):
    """Each topic of the brief has a panel: (metric, grouping label or None, extra text required in the expr)."""
    exprs = [expr for _, expr in _expressions(dashboard)]
    required = {
        "spend by team": ("aiyield_spend_usd", "team"),
        "spend by tool": ("aiyield_spend_usd", "tool"),
        "spend by model": ("aiyield_spend_usd", "model"),
        "tokens by type": ("aiyield_tokens", "type"),
        "normalized deployments by team": ("aiyield_normalized_deployments", "team"),
        "cost per normalized deployment": ("aiyield_cost_per_normalized_deployment_usd", "team"),
        "tasks by status": ("aiyield_tasks", "status"),
        "active developers": ("aiyield_active_developers", "team"),
        "events by outcome": ("aiyield_events_total", "outcome"),
        "data freshness": ("aiyield_last_event_timestamp_seconds", None),
    }
    for topic, (metric, label) in required.items():
        hits = [e for e in exprs if metric in contract.parse(e).metrics]
        if label:
            hits = [e for e in hits if re.search(rf"\bby\s*\(\s*[^)]*\b{label}\b", e)]
        assert hits, f"no panel for {topic}"
    assert any('status="shipped"' in e and 'status="completed"' in e for e in exprs), "no ship rate panel"
    assert any(re.search(r"time\(\)\s*-\s*max.*aiyield_last_event_timestamp_seconds", e) for e in exprs)
    assert any('outcome=~"invalid|duplicate"' in e for e in exprs), "no invalid/duplicate rate panel"


def test_dashboard_promql_parses(dashboard, promtool, tmp_path, yaml):
    """promtool parses every panel expression (Grafana variables replaced by sample values)."""
    replacements = {"$__rate_interval": "5m", "$__interval": "1m", "$team": ".*", "$window": "24h"}
    rules = []
    for i, (title, expr) in enumerate(_expressions(dashboard)):
        for var, value in replacements.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"{title}: unreplaced variable in {expr}"
        rules.append({"record": f"dashboard:expr_{i}", "expr": expr})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------- provisioning


def test_datasource_provisioning(load_yaml):
    config = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    assert config["apiVersion"] == 1
    (ds,) = config["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    assert ds.get("isDefault") is True


def test_dashboard_provisioning_points_at_the_mounted_folder(load_yaml):
    config = load_yaml(GRAFANA / "provisioning" / "dashboards" / "aiyield.yml")
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    compose = load_yaml(REPO / "docker-compose.yml")
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts, f"grafana does not mount the dashboards at {path}"
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
